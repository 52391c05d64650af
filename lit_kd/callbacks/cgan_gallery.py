"""A gallery of conditional-GAN samples (one row per label) for loggers that take images (TensorBoard, W&B)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from lit_kd.callbacks.gallery import log_image, to_unit_range
from lit_kd.models.probe import evaluation_mode


class GeneratorGallery(pl.Callback):
    """Logs a grid of :class:`~lit_kd.methods.ConditionalGAN` samples (a row per label, fixed noise) to image loggers.

    Every ``every_n_epochs`` training epochs, on the main process, as ``cgan/samples`` (W&B ``log_image``,
    TensorBoard ``add_image``; others are skipped), with the row labels in the caption. Rows are the first
    ``num_labels`` classes, or for continuous labels evenly spaced labels between the 5% and 95% quantiles of the
    training labels (as CcGAN's training-time sample grids). The noise comes from a private seeded generator, so the
    gallery neither changes training's random draws nor varies from one epoch to the next. The defaults are ours.

    Args:
        every_n_epochs: log every this many epochs.
        num_labels: rows of the grid.
        samples_per_label: columns of the grid.
        seed: seed of the fixed noise.
    """

    def __init__(
        self, every_n_epochs: int = 1, num_labels: int = 10, samples_per_label: int = 8, seed: int = 0
    ) -> None:
        if min(every_n_epochs, num_labels, samples_per_label) < 1:
            raise ValueError("GeneratorGallery: every_n_epochs, num_labels and samples_per_label must be >= 1")
        self.every_n_epochs, self.num_labels = every_n_epochs, num_labels
        self.samples_per_label, self.seed = samples_per_label, seed

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Refuse a module without a conditional generator."""
        if not hasattr(pl_module, "generator") or not hasattr(pl_module, "continuous"):
            raise ValueError(f"GeneratorGallery needs a lit_kd.methods.ConditionalGAN, got {type(pl_module).__name__}")

    def row_labels(self, module: Any, datamodule: Any) -> Tensor:
        """The label of each row."""
        if not module.continuous:
            return torch.arange(min(self.num_labels, module.generator.num_classes))
        targets = datamodule.train_set.targets.float()
        low, high = torch.quantile(targets, 0.05).item(), torch.quantile(targets, 0.95).item()
        return torch.linspace(low, high, self.num_labels)

    @torch.no_grad()
    def render(self, trainer: pl.Trainer, module: Any) -> tuple[Any, str]:
        """The grid as a PIL image and its caption."""
        datamodule = trainer.datamodule
        labels = self.row_labels(module, datamodule)
        generator = module.generator
        noise = torch.randn(
            self.samples_per_label, generator.latent_dim, generator=torch.Generator().manual_seed(self.seed)
        )
        noise, labels = noise.repeat(len(labels), 1), labels.repeat_interleave(self.samples_per_label)
        device = next(generator.parameters()).device
        with evaluation_mode(generator), trainer.precision_plugin.forward_context():
            images = generator(noise.to(device), labels.to(device))
        grid = make_grid(to_unit_range(images, (0.5,) * 3, (0.5,) * 3), nrow=self.samples_per_label, pad_value=1.0)
        rows = labels[:: self.samples_per_label]
        if module.continuous:
            names = [f"{value * getattr(datamodule, 'target_scale', 1.0):.3g}" for value in rows.tolist()]
        else:
            classes = getattr(datamodule, "classes", None)
            names = [classes[c] if classes is not None else str(c) for c in rows.tolist()]
        return to_pil_image(grid), f"rows (labels): {', '.join(names)}; step {trainer.global_step}"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the grid."""
        if trainer.is_global_zero and trainer.current_epoch % self.every_n_epochs == 0:
            picture, caption = self.render(trainer, pl_module)
            log_image(trainer, "cgan/samples", picture, caption)
