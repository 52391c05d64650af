"""Reading image files from disk into one ``uint8`` tensor, with an optional decoded cache.

Images are decoded with Pillow (torchvision 0.29 deprecated its own decoders). Decoding the 60,000 CIFAR-10 JPEGs
takes about 16 s on two CPU cores; reloading the decoded tensor from the cache about 1-2 s (see
``benchmarks/data_pipeline.py``), so the cache is on by default.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class CorruptDatasetError(ValueError):
    """A dataset on disk does not have the layout or content its DataModule expects."""


def default_cache_dir() -> Path:
    """Where decoded datasets are cached: ``$LIT_KD_CACHE``, else ``$XDG_CACHE_HOME/lit-kd``, else ``~/.cache``."""
    if "LIT_KD_CACHE" in os.environ:
        return Path(os.environ["LIT_KD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lit-kd"


def list_class_images(split_dir: Path, classes: Sequence[str], inner_dir: str = "") -> tuple[list[Path], Tensor]:
    """List ``split_dir/<class>/<inner_dir>/*`` image files and their class indices.

    Args:
        split_dir: folder holding one sub-folder per class.
        classes: class folder names; the index of a name is its label.
        inner_dir: optional folder inside each class folder (``"images"`` for Tiny-ImageNet's train split).

    Raises:
        CorruptDatasetError: a class folder is missing or empty, or a folder not in ``classes`` is present.
    """
    present = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
    unexpected = sorted(set(present) - set(classes))
    if unexpected:
        raise CorruptDatasetError(
            f"{split_dir} holds folders that are not classes of this dataset: {unexpected[:5]}; "
            f"expected only {len(classes)} class folders such as {list(classes[:3])}"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name / inner_dir if inner_dir else split_dir / name
        if not class_dir.is_dir():
            raise CorruptDatasetError(f"missing class folder {class_dir} (expected one folder per class)")
        files = sorted(
            class_dir / file_name for file_name in os.listdir(class_dir) if file_name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise CorruptDatasetError(f"class folder {class_dir} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(files)
        labels.extend([label] * len(files))
    return paths, torch.tensor(labels, dtype=torch.long)


def image_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files of a folder (recursively, sorted) or of a list of files.

    Raises:
        FileNotFoundError: a file or the folder does not exist, or the folder holds no image file.
    """
    if isinstance(source, str | Path):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"predict_files: {folder} is not a folder")
        files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"predict_files: {folder} holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    files = [Path(path).expanduser() for path in source]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"predict_files: {missing[:3]} do not exist")
    return files


def decode_images(paths: Sequence[Path], size: tuple[int, int], resize: bool = False) -> Tensor:
    """Decode image files to a ``[N, 3, H, W]`` ``uint8`` tensor; grayscale images are converted to RGB.

    With ``resize``, images of another size are resized to ``size`` (bilinear, antialiased): for user images to
    predict on; datasets must have the right size.

    Raises:
        CorruptDatasetError: naming the first file that cannot be decoded or whose size is not ``size``.
    """
    images = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if resize and image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.BILINEAR)
                pixels = np.array(image)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise CorruptDatasetError(f"cannot decode image {path}: {error}") from error
        if pixels.shape[:2] != tuple(size):
            raise CorruptDatasetError(f"image {path} is {pixels.shape[:2]} pixels, expected {tuple(size)}")
        images[index] = torch.from_numpy(pixels).permute(2, 0, 1)
    return images


def _fingerprint(paths: Sequence[Path]) -> str:
    """A key that changes when any file is added, removed, renamed or rewritten.

    Per file: absolute path, size, modification time, inode and status-change time. A rewrite that keeps size and
    modification time (``cp -p``, ``rsync -a``, re-extracting an archive) still gets a new inode or ctime.
    """
    digest = hashlib.sha256()
    for path in paths:
        name = os.path.abspath(path)
        stat = os.stat(name)
        digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{stat.st_ctime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _read_cache(cache_file: Path, expected_shape: tuple[int, ...]) -> Tensor | None:
    """The cached tensor, or ``None`` (with a warning) when the file is truncated, refused or of the wrong shape."""
    try:  # plain tensors only: never a full unpickle, whatever the environment says
        images = torch.load(cache_file, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:  # truncated, foreign or refused
        warnings.warn(
            f"decoded-image cache {cache_file} is unreadable ({error}); decoding the images again", stacklevel=3
        )
        return None
    if isinstance(images, Tensor) and tuple(images.shape) == expected_shape and images.dtype == torch.uint8:
        return images
    warnings.warn(
        f"decoded-image cache {cache_file} does not hold {expected_shape} uint8; decoding again", stacklevel=3
    )
    return None


def _file_mode() -> int:
    """The mode a new file gets from the process' umask (``0o644`` under the usual ``022``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def load_images_cached(paths: Sequence[Path], size: tuple[int, int], cache_dir: Path | None, name: str) -> Tensor:
    """Decode ``paths`` once and reuse the result from ``cache_dir`` while no file changed.

    The cache key (:func:`_fingerprint`) covers every file's absolute path, size, modification time, inode and
    status-change time, so an edited, added, removed or replaced file invalidates it. The file is read with
    ``weights_only=True``; a truncated or unreadable cache file is decoded again, never trusted. It is written
    atomically (a temporary file in the same folder, removed if the save fails), with the permissions of an ordinary
    new file (readable by the group under the usual umask). ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return decode_images(paths, size)
    cache_file = Path(cache_dir) / f"{name}-{_fingerprint(paths)}.pt"
    if cache_file.is_file():
        images = _read_cache(cache_file, (len(paths), 3, *size))
        if images is not None:
            return images
    images = decode_images(paths, size)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".tmp", delete=False)
    try:
        with handle:
            torch.save(images, handle)
        os.chmod(handle.name, _file_mode())
        os.replace(handle.name, cache_file)
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return images
