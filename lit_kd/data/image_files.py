"""Reading image files from disk into one ``uint8`` tensor, with an optional decoded cache.

Images are decoded with Pillow (torchvision 0.29 deprecated its own decoders). Decoding the 60,000 CIFAR-10 JPEGs
takes about 16 s on two CPU cores; reloading the decoded tensor from the cache about 1-2 s (see
``benchmarks/data_pipeline.py``), so the cache is on by default.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

#: File extensions read as images (compared in lower case), all decoded by Pillow.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: Pillow modes converted to RGB by :meth:`PIL.Image.Image.convert` without loss of the 8-bit values (alpha is
#: dropped, as torchvision's ``ImageFolder`` does; CMYK uses Pillow's profile-free conversion).
_EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
#: Pillow modes of 16-bit unsigned grayscale (16-bit colour PNGs open as 8-bit "RGB"/"RGBA", their high bytes).
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
#: A temporary cache file older than this (seconds) was left by a run that was killed while writing it.
_STALE_TEMPORARY_AGE_S = 3600.0
#: Cache folders already reported as unwritable in this process (each is reported once).
_unwritable_cache_dirs: set[Path] = set()


class CorruptDatasetError(ValueError):
    """A dataset on disk does not have the layout or content its DataModule expects."""


def default_cache_dir() -> Path:
    """Where decoded datasets are cached: ``$LIT_KD_CACHE``, else ``$XDG_CACHE_HOME/lit-kd``, else ``~/.cache``."""
    if "LIT_KD_CACHE" in os.environ:
        return Path(os.environ["LIT_KD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lit-kd"


def list_class_images(split_dir: Path, classes: Sequence[str], inner_dir: str = "") -> tuple[list[Path], Tensor]:
    """List ``split_dir/<class>/<inner_dir>/*`` image files and their class indices.

    Entries of a class folder without an image extension (:data:`IMAGE_EXTENSIONS`) are skipped, with one warning
    for the whole split that counts them and names a few.

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
    skipped: list[Path] = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name / inner_dir if inner_dir else split_dir / name
        if not class_dir.is_dir():
            raise CorruptDatasetError(f"missing class folder {class_dir} (expected one folder per class)")
        files: list[Path] = []
        for file_name in sorted(os.listdir(class_dir)):
            (files if file_name.lower().endswith(IMAGE_EXTENSIONS) else skipped).append(class_dir / file_name)
        if not files:
            raise CorruptDatasetError(f"class folder {class_dir} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(files)
        labels.extend([label] * len(files))
    _warn_skipped(split_dir, skipped)
    return paths, torch.tensor(labels, dtype=torch.long)


def _warn_skipped(folder: Path, skipped: Sequence[Path]) -> None:
    """One warning that counts the entries under ``folder`` skipped for their extension and names the first three."""
    if skipped:
        examples = ", ".join(str(path.relative_to(folder)) for path in skipped[:3])
        warnings.warn(
            f"{folder}: skipped {len(skipped)} file(s) that are not images (e.g. {examples}); "
            f"expected the extensions {', '.join(IMAGE_EXTENSIONS)}",
            stacklevel=3,
        )


def image_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files of a folder (recursively, sorted) or of a list of files.

    Files of the folder without an image extension (:data:`IMAGE_EXTENSIONS`) are skipped with one warning.

    Raises:
        FileNotFoundError: a file or the folder does not exist, or the folder holds no image file.
    """
    if isinstance(source, str | Path):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"predict_files: {folder} is not a folder")
        found = sorted(path for path in folder.rglob("*") if path.is_file())
        files = [path for path in found if path.suffix.lower() in IMAGE_EXTENSIONS]
        _warn_skipped(folder, [path for path in found if path.suffix.lower() not in IMAGE_EXTENSIONS])
        if not files:
            raise FileNotFoundError(f"predict_files: {folder} holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
        return files
    files = [Path(path).expanduser() for path in source]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"predict_files: {missing[:3]} do not exist")
    return files


def _to_rgb(image: Image.Image, path: Path) -> Image.Image:
    """``image`` as 8-bit RGB: 16-bit grayscale scaled by its full range (``value >> 8``), never clamped.

    Raises:
        CorruptDatasetError: naming ``path`` and the mode, for a mode with no exact 8-bit RGB form (32-bit integer or
            float samples, Lab, HSV, ...).
    """
    mode = image.mode
    if mode in _EIGHT_BIT_MODES:
        return image.convert("RGB")
    sixteen_bit = mode in _SIXTEEN_BIT_MODES or (mode == "I" and image.format == "PNG")  # PNG "I": 16-bit gray
    if sixteen_bit:
        values = np.asarray(image).astype(np.int64)
        if values.size and 0 <= values.min() and values.max() <= 65535:
            gray = (values >> 8).astype(np.uint8)
            return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2), "RGB")
    raise CorruptDatasetError(
        f"image {path} has pixel mode {mode!r}, which has no exact 8-bit RGB form; expected 8-bit samples "
        f"({', '.join(sorted(_EIGHT_BIT_MODES))}) or 16-bit unsigned grayscale"
    )


def decode_images(paths: Sequence[Path], size: tuple[int, int], resize: bool = False) -> Tensor:
    """Decode image files to a ``[N, 3, H, W]`` ``uint8`` tensor in RGB.

    Grayscale, palette, CMYK and images with alpha are converted to RGB (alpha is dropped); 16-bit grayscale is
    scaled to 8 bits by its full range (65535 becomes 255). With ``resize``, images of another size are resized to
    ``size`` (bilinear, antialiased): for user images to predict on; datasets must have the right size.

    Raises:
        CorruptDatasetError: naming the first file that cannot be decoded, whose pixel mode has no exact 8-bit RGB
            form, or whose size is not ``size``.
    """
    images = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = _to_rgb(image, path)
                if resize and image.size != (size[1], size[0]):
                    image = image.resize((size[1], size[0]), Image.BILINEAR)
                pixels = np.array(image)
        except CorruptDatasetError:
            raise
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


def _is_unwritable(error: OSError) -> bool:
    """Whether ``error`` says the cache folder cannot hold files (permissions, read-only file system, not a folder)."""
    return isinstance(error, PermissionError) or error.errno in (errno.EROFS, errno.ENOTDIR, errno.EEXIST)


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary cache files older than an hour: left by runs killed while writing (a live write is newer)."""
    threshold = time.time() - _STALE_TEMPORARY_AGE_S
    for pattern in ("*.pt.*.tmp", "tmp*.tmp"):  # this module's names, and those it used before they had a prefix
        for path in folder.glob(pattern):
            try:
                if path.is_file() and path.stat().st_mtime < threshold:
                    path.unlink()
            except OSError:  # removed meanwhile by another process, or not ours to remove
                continue


def _write_cache(images: Tensor, cache_file: Path) -> None:
    """Save ``images`` to ``cache_file`` atomically, through a temporary file that is removed whatever happens."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(cache_file.parent)
    folder, prefix = cache_file.parent, f"{cache_file.name}."
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=prefix, suffix=".tmp", delete=False)
    try:
        with handle:
            torch.save(images, handle)
        os.chmod(handle.name, _file_mode())
        os.replace(handle.name, cache_file)
    finally:
        Path(handle.name).unlink(missing_ok=True)


def load_images_cached(paths: Sequence[Path], size: tuple[int, int], cache_dir: Path | None, name: str) -> Tensor:
    """Decode ``paths`` once and reuse the result from ``cache_dir`` while no file changed.

    The cache key (:func:`_fingerprint`) covers every file's absolute path, size, modification time, inode and
    status-change time, so an edited, added, removed or replaced file invalidates it. The file is read with
    ``weights_only=True``; a truncated or unreadable cache file is decoded again, never trusted. It is written
    atomically (a temporary file in the same folder, removed if the save fails; temporary files older than an hour,
    left by killed runs, are removed on the next write), with the permissions of an ordinary new file (readable by
    the group under the usual umask). A folder that cannot be created or written (permissions, read-only file
    system, a file in the way) is reported once per process and the images are used without the cache; other write
    errors (a full disk) are raised. ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return decode_images(paths, size)
    cache_file = Path(cache_dir) / f"{name}-{_fingerprint(paths)}.pt"
    if cache_file.is_file():
        images = _read_cache(cache_file, (len(paths), 3, *size))
        if images is not None:
            return images
    images = decode_images(paths, size)
    try:
        _write_cache(images, cache_file)
    except OSError as error:
        if not _is_unwritable(error):
            raise
        if cache_file.parent not in _unwritable_cache_dirs:
            _unwritable_cache_dirs.add(cache_file.parent)
            warnings.warn(
                f"decoded-image cache folder {cache_file.parent} cannot be written ({error}); using the images without "
                "the cache: set the DataModule's cache_dir (or $LIT_KD_CACHE) to a writable folder, or use_cache=False",
                stacklevel=2,
            )
    return images
