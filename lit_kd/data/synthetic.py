"""A synthetic training set on disk (cGAN-KD stage 2's output): images, labels and their provenance.

Layout of a synthetic-set folder:

* ``images.pt``: ``uint8`` tensor ``[N, 3, S, S]``;
* ``targets.pt``: labels ``[N]``, ``int64`` classes or ``float32`` regression targets scaled to ``[0, 1]``;
* ``provenance.json``: what made it (generator checkpoint path and SHA-256, teacher, filter and subsampling
  settings, counts generated/kept/dropped per conditioning label) plus the SHA-256 and shape of both tensor files,
  the task, image size and number of classes, which :func:`load_synthetic_set` checks.

Any DataModule appends such a set to its training split with ``synthetic_dir`` (see
:class:`~lit_kd.data.InMemoryImageDataModule`), so every method trains on real + synthetic data.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lit_kd.data.image_files import CorruptDatasetError

FORMAT = "lit-kd synthetic set"
VERSION = 1
FILES = {"images": "images.pt", "targets": "targets.pt"}
PROVENANCE_FILE = "provenance.json"


class SyntheticSet(NamedTuple):
    """A loaded synthetic set: ``uint8`` images ``[N, 3, S, S]``, targets ``[N]`` and the provenance record."""

    images: Tensor
    targets: Tensor
    provenance: dict[str, Any]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex-encoded."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_synthetic_set(directory: str | Path, images: Tensor, targets: Tensor, provenance: dict[str, Any]) -> Path:
    """Write ``images``, ``targets`` and ``provenance`` (plus format, task, shapes, hashes) to ``directory``.

    ``provenance`` must say ``task`` (``"classification"`` or ``"regression"``) and ``num_classes``; the rest of it
    (generator, teacher, filter, counts) is stored as given. Returns the folder.

    Raises:
        ValueError: the tensors have the wrong dtype or shape for the task.
    """
    task = provenance.get("task")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be uint8 [N, 3, S, S], got {images.dtype} {tuple(images.shape)}")
    expected_dtype = {"classification": torch.int64, "regression": torch.float32}.get(task)
    if expected_dtype is None or targets.dtype != expected_dtype or targets.shape != (len(images),):
        raise ValueError(
            f"targets must be {expected_dtype} [{len(images)}] for task {task!r}, got {targets.dtype} "
            f"{tuple(targets.shape)}"
        )
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "version": VERSION, "count": len(images), "image_size": images.shape[-1]}
    files = {}
    for key, tensor in (("images", images), ("targets", targets)):
        path = directory / FILES[key]
        torch.save(tensor.contiguous().cpu(), path)
        files[key] = {"name": FILES[key], "sha256": file_sha256(path), "shape": list(tensor.shape)}
    record |= dict(provenance) | {"files": files}
    (directory / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return directory


def load_synthetic_set(
    directory: str | Path,
    image_size: int | None = None,
    task: str | None = None,
    num_classes: int | None = None,
) -> SyntheticSet:
    """Load a folder written by :func:`save_synthetic_set`, checking it against the data it will be mixed with.

    Checks: the three files exist; the provenance is a lit-kd synthetic set of this version; both tensor files have
    the SHA-256 recorded at saving (no truncation, no swapped files); dtypes and shapes; ``task``, ``image_size`` and
    ``num_classes`` equal the expected ones (when given); labels are in ``[0, num_classes)`` for classification and
    finite in ``[0, 1]`` for regression.

    Raises:
        CorruptDatasetError: naming the file and what was expected.
    """
    directory = Path(directory).expanduser()
    provenance_path = directory / PROVENANCE_FILE
    missing = [name for name in (PROVENANCE_FILE, *FILES.values()) if not (directory / name).is_file()]
    if missing:
        raise CorruptDatasetError(f"synthetic set {directory}: missing {missing} (write it with lit_kd.synthesis)")
    try:
        provenance = json.loads(provenance_path.read_text())
    except json.JSONDecodeError as error:
        raise CorruptDatasetError(f"{provenance_path} is not valid JSON: {error}") from error
    if provenance.get("format") != FORMAT or provenance.get("version") != VERSION:
        raise CorruptDatasetError(
            f"{provenance_path}: format {provenance.get('format')!r} version {provenance.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}"
        )
    tensors = {}
    for key, name in FILES.items():
        path, recorded = directory / name, provenance["files"][key]["sha256"]
        if file_sha256(path) != recorded:
            raise CorruptDatasetError(f"{path}: SHA-256 differs from {provenance_path} (file changed or corrupt)")
        try:  # plain tensors only: never a full unpickle, whatever the environment says
            tensors[key] = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise CorruptDatasetError(f"{path}: refused, it is not a plain tensor file ({error})") from None
    images, targets = tensors["images"], tensors["targets"]
    count, size = provenance["count"], provenance["image_size"]
    if images.dtype != torch.uint8 or tuple(images.shape) != (count, 3, size, size):
        raise CorruptDatasetError(
            f"{directory / FILES['images']}: {images.dtype} {tuple(images.shape)}, expected uint8 "
            f"[{count}, 3, {size}, {size}]"
        )
    expected = {"task": task, "image_size": image_size, "num_classes": num_classes}
    for key, value in expected.items():
        if value is not None and provenance.get(key) != value:
            raise CorruptDatasetError(
                f"synthetic set {directory} has {key}={provenance.get(key)!r}, but the data it is mixed with has "
                f"{key}={value!r}"
            )
    _check_targets(targets, provenance, directory / FILES["targets"])
    return SyntheticSet(images, targets, provenance)


def _check_targets(targets: Tensor, provenance: dict[str, Any], path: Path) -> None:
    count, task = provenance["count"], provenance.get("task")
    if task == "classification":
        if targets.dtype != torch.int64 or tuple(targets.shape) != (count,):
            raise CorruptDatasetError(f"{path}: {targets.dtype} {tuple(targets.shape)}, expected int64 [{count}]")
        if count and (targets.min() < 0 or targets.max() >= provenance["num_classes"]):
            raise CorruptDatasetError(
                f"{path}: labels span [{int(targets.min())}, {int(targets.max())}], expected [0, "
                f"{provenance['num_classes'] - 1}]"
            )
    elif task == "regression":
        if targets.dtype != torch.float32 or tuple(targets.shape) != (count,):
            raise CorruptDatasetError(f"{path}: {targets.dtype} {tuple(targets.shape)}, expected float32 [{count}]")
        if count and (not targets.isfinite().all() or targets.min() < 0 or targets.max() > 1):
            raise CorruptDatasetError(f"{path}: regression targets must be finite and scaled to [0, 1]")
    else:
        raise CorruptDatasetError(f"{path.parent / PROVENANCE_FILE}: task {task!r}, expected classification/regression")
