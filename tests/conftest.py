"""Shared fixtures: tiny datasets generated on disk in the layouts the real ones use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from lit_kd.data.cifar import CIFAR10_CLASSES

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(min(2, torch.get_num_threads()))


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


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 image-folder export with 8 train and 4 test images per class: ``<root>/cifar10/{train,test}``."""
    root = tmp_path_factory.mktemp("cifar_data")
    write_class_folders(root / "cifar10" / "train", CIFAR10_CLASSES, per_class=8, size=32, seed=0)
    write_class_folders(root / "cifar10" / "test", CIFAR10_CLASSES, per_class=4, size=32, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_imagenet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny-ImageNet in the official layout, 1 train image per class, 200 validation images."""
    root = tmp_path_factory.mktemp("tiny_data") / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(200)]
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    write_class_folders(root / "train", wnids, per_class=1, size=64, seed=2, inner_dir="images")
    generator = torch.Generator().manual_seed(3)
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for index, wnid in enumerate(wnids):
        write_jpeg(class_image(index, 64, generator), str(root / "val" / "images" / f"val_{index}.JPEG"))
        lines.append(f"val_{index}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root.parent


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private decoded-image cache for one test."""
    return tmp_path / "cache"
