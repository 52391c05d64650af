"""Building blocks of the cGAN-KD tests (module level, so that ddp_spawn workers can import them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch import Tensor, nn

from lit_kd.data.synthetic import save_synthetic_set
from lit_kd.methods import ConditionalGAN
from lit_kd.models import ConditionalGenerator, ProjectionDiscriminator

#: Image size, task and number of classes of each recipe folder's dataset (for stage-3 recipes' synthetic sets).
RECIPE_DATASETS = {"cifar10": (32, "classification", 10), "tiny_imagenet": (64, "classification", 200)}
RECIPE_DATASETS["utkface"] = (64, "regression", 1)


def tiny_gan(num_classes: int | None = 10, image_size: int = 32, **kwargs: Any) -> ConditionalGAN:
    """A ConditionalGAN with very small networks."""
    sizes = dict(image_size=image_size, base_channels=4, embed_dim=32)
    return ConditionalGAN(
        ConditionalGenerator(num_classes, latent_dim=8, **sizes),
        ProjectionDiscriminator(num_classes, **sizes),
        **kwargs,
    )


def flat_weights(network: nn.Module) -> Tensor:
    """All parameters and buffers of ``network`` as one vector."""
    return torch.cat([value.detach().float().flatten() for value in network.state_dict().values()])


def flat_parameters(network: nn.Module) -> Tensor:
    """All parameters of ``network`` as one vector (a copy)."""
    return torch.cat([parameter.detach().flatten().clone() for parameter in network.parameters()])


class RecordGANWeights(pl.Callback):
    """Writes, per rank, the generator and discriminator weights and buffers at the end of fitting."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_fit_end(self, trainer: pl.Trainer, module: ConditionalGAN) -> None:  # after the module's on_train_end
        torch.save(
            {
                "generator": flat_weights(module.generator),
                "discriminator": flat_weights(module.discriminator),
                "world_size": trainer.world_size,
                "global_step": trainer.global_step,
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )


class SnapshotEveryStep(pl.Callback):
    """Keeps the generator and discriminator parameters before training and after every training step."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[Tensor, Tensor]] = []

    def _snapshot(self, module: ConditionalGAN) -> None:
        self.snapshots.append((flat_parameters(module.generator), flat_parameters(module.discriminator)))

    def on_train_start(self, trainer: pl.Trainer, module: ConditionalGAN) -> None:
        self._snapshot(module)

    def on_train_batch_end(self, trainer: pl.Trainer, module: ConditionalGAN, *args: Any) -> None:
        self._snapshot(module)

    def moved(self) -> list[tuple[bool, bool]]:
        """For each step: whether the generator, and whether the discriminator, changed."""
        pairs = zip(self.snapshots[:-1], self.snapshots[1:], strict=True)
        return [(not torch.equal(g0, g1), not torch.equal(d0, d1)) for (g0, d0), (g1, d1) in pairs]


class ImageCollector(Logger):
    """A logger that keeps what ``log_image`` receives (as the W&B logger's interface)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return "collector"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        self.images.append({"key": key, "images": images, "step": step, **kwargs})


class LabelPainter(nn.Module):
    """A stand-in generator: a flat image whose grey level encodes the label (plus a little noise)."""

    def __init__(self, num_classes: int | None, image_size: int = 32) -> None:
        super().__init__()
        self.num_classes, self.image_size, self.latent_dim = num_classes, image_size, 2
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, noise: Tensor, labels: Tensor) -> Tensor:
        level = labels.float() / (self.num_classes - 1) if self.num_classes else labels.float()
        flat = (level * 2 - 1).clamp(-1, 1) * self.scale + 0.001 * noise[:, 0]
        return flat.view(-1, 1, 1, 1).expand(-1, 3, self.image_size, self.image_size)


class GreyLevelTeacher(nn.Module):
    """A stand-in teacher reading the grey level in [0, 1] of images normalised with mean 0.5 and std 0.5.

    Classification: log-probabilities peaked (0.9 or more) at ``round(level * (K - 1))``, except that class
    ``confused`` is read as class ``confused - 1`` with probability 0.55 (0.05 for itself). Regression: the level,
    plus ``offset`` where it is above 0.6.
    """

    def __init__(self, num_classes: int, confused: int = -1, offset: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.confused, self.offset = num_classes, confused, offset
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, images: Tensor) -> Tensor:
        level = (images.mean(dim=(1, 2, 3)) + 1) / 2
        if self.num_classes == 1:
            return (level + self.offset * (level > 0.6)).view(-1, 1)
        predicted = (level * (self.num_classes - 1)).round().long()
        probabilities = torch.full((len(images), self.num_classes), 0.02)
        probabilities[torch.arange(len(images)), predicted] = 1 - 0.02 * (self.num_classes - 1)
        confused = predicted == self.confused
        probabilities[confused] = 0.4 / (self.num_classes - 2)
        probabilities[confused, self.confused] = 0.05
        probabilities[confused, self.confused - 1] = 0.55
        return probabilities.log()


def write_synthetic_set(directory: Path, dataset: str, count: int = 6) -> Path:
    """A tiny valid synthetic set for the dataset of a recipe folder (used by tests/test_recipes.py)."""
    size, task, num_classes = RECIPE_DATASETS[dataset]
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    if task == "classification":
        targets = torch.arange(count) % num_classes
    else:
        targets = torch.linspace(0.1, 0.9, count)
    provenance = {"task": task, "num_classes": num_classes, "note": "random images written by a test"}
    return save_synthetic_set(directory, images, targets, provenance)
