"""CIFAR-10 from the official pickled batches or from an image-folder export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import CIFAR10

from lit_kd.data.base import InMemoryImageDataModule, LabelledImages, Split
from lit_kd.data.image_files import CorruptDatasetError, list_class_images, load_images_cached

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class CIFAR10DataModule(InMemoryImageDataModule):
    """CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test images of 32x32 pixels in 10 classes.

    Reads either layout under ``data_dir``:

    * the official torchvision format, ``data_dir/cifar-10-batches-py/`` (downloaded there by ``download=True``
      on a machine with internet; checksums are verified);
    * an image-folder export, ``data_dir/cifar10/{train,test}/<class name>/*.jpg`` or
      ``data_dir/{train,test}/<class name>/*.jpg`` (class names as in :data:`CIFAR10_CLASSES`).

    Normalisation uses the CIFAR-10 training-set channel statistics. Other arguments: see
    :class:`~lit_kd.data.base.InMemoryImageDataModule`.

    Args:
        data_dir: folder holding one of the layouts above.
        download: download the official archive into ``data_dir`` if it is not there.
        **kwargs: batch size, validation split, subset, seed, augmentation: see the base class.
    """

    num_classes = 10
    image_size = 32
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    classes = CIFAR10_CLASSES

    def __init__(self, data_dir: str | Path = "data", download: bool = False, **kwargs: Any) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        self.download = download

    def prepare_data(self) -> None:
        """Download the official archive when ``download=True`` (runs on one process only)."""
        if self.download:
            for train in (True, False):
                CIFAR10(str(self.data_dir), train=train, download=True)

    def _image_folder_root(self) -> Path | None:
        for root in (self.data_dir / "cifar10", self.data_dir):
            if (root / "train").is_dir() and (root / "test").is_dir():
                return root
        return None

    def load_split(self, split: Split) -> LabelledImages:
        """Read ``split`` from the official batches if present, else from the image-folder export."""
        if (self.data_dir / "cifar-10-batches-py").is_dir() or self.download:
            try:
                dataset = CIFAR10(str(self.data_dir), train=split == "train", download=False)
            except RuntimeError as error:
                raise CorruptDatasetError(
                    f"CIFAR-10 batches under {self.data_dir / 'cifar-10-batches-py'} are missing or fail their "
                    f"checksum ({error}); delete the folder and set download=True, or use an image-folder export"
                ) from error
            images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
            return LabelledImages(images, torch.tensor(dataset.targets, dtype=torch.long))
        root = self._image_folder_root()
        if root is None:
            raise FileNotFoundError(
                f"CIFAR-10 not found under {self.data_dir}: expected {self.data_dir}/cifar-10-batches-py/ "
                f"(official; set download=True when online) or {self.data_dir}/cifar10/{{train,test}}/<class>/*.jpg "
                f"(image-folder export, e.g. extract cifar10-jpg.tar.gz into {self.data_dir})"
            )
        paths, labels = list_class_images(root / split, self.classes)
        images = load_images_cached(paths, (32, 32), self.cache_dir, name=f"cifar10-{split}")
        return LabelledImages(images, labels)
