"""UTKFace face crops for age regression, as used by CcGAN and cGAN-KD (64x64, ages 1 to 60)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lit_kd.data.base import InMemoryImageDataModule, LabelledImages, Split
from lit_kd.data.image_files import IMAGE_EXTENSIONS, CorruptDatasetError, load_images_cached

#: The official UTKFace naming, ``<age>_<gender>_<race>_<date&time>.jpg.chip.jpg`` (https://susanqq.github.io/UTKFace/):
#: gender 0 (male) or 1 (female), race 0 to 4, the date and time as digits.
UTKFACE_NAME = re.compile(r"^(?P<age>\d+)_(?P<gender>[01])_(?P<race>[0-4])_(?P<datetime>\d+)\.jpg\.chip\.jpg$")


class UTKFaceIndex(NamedTuple):
    """The files of a UTKFace folder used for age regression, the ages they carry and what was left out."""

    paths: list[Path]
    ages: Tensor
    skipped_files: list[str]
    num_out_of_range: int


def index_utkface(folder: Path, min_age: int, max_age: int) -> UTKFaceIndex:
    """List the UTKFace images of ``folder`` (sorted by name) with ages in ``[min_age, max_age]``.

    An image file whose name breaks :data:`UTKFACE_NAME` is skipped, never guessed at (the release holds a few
    names missing a field, e.g. ``61_1_20170109142408075.jpg.chip.jpg``). Images with an age outside the range are
    left out, as CcGAN does (``main.py`` of UBCDingXin/improved_CcGAN, ``UTKFace_64x64``, keeps ages
    ``min_age..max_age``). Files that are not images are ignored.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        CorruptDatasetError: no well-named image with an age in range is left.

    Example:
        >>> UTKFACE_NAME.match("26_1_3_20170104235421282.jpg.chip.jpg")["age"]
        '26'
        >>> UTKFACE_NAME.match("61_1_20170109142408075.jpg.chip.jpg") is None
        True
    """
    if not folder.is_dir():
        raise FileNotFoundError(
            f"UTKFace not found: {folder} is missing (expected <data_dir>/UTKFace/<age>_<gender>_<race>_<date>"
            ".jpg.chip.jpg, e.g. extract ../shared/data/utkface-64.tar.gz into data_dir)"
        )
    paths: list[Path] = []
    ages: list[int] = []
    skipped: list[str] = []
    out_of_range = 0
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        match = UTKFACE_NAME.match(name)
        if match is None:
            skipped.append(name)
            continue
        age = int(match["age"])
        if not min_age <= age <= max_age:
            out_of_range += 1
            continue
        paths.append(folder / name)
        ages.append(age)
    if not paths:
        raise CorruptDatasetError(
            f"{folder} holds no image named <age>_<gender>_<race>_<date>.jpg.chip.jpg with an age in "
            f"[{min_age}, {max_age}] ({len(skipped)} malformed names, {out_of_range} ages out of range)"
        )
    return UTKFaceIndex(paths, torch.tensor(ages, dtype=torch.long), skipped, out_of_range)


class UTKFaceDataModule(InMemoryImageDataModule):
    """UTKFace (Zhang et al., 2017) aligned face crops at 64x64 for age regression, the cGAN-KD/CcGAN setting.

    Reads ``data_dir/UTKFace/<age>_<gender>_<race>_<date&time>.jpg.chip.jpg`` (the layout of
    ``../shared/data/utkface-64.tar.gz``: 9,780 images, ages 1 to 110). Names that break that pattern are skipped
    with one warning stating their count (:attr:`skipped_files` lists them); images aged outside
    ``[min_age, max_age]`` are left out (:attr:`num_out_of_range`), as CcGAN does.

    Targets are ``age / max_age`` as ``float32`` in ``[min_age / max_age, 1]`` and :attr:`target_scale` is
    ``max_age``, so ``prediction * target_scale`` is in years: the label scaling of CcGAN (``labels /= args.max_age``
    in ``UTKFace_64x64/CcGAN-improved/main.py``, ``min_age=1``, ``max_age=60`` in its ``opts.py``) and of cGAN-KD
    (``fn_norm_labels``: ``labels / args.max_label`` with ``max_label=60`` in ``UTKFace/opts.py``).

    UTKFace has no official split. cGAN-KD uses a fixed 80/20 train/test split (its file
    ``UTKFace_64x64_prop_0.8.h5``; the script that made it is not published), so :attr:`test_size` defaults to 0.2
    and the split is a seeded random permutation of the sorted file names (``split_seed``; our choice), independent
    of ``seed`` so that runs with different training seeds share one test set. Exact duplicates (identical decoded
    pixels) are removed before the split (:meth:`unique_images`), so no test face is also a training face.

    Training augmentation defaults to horizontal flips only and normalisation to mean 0.5, std 0.5 per channel, as
    the cGAN-KD regression CNNs (``hflip_images`` and ``normalize_images`` in ``UTKFace/train_cnn.py``).

    Args:
        data_dir: folder holding ``UTKFace/``.
        min_age: youngest age kept (CcGAN: 1).
        max_age: oldest age kept, and the target scale (CcGAN and cGAN-KD: 60).
        test_size: fraction of the kept images in the test split, in ``(0, 1)``.
        split_seed: seed of the train/test split.
        crop_padding: random-crop padding (default 0: cGAN-KD does not crop).
        **kwargs: batch size, ``val_size``, ``train_fraction``, ``seed``, ... : see
            :class:`~lit_kd.data.base.InMemoryImageDataModule`.
    """

    task = "regression"
    num_classes = 1
    image_size = 64
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(
        self,
        data_dir: str | Path = "data",
        min_age: int = 1,
        max_age: int = 60,
        test_size: float = 0.2,
        split_seed: int = 0,
        crop_padding: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, crop_padding=crop_padding, **kwargs)
        if not 0 <= min_age <= max_age or max_age < 1:
            raise ValueError(
                f"min_age and max_age must satisfy 0 <= min_age <= max_age, max_age >= 1; got "
                f"min_age={min_age}, max_age={max_age}"
            )
        if not 0 < test_size < 1:
            raise ValueError(f"test_size must be in (0, 1), got {test_size}")
        self.min_age = min_age
        self.max_age = max_age
        self.test_size = test_size
        self.split_seed = split_seed
        self.skipped_files: list[str] = []
        self.num_out_of_range = 0
        self._index: UTKFaceIndex | None = None
        self._unique: LabelledImages | None = None
        self._split_indices: dict[str, Tensor] | None = None
        self.num_duplicates_removed = 0
        self.num_conflicting_removed = 0

    @property
    def target_scale(self) -> float:
        """Multiply a target or a prediction by this to get years (``max_age``)."""
        return float(self.max_age)

    @property
    def folder(self) -> Path:
        """The folder holding the images."""
        return self.data_dir / "UTKFace"

    def index(self) -> UTKFaceIndex:
        """The usable files and their ages (read once; warns once about malformed names)."""
        if self._index is None:
            self._index = index_utkface(self.folder, self.min_age, self.max_age)
            self.skipped_files = self._index.skipped_files
            self.num_out_of_range = self._index.num_out_of_range
            if self.skipped_files:
                examples = ", ".join(self.skipped_files[:3])
                rank_zero_warn(
                    f"UTKFaceDataModule: skipped {len(self.skipped_files)} file(s) in {self.folder} whose names break "
                    f"<age>_<gender>_<race>_<date>.jpg.chip.jpg (e.g. {examples}); see .skipped_files"
                )
        return self._index

    def unique_images(self) -> LabelledImages:
        """Every usable image (decoded once, cached) and its age in years, exact duplicates removed.

        UTKFace holds pixel-identical images under different names, some with different ages; left in, a duplicate
        can sit in both the training and the test split. Images are grouped by the SHA-1 of their decoded pixels:
        a group whose copies agree on the age keeps its first copy (by file name), a group whose copies disagree is
        dropped entirely (its label is unknown). The counts are kept in :attr:`num_duplicates_removed` and
        :attr:`num_conflicting_removed` and reported once.
        """
        if self._unique is None:
            index = self.index()
            size = (self.image_size, self.image_size)
            images = load_images_cached(index.paths, size, self.cache_dir, name="utkface-all")
            groups: dict[bytes, list[int]] = {}
            for position in range(len(images)):
                groups.setdefault(hashlib.sha1(images[position].numpy().tobytes()).digest(), []).append(position)
            keep: list[int] = []
            for members in groups.values():
                if len(set(index.ages[members].tolist())) == 1:
                    keep.append(members[0])
                else:
                    self.num_conflicting_removed += len(members)
            keep.sort()
            self.num_duplicates_removed = len(images) - len(keep) - self.num_conflicting_removed
            if len(keep) < len(images):
                rank_zero_warn(
                    f"UTKFaceDataModule: removed {len(images) - len(keep)} of {len(images)} images before the "
                    f"train/test split: {self.num_duplicates_removed} exact duplicates of an image kept, and "
                    f"{self.num_conflicting_removed} pixel-identical copies that disagree on the age"
                )
            kept = torch.tensor(keep, dtype=torch.long)
            self._unique = LabelledImages(images[kept], index.ages[kept])
        return self._unique

    def split_indices(self) -> dict[str, Tensor]:
        """Indices into :meth:`unique_images` of the ``train`` and ``test`` images (seeded by ``split_seed``)."""
        if self._split_indices is None:
            count = len(self.unique_images().targets)
            order = torch.randperm(count, generator=torch.Generator().manual_seed(self.split_seed))
            num_test = round(self.test_size * count)
            if num_test == 0 or num_test == count:
                raise CorruptDatasetError(
                    f"{self.folder}: {count} usable images cannot be split with test_size={self.test_size}"
                )
            self._split_indices = {"test": order[:num_test].sort().values, "train": order[num_test:].sort().values}
        return self._split_indices

    def load_split(self, split: Split) -> LabelledImages:
        """The images of ``split`` and their ages scaled by ``1 / max_age``."""
        images, ages = self.unique_images()
        chosen = self.split_indices()[split]
        return LabelledImages(images[chosen], ages[chosen].to(torch.float32) / self.max_age)
