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
