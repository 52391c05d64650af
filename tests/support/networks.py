"""Tiny networks for fast tests, and writing a network's weights to a file (importable by ddp_spawn workers)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


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


def save_state_dict(network: nn.Module, path: Path) -> Path:
    torch.save(network.state_dict(), path)
    return path


def torchvision_network(name: str = "resnet18", seed: int = 0) -> nn.Module:
    """A torchvision classifier for 10 classes (``resnet18``, ``mobilenet_v3_small``), seeded."""
    import torchvision

    with torch.random.fork_rng():  # leaves the global generator (and torch.initial_seed()) as it was
        torch.manual_seed(seed)
        return getattr(torchvision.models, name)(num_classes=10)
