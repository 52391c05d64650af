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
    batch_size, channels, height, width = images.shape
    device = images.device
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        offset_y = torch.randint(0, 2 * padding + 1, (batch_size, 1), device=device, generator=generator)
        offset_x = torch.randint(0, 2 * padding + 1, (batch_size, 1), device=device, generator=generator)
        rows = offset_y + torch.arange(height, device=device)  # [B, H]
        cols = offset_x + torch.arange(width, device=device)  # [B, W]
        images = padded[
            torch.arange(batch_size, device=device)[:, None, None, None],
            torch.arange(channels, device=device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    if horizontal_flip:
        flip = torch.rand(batch_size, device=device, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Convert a ``uint8`` batch to float32 in ``[0, 1]`` and standardise each channel.

    Example:
        >>> normalize(torch.full((1, 1, 1, 1), 255, dtype=torch.uint8), mean=[0.5], std=[0.5]).item()
        1.0
    """
    mean_tensor = torch.tensor(mean, device=images.device, dtype=torch.float32)[None, :, None, None]
    std_tensor = torch.tensor(std, device=images.device, dtype=torch.float32)[None, :, None, None]
    return (images.float().div_(255.0) - mean_tensor) / std_tensor
