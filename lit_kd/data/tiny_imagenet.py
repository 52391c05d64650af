"""Tiny-ImageNet-200 in its official layout."""

from __future__ import annotations

from pathlib import Path

import torch

from lit_kd.data.base import InMemoryImageDataModule, LabelledImages, Split
from lit_kd.data.image_files import CorruptDatasetError, list_class_images, load_images_cached


class TinyImageNetDataModule(InMemoryImageDataModule):
    """Tiny-ImageNet-200 (Le & Yang, 2015): 64x64 images of 200 ImageNet classes.

    Expects the official layout under ``data_dir/tiny-imagenet-200`` (or ``data_dir`` itself):
    ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` (any number of images per class: the official release has 500,
    subsets fewer) and ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (tab-separated file, wnid,
    box). The official test split has no labels, so the ``test`` split here is the official validation set.
    Class indices follow the sorted wnids (the order of torchvision's ``ImageFolder``).

    Defaults: crop padding 8 (a 64x64 image gets proportionally the CIFAR padding of 4); normalisation with the
    Tiny-ImageNet training-set channel statistics. Other arguments: see
    :class:`~lit_kd.data.base.InMemoryImageDataModule`.
    """

    num_classes = 200
    image_size = 64
    mean = (0.4802, 0.4481, 0.3975)
    std = (0.2770, 0.2691, 0.2821)

    def __init__(self, data_dir: str | Path = "data", crop_padding: int = 8, **kwargs: object) -> None:
        super().__init__(data_dir=data_dir, crop_padding=crop_padding, **kwargs)  # type: ignore[arg-type]

    @property
    def root(self) -> Path:
        """The folder that holds ``wnids.txt``."""
        nested = self.data_dir / "tiny-imagenet-200"
        return nested if nested.is_dir() else self.data_dir

    def wnids(self) -> list[str]:
        """The 200 class ids, sorted."""
        wnids_file = self.root / "wnids.txt"
        if not wnids_file.is_file():
            raise FileNotFoundError(
                f"Tiny-ImageNet not found: {wnids_file} is missing (expected the official tiny-imagenet-200 layout "
                f"under {self.data_dir})"
            )
        wnids = sorted(line.strip() for line in wnids_file.read_text().splitlines() if line.strip())
        if len(wnids) != self.num_classes or len(set(wnids)) != len(wnids):
            raise CorruptDatasetError(f"{wnids_file} lists {len(wnids)} distinct wnids, expected {self.num_classes}")
        return wnids

    def load_split(self, split: Split) -> LabelledImages:
        """Read the training split, or the official validation split as ``test``."""
        wnids = self.wnids()
        size = (self.image_size, self.image_size)
        if split == "train":
            paths, labels = list_class_images(self.root / "train", wnids, inner_dir="images")
        else:
            paths, labels = self._validation_files(wnids)
        return LabelledImages(load_images_cached(paths, size, self.cache_dir, name=f"tiny-imagenet-{split}"), labels)

    def _validation_files(self, wnids: list[str]) -> tuple[list[Path], torch.Tensor]:
        annotations = self.root / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise FileNotFoundError(f"Tiny-ImageNet validation labels not found: {annotations} is missing")
        label_of = {wnid: index for index, wnid in enumerate(wnids)}
        paths: list[Path] = []
        labels: list[int] = []
        for line_number, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in label_of:
                raise CorruptDatasetError(
                    f"{annotations}:{line_number}: expected '<file>\\t<wnid>\\t<box>' with a wnid from wnids.txt, "
                    f"got {line!r}"
                )
            path = self.root / "val" / "images" / fields[0]
            if not path.is_file():
                raise CorruptDatasetError(f"{annotations}:{line_number} names {path}, which does not exist")
            paths.append(path)
            labels.append(label_of[fields[1]])
        if not paths:
            raise CorruptDatasetError(f"{annotations} lists no images")
        return paths, torch.tensor(labels, dtype=torch.long)
