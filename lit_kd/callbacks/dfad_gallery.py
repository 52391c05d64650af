"""What DFAD's generator makes: a grid of generated images and the teacher's class histogram over them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from lit_kd.callbacks.gallery import log_image, to_unit_range
from lit_kd.models.probe import evaluation_mode


def class_fractions(predicted: Tensor, num_classes: int) -> Tensor:
    """Fraction of samples predicted as each class, shape ``[num_classes]``.

    Example:
        >>> import torch
        >>> class_fractions(torch.tensor([0, 0, 2, 0]), 3).tolist()
        [0.75, 0.0, 0.25]
    """
    return torch.bincount(predicted.flatten().cpu(), minlength=num_classes).float() / max(predicted.numel(), 1)


def normalized_entropy(fractions: Tensor) -> float:
    """Entropy of a class histogram divided by ``log(num_classes)``: 1 for uniform, 0 when one class takes all.

    Example:
        >>> import torch
        >>> normalized_entropy(torch.tensor([0.5, 0.5, 0.0, 0.0]))  # log 2 / log 4
        0.5
    """
    if len(fractions) < 2:
        return 0.0
    positive = fractions[fractions > 0]
    return float((positive * positive.reciprocal().log()).sum() / math.log(len(fractions)))


def render_class_histogram(
    fractions: Tensor, class_names: Sequence[str] | None = None, height: int = 120, min_width: int = 320
) -> Image.Image:
    """A bar chart of ``fractions`` (one bar per class, tallest bar = full height), class names under the bars.

    Example:
        >>> import torch
        >>> render_class_histogram(torch.tensor([0.75, 0.0, 0.25])).size
        (322, 136)
    """
    count = len(fractions)
    bar = max(2, -(-min_width // count))
    label_height = 16 if class_names is not None and count <= 20 else 0
    canvas = Image.new("RGB", (bar * count + 1, height + 16 + label_height), "white")
    draw = ImageDraw.Draw(canvas)
    top = float(fractions.max()) or 1.0
    for index, fraction in enumerate(fractions.tolist()):
        bar_height = round(height * fraction / top)
        if bar_height > 0:
            draw.rectangle(
                [index * bar, height + 16 - bar_height, (index + 1) * bar - 1, height + 15], fill="steelblue"
            )
        if label_height and class_names is not None:
            draw.text((index * bar + 1, height + 17), str(class_names[index])[: max(1, bar // 6)], fill="black")
    draw.text((2, 2), f"max {top:.2f}", fill="black")
    return canvas


class DFADGallery(pl.Callback):
    """Shows what :class:`~lit_kd.methods.DataFreeAdversarialDistillation`'s generator makes, and whether it collapsed.

    After every ``every_n_epochs``-th training epoch (the ``n``-th, ``2n``-th, ...), runs the generator (eval mode,
    no gradient, under the trainer's precision context) on ``num_samples`` latent vectors drawn from a fixed seed
    (the same vectors every time, so successive grids show the same latents evolving), and the teacher on the
    images. It logs to every logger:

    * ``dfad/teacher_class_entropy``: entropy of the teacher's predicted-class histogram over the samples divided by
      ``log(num_classes)`` (1: classes used evenly; near 0: mode collapse, the generator makes one class);
    * ``dfad/teacher_class_fraction/<class>`` for each class when there are at most ``max_class_scalars`` classes;

    and on the main process, to loggers that take images (TensorBoard, W&B; see :func:`log_image`),
    ``dfad/generated_images`` (the first ``num_images``, de-normalised with the data's ``mean``/``std``) and
    ``dfad/teacher_class_histogram``. Drawing from a private generator leaves the training's random stream alone.

    Args:
        every_n_epochs: log every this many epochs.
        num_images: images in the grid (8 per row).
        num_samples: latent vectors scored by the teacher for the histogram.
        max_class_scalars: log per-class fractions only up to this many classes (200 scalars an epoch swamp a CSV).
        seed: seed of the latent vectors.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_images: int = 32,
        num_samples: int = 256,
        max_class_scalars: int = 20,
        seed: int = 0,
    ) -> None:
        if min(every_n_epochs, num_images, num_samples) < 1:
            raise ValueError(
                f"DFADGallery: every_n_epochs, num_images and num_samples must be >= 1, got {every_n_epochs}, "
                f"{num_images}, {num_samples}"
            )
        self.every_n_epochs, self.num_images, self.num_samples = every_n_epochs, num_images, num_samples
        self.max_class_scalars, self.seed = max_class_scalars, seed

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check that the module has a generator and a teacher to show."""
        if not all(hasattr(pl_module, name) for name in ("generator", "teacher")):
            raise ValueError(
                f"DFADGallery needs a method with a generator and a teacher (DataFreeAdversarialDistillation), got "
                f"{type(pl_module).__name__}"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Generate, score with the teacher, log the statistics and (main process) the pictures."""
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        generator, teacher = pl_module.generator, pl_module.teacher
        datamodule = getattr(trainer, "datamodule", None)
        latent_dim = getattr(datamodule, "latent_dim", None) or getattr(generator, "latent_dim", None)
        if latent_dim is None:
            raise ValueError("DFADGallery: neither the DataModule nor the generator has a latent_dim")
        latent = torch.randn(self.num_samples, latent_dim, generator=torch.Generator().manual_seed(self.seed))
        with torch.no_grad(), evaluation_mode(generator), trainer.precision_plugin.forward_context():
            images = generator(latent.to(pl_module.device))
            predicted = teacher(images).argmax(dim=1)
        fractions = class_fractions(predicted, pl_module.num_classes)
        entropy = normalized_entropy(fractions)
        pl_module.log("dfad/teacher_class_entropy", entropy, sync_dist=True)  # the same on every rank
        names = getattr(datamodule, "classes", None) or [str(index) for index in range(len(fractions))]
        if len(fractions) <= self.max_class_scalars:
            for name, fraction in zip(names, fractions.tolist(), strict=True):
                pl_module.log(f"dfad/teacher_class_fraction/{name}", fraction, sync_dist=True)
        if not trainer.is_global_zero:
            return
        shown = to_unit_range(
            images[: self.num_images], getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
        )
        shown = F.interpolate(shown, scale_factor=max(1, -(-64 // shown.shape[-1])), mode="nearest")
        grid = to_pil_image(make_grid(shown, nrow=8, padding=2, pad_value=1.0))
        labels = ", ".join(names[index] for index in predicted[: self.num_images].tolist())
        log_image(trainer, "dfad/generated_images", grid, f"teacher's classes, row by row: {labels}")
        top = fractions.argsort(descending=True)[:5].tolist()
        summary = ", ".join(f"{names[index]} {fractions[index]:.2f}" for index in top)
        caption = f"teacher's classes over {self.num_samples} generated images; entropy {entropy:.2f}; top: {summary}"
        log_image(trainer, "dfad/teacher_class_histogram", render_class_histogram(fractions, names), caption)
