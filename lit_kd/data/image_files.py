"""Reading image files from disk into one ``uint8`` tensor, with an optional decoded cache.

Images are decoded with Pillow (torchvision 0.29 deprecated its own decoders). Decoding the 60,000 CIFAR-10 JPEGs
takes about 16 s on two CPU cores; reloading the decoded tensor from the cache about 1-2 s (see
``benchmarks/data_pipeline.py``), so the cache is on by default.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
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


def decode_images(paths: Sequence[Path], size: tuple[int, int]) -> Tensor:
    """Decode image files to a ``[N, 3, H, W]`` ``uint8`` tensor; grayscale images are converted to RGB.

    Raises:
        CorruptDatasetError: naming the first file that cannot be decoded or whose size is not ``size``.
    """
    images = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                pixels = np.array(image.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise CorruptDatasetError(f"cannot decode image {path}: {error}") from error
        if pixels.shape[:2] != tuple(size):
            raise CorruptDatasetError(f"image {path} is {pixels.shape[:2]} pixels, expected {tuple(size)}")
        images[index] = torch.from_numpy(pixels).permute(2, 0, 1)
    return images


def _fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        name = os.path.abspath(path)
        stat = os.stat(name)
        digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def load_images_cached(paths: Sequence[Path], size: tuple[int, int], cache_dir: Path | None, name: str) -> Tensor:
    """Decode ``paths`` once and reuse the result from ``cache_dir`` while no file changed.

    The cache key covers every file's absolute path, size and modification time, so an edited, added or removed
    file invalidates it. ``cache_dir=None`` disables caching. The cache file is written atomically.
    """
    if cache_dir is None:
        return decode_images(paths, size)
    cache_file = Path(cache_dir) / f"{name}-{_fingerprint(paths)}.pt"
    if cache_file.is_file():
        images = torch.load(cache_file, weights_only=True)
        if isinstance(images, Tensor) and images.shape == (len(paths), 3, *size) and images.dtype == torch.uint8:
            return images
    images = decode_images(paths, size)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_file.parent, suffix=".tmp", delete=False) as handle:
        torch.save(images, handle)
    os.replace(handle.name, cache_file)
    return images
