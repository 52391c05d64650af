"""Small building blocks shared by tests (importable by ddp_spawn workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch import nn

from lit_kd.data import CIFAR10DataModule


class TinyNet(nn.Module):
    """A very small CNN for fast tests: conv -> BN -> ReLU -> pool -> linear."""

    def __init__(self, num_classes: int = 10, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def tiny_trainer(root: Path, **kwargs: Any) -> pl.Trainer:
    """A CPU trainer without logger, progress bar or model summary."""
    defaults: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
        max_epochs=1,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def tiny_cifar(root: Path, **kwargs: Any) -> CIFAR10DataModule:
    defaults: dict[str, Any] = dict(batch_size=16, use_cache=False)
    defaults.update(kwargs)
    return CIFAR10DataModule(root, **defaults)


def save_state_dict(network: nn.Module, path: Path) -> Path:
    torch.save(network.state_dict(), path)
    return path


class RecordImages(Logger):
    """A logger with ``log_image``, like W&B's: keeps ``(key, image size, caption)`` of every image it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, tuple[int, int], str]] = []

    name = "record"
    version = 0

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
        self.images.append((key, images[0].size, kwargs["caption"][0]))


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


def torchvision_network(name: str = "resnet18", seed: int = 0) -> nn.Module:
    """A torchvision classifier for 10 classes (``resnet18``, ``mobilenet_v3_small``), seeded."""
    import torchvision

    with torch.random.fork_rng():  # leaves the global generator (and torch.initial_seed()) as it was
        torch.manual_seed(seed)
        return getattr(torchvision.models, name)(num_classes=10)


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def fit_args(recipe: str, data_dir: Path, *options: str, **settings: Any) -> list[str]:
    """``lit-kd fit`` arguments for ``recipes/<recipe>`` on ``data_dir``.

    ``options`` are passed as they are (``"--trainer.callbacks+=ModelCheckpoint"``); each keyword ``a__b=v`` becomes
    ``--a.b v`` (``trainer__max_epochs=1``).
    """
    args = ["fit", "--config", str(RECIPES / recipe), "--data.data_dir", str(data_dir), *options]
    for key, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += [f"--{key.replace('__', '.')}", text]
    return args


class SigtermAtStep(pl.Callback):
    """Sends this process a real SIGTERM after training step ``step`` (a scheduler's pre-emption, ``kill <pid>``)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
