"""Augmentation applied to whole batches on the training device.

Per-sample PIL transforms inside DataLoader workers are the usual bottleneck of CIFAR-sized training: here the
batch arrives as ``uint8`` on the device and is cropped, flipped and normalised with a handful of tensor ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(
    images: Tensor, padding: int, horizontal_flip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Randomly crop each image after zero padding and flip half of them horizontally.

    This is the standard CIFAR augmentation (``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``), drawn
    independently per image but computed for the whole batch at once.

    Args:
        images: ``[B, C, H, W]`` batch, any dtype (``uint8`` is cheapest).
        padding: zero padding added on every side before cropping back to ``H x W``; 0 disables the crop.
        horizontal_flip: flip each image left-right with probability 0.5.
        generator: random generator on ``images.device``; seeding it makes the augmentation reproducible.

    Returns:
        The augmented batch, same shape and dtype.

    Example:
        >>> batch = torch.arange(2 * 1 * 2 * 2, dtype=torch.uint8).reshape(2, 1, 2, 2)
        >>> random_crop_flip(batch, padding=0, horizontal_flip=False).equal(batch)
        True
    """
    if padding == 0 and not horizontal_flip:
        return images
    batch_size, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images
    # One gather per batch: the source pixel of every output pixel, with the flip folded into the column index.
    offset_y = torch.randint(0, 2 * padding + 1, (batch_size, 1, 1), device=device, generator=generator)
    offset_x = torch.randint(0, 2 * padding + 1, (batch_size, 1, 1), device=device, generator=generator)
    columns = torch.arange(width, device=device).expand(batch_size, 1, width)
    if horizontal_flip:
        flip = torch.rand(batch_size, 1, 1, device=device, generator=generator) < 0.5
        columns = torch.where(flip, width - 1 - columns, columns)
    rows = offset_y + torch.arange(height, device=device)[None, :, None]
    source = (rows * (width + 2 * padding) + offset_x + columns).view(batch_size, 1, height * width)
    gathered = padded.flatten(2).gather(2, source.expand(batch_size, channels, height * width))
    return gathered.view(batch_size, channels, height, width)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Convert a ``uint8`` batch to float32 in ``[0, 1]`` and standardise each channel.

    Example:
        >>> normalize(torch.full((1, 1, 1, 1), 255, dtype=torch.uint8), mean=[0.5], std=[0.5]).item()
        1.0
    """
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=images.device)[None, :, None, None]
    shift = torch.tensor([m / s for m, s in zip(mean, std, strict=True)], device=images.device)[None, :, None, None]
    return images.float().mul_(scale).sub_(shift)
