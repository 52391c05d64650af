"""A gallery of BSS boundary supporting samples for loggers that take images (TensorBoard, W&B)."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid

from lit_kd.callbacks.bss import BoundarySampleMining, BoundarySamples
from lit_kd.callbacks.gallery import log_image, to_unit_range


def render_boundary_samples(
    samples: BoundarySamples,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_samples: int = 8,
    min_size: int = 96,
) -> tuple[Image.Image, str]:
    """One picture of boundary samples: a column per sample, rows original / boundary sample / |perturbation|.

    Under each column, the teacher's class before the attack and after it. Returns the picture and a caption
    (per column: before -> after, the target class, the steps taken and the perturbation's L2 norm).

    Args:
        samples: mined samples (the first ``num_samples`` are shown).
        class_names: names of the classes (default: their indices).
        mean: per-channel mean of the data's normalisation, to show real colours (default: min-max scaling).
        std: per-channel std of the data's normalisation.
        num_samples: number of columns.
        min_size: images are enlarged (nearest neighbour) to at least this many pixels.
    """
    if len(samples) == 0:
        raise ValueError("render_boundary_samples: no samples to show")
    count = min(num_samples, len(samples))
    originals = to_unit_range(samples.originals[:count], mean, std)
    boundary = to_unit_range(samples.images[:count], mean, std)
    perturbation = to_unit_range((samples.images[:count] - samples.originals[:count]).abs(), None, None)
    rows = torch.cat([originals, boundary, perturbation])
    scale = max(1, -(-min_size // rows.shape[-1]))
    rows = F.interpolate(rows, scale_factor=scale, mode="nearest")
    grid = make_grid(rows, nrow=count, padding=2, pad_value=1.0)
    picture = to_pil_image(grid)
    label_height = 28
    canvas = Image.new("RGB", (picture.width, picture.height + label_height), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    name = (lambda c: class_names[c]) if class_names is not None else str
    before = samples.base_classes[:count].tolist()
    after = samples.teacher_logits[:count].argmax(dim=1).tolist()
    column_width = rows.shape[-1] + 2
    for column, (was, now) in enumerate(zip(before, after, strict=True)):
        draw.text((2 + column * column_width, picture.height + 1), f"{name(was)}\n> {name(now)}", fill="black")
    targets, steps = samples.target_classes[:count].tolist(), samples.steps[:count].tolist()
    norms = samples.perturbation_norms[:count].tolist()
    caption = "; ".join(
        f"{name(was)} -> {name(now)} (target {name(target)}, {step} steps, L2 {norm:.3f})"
        for was, now, target, step, norm in zip(before, after, targets, steps, norms, strict=True)
    )
    return canvas, "rows: original, boundary sample, |perturbation| (rescaled); columns: " + caption


class BoundarySampleGallery(pl.Callback):
    """Shows the boundary supporting samples of :class:`BoundarySampleMining` to loggers that take images.

    At the end of the first training epoch and every ``every_n_epochs`` epochs after it, if samples were mined in
    it, on the main process,
    logs :func:`render_boundary_samples` of the epoch's last mined batch as ``bss/boundary_samples`` (W&B
    ``log_image``, TensorBoard ``add_image``; other loggers are skipped). Class names and the normalisation come
    from the DataModule's ``classes``, ``mean`` and ``std`` when it has them. The attack's statistics are logged
    as metrics by :class:`BoundarySampleMining` itself.

    Args:
        every_n_epochs: log every this many epochs.
        num_samples: samples shown per picture.
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 8) -> None:
        if every_n_epochs < 1 or num_samples < 1:
            raise ValueError(
                f"BoundarySampleGallery: every_n_epochs and num_samples must be >= 1, got {every_n_epochs}, "
                f"{num_samples}"
            )
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.mining: BoundarySampleMining | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Find the mining callback whose samples are shown."""
        if stage == "fit":
            self.mining = BoundarySampleMining.find(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the gallery of the epoch's last mined samples."""
        samples = self.mining.latest if self.mining is not None else None
        if samples is None or not trainer.is_global_zero or trainer.current_epoch % self.every_n_epochs:
            return
        datamodule = getattr(trainer, "datamodule", None)
        picture, caption = render_boundary_samples(
            samples,
            class_names=getattr(datamodule, "classes", None),
            mean=getattr(datamodule, "mean", None),
            std=getattr(datamodule, "std", None),
            num_samples=self.num_samples,
        )
        log_image(trainer, "bss/boundary_samples", picture, caption)
