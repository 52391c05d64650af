"""Generated data on disk: images whose colour encodes their class, the UTKFace names the fixtures write, and the
DataModule a user of another Lightning project brings."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from PIL import Image

#: Ages of the generated UTKFace images: 20 in CcGAN's range [1, 60] and one (80) outside it.
UTKFACE_AGES = (1, 2, 3, 5, 8, 10, 13, 16, 20, 24, 27, 30, 33, 36, 40, 44, 48, 52, 56, 60, 80)
#: Generated names that break <age>_<gender>_<race>_<date>.jpg.chip.jpg: a missing field, as in the real release.
UTKFACE_MALFORMED = ("61_1_20170109142408075.jpg.chip.jpg", "39_1_20170116174525125.jpg.chip.jpg")


def write_jpeg(image: torch.Tensor, path: str, quality: int = 95) -> None:
    """Save a ``[3, H, W]`` uint8 tensor as a JPEG file."""
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, quality=quality)


def class_image(label: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """A noisy image whose mean colour depends on its class, so that a network can learn the labels."""
    base = torch.tensor([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256], dtype=torch.float32)
    noise = torch.randint(-40, 41, (3, size, size), generator=generator).float()
    return (base[:, None, None] + noise).clamp(0, 255).to(torch.uint8)


def write_class_folders(
    root: Path, classes: list[str] | tuple[str, ...], per_class: int, size: int, seed: int, inner_dir: str = ""
) -> None:
    generator = torch.Generator().manual_seed(seed)
    for label, name in enumerate(classes):
        folder = root / name / inner_dir if inner_dir else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            write_jpeg(class_image(label, size, generator), str(folder / f"{index:04d}.jpg"))


class UserFolderData(pl.LightningDataModule):
    """What a user brings from another Lightning project: a torchvision ``ImageFolder`` with its own transforms and
    normalisation, served by a plain ``DataLoader``; none of lit-kd's DataModule attributes (no ``num_classes``,
    ``mean``/``std``, ``input_shape`` or ``task``)."""

    def __init__(self, root: Path, batch_size: int = 8, shuffle: bool = True, augment: bool = True) -> None:
        super().__init__()
        self.root, self.batch_size, self.shuffle, self.augment = Path(root), batch_size, shuffle, augment

    def setup(self, stage: str) -> None:
        from torchvision import transforms
        from torchvision.datasets import ImageFolder

        normalise = [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))]
        augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if self.augment else []
        self.train_set = ImageFolder(self.root / "cifar10" / "train", transforms.Compose(augment + normalise))
        self.val_set = ImageFolder(self.root / "cifar10" / "test", transforms.Compose(normalise))

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.batch_size, shuffle=self.shuffle)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.val_set, batch_size=self.batch_size)
