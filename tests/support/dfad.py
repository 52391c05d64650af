"""Small DFAD building blocks for tests, importable by ddp_spawn workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lit_kd.data import DataFreeDataModule
from lit_kd.methods import DataFreeAdversarialDistillation
from lit_kd.models import DFADGenerator
from tests.support.networks import TinyNet
from tests.support.training import tiny_cifar


class LinearNet(nn.Module):
    """A linear classifier on flattened 32x32 images: no batch norm, so a forward pass has no side effect."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.linear(images.flatten(1))


class LinearGenerator(nn.Module):
    """Latent -> linear -> tanh -> 3x32x32 images, without batch norm."""

    def __init__(self, latent_dim: int = 8) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.linear = nn.Linear(latent_dim, 3 * 32 * 32)

    def forward(self, latent: Tensor) -> Tensor:
        return torch.tanh(self.linear(latent)).view(-1, 3, 32, 32)


def tiny_generator(latent_dim: int = 8) -> DFADGenerator:
    """The real DFAD generator at a width that runs in milliseconds."""
    return DFADGenerator(latent_dim=latent_dim, base_channels=4)


def tiny_dfad(teacher_path: str, **kwargs: Any) -> DataFreeAdversarialDistillation:
    """TinyNet teacher (weights from ``teacher_path``) -> TinyNet student, tiny DFAD generator."""
    kwargs.setdefault("generator", tiny_generator())
    return DataFreeAdversarialDistillation(TinyNet(), TinyNet(width=16), teacher_checkpoint=teacher_path, **kwargs)


def data_free(cifar_root: Path, **kwargs: Any) -> DataFreeDataModule:
    """Latent batches of 8 x 8 over the tiny CIFAR folder's test split."""
    defaults: dict[str, Any] = dict(batch_size=8, latent_dim=8, batches_per_epoch=6)
    defaults.update(kwargs)
    return DataFreeDataModule(tiny_cifar(cifar_root), **defaults)


def flat_weights(module: nn.Module) -> Tensor:
    """Every parameter of ``module``, flattened into one vector."""
    return torch.cat([parameter.detach().flatten() for parameter in module.parameters()])


def flat_state(module: nn.Module) -> Tensor:
    """Parameters and buffers (batch-norm statistics included) of ``module``, flattened into one vector."""
    return torch.cat([value.detach().flatten().double() for value in module.state_dict().values()])


class RecordPerRank(pl.Callback):
    """Writes, per rank, the latent batches seen and the final student and generator states (weights and buffers)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.latents: list[Tensor] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Tensor, batch_idx: int) -> None:
        self.latents.append(batch.clone())

    def on_fit_end(self, trainer: pl.Trainer, module: Any) -> None:  # after the module's on_train_end
        torch.save(
            {
                "latents": torch.stack(self.latents),
                "student": flat_state(module.student),
                "generator": flat_state(module.generator),
                "world_size": trainer.world_size,
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )
