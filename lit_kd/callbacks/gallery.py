"""Logging pictures to every logger that takes images (TensorBoard, W&B), shared by the sample galleries."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor


def log_image(trainer: pl.Trainer, key: str, image: Image.Image, caption: str) -> int:
    """Log ``image`` to every logger of ``trainer`` that takes images; returns how many took it.

    Loggers with a ``log_image(key, images, step, caption=...)`` method (W&B) get it there; loggers whose
    ``experiment`` has ``add_image`` (TensorBoard) get it there, with the caption through ``add_text``. Others
    (CSV, ...) are skipped.
    """
    taken = 0
    for logger in trainer.loggers:
        if callable(getattr(logger, "log_image", None)):
            logger.log_image(key=key, images=[image], step=trainer.global_step, caption=[caption])
        elif callable(getattr(logger.experiment, "add_image", None)):
            logger.experiment.add_image(key, pil_to_tensor(image), global_step=trainer.global_step)
            if callable(getattr(logger.experiment, "add_text", None)):
                logger.experiment.add_text(key, caption, global_step=trainer.global_step)
        else:
            continue
        taken += 1
    return taken


def to_unit_range(images: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> Tensor:
    """Images in [0, 1] for display: undo ``mean``/``std`` normalisation, or min-max scale each image if they are None.

    Example:
        >>> import torch
        >>> to_unit_range(torch.tensor([[[[-1.0, 1.0]]]]), None, None).tolist()
        [[[[0.0, 1.0]]]]
    """
    images = images.detach().float().cpu()
    if mean is not None and std is not None:
        shape = (1, -1, 1, 1)
        return (images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)).clamp(0, 1)
    low = images.flatten(1).min(1).values.view(-1, 1, 1, 1)
    high = images.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (images - low) / (high - low).clamp_min(1e-12)
