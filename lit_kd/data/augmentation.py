"""Augmentation applied to whole batches on the training device.

Per-sample PIL transforms inside DataLoader workers are the usual bottleneck of CIFAR-sized training: here the
batch arrives as ``uint8`` on the device and is cropped, flipped and normalised with a handful of tensor ops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


class CropFlip:
    """The standard CIFAR augmentation as a finite set of views: a crop offset after zero padding, and a flip.

    ``RandomCrop(H, padding)`` + ``RandomHorizontalFlip()`` can produce exactly :attr:`num_views` different images
    from one image: ``(2 * padding + 1) ** 2`` crop offsets times 2 flips (162 for CIFAR's padding 4). Each is
    numbered by a view id, ``(offset_y * (2 * padding + 1) + offset_x) * 2 + flipped``, so that anything computed
    from an augmented image (a frozen teacher's logits: :class:`~lit_kd.runtime.TeacherMemo`) can be keyed by
    (sample, view). :meth:`draw` draws the views of a batch, :meth:`apply` makes them.

    An augmentation of your own with finitely many views can be memoised the same way: give it ``num_views``,
    ``draw(batch_size, generator, device)``, ``apply(images, views)`` and :attr:`identity`.

    Args:
        padding: zero padding added on every side before cropping back to ``H x W``; 0 disables the crop.
        horizontal_flip: flip each image left-right with probability 0.5.

    Example:
        >>> CropFlip(4, True).num_views
        162
        >>> batch = torch.arange(2 * 1 * 3 * 3, dtype=torch.uint8).reshape(2, 1, 3, 3)
        >>> CropFlip(1, True).apply(batch, torch.tensor([8, 9]))[0].equal(batch[0])  # view 8: no shift, no flip
        True
    """

    def __init__(self, padding: int, horizontal_flip: bool) -> None:
        if padding < 0:
            raise ValueError(f"crop padding must be >= 0, got {padding}")
        self.padding, self.horizontal_flip = padding, horizontal_flip

    @property
    def num_views(self) -> int:
        """How many different images the augmentation makes of one image."""
        return (2 * self.padding + 1) ** 2 * (2 if self.horizontal_flip else 1)

    @property
    def identity(self) -> dict[str, object]:
        """What decides the views: stored with anything keyed by view id, and compared when it is read back."""
        return {"augmentation": "crop_flip", "padding": self.padding, "horizontal_flip": self.horizontal_flip}

    @property
    def identity_view(self) -> int:
        """The view id of the image itself: the centred crop, not flipped."""
        return (self.padding * (2 * self.padding + 1) + self.padding) * 2

    def draw(self, batch_size: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """The view ids ``[B]`` of one batch: offsets drawn uniformly, flips with probability 0.5 (int64)."""
        span = 2 * self.padding + 1
        offset_y = torch.randint(0, span, (batch_size,), device=device, generator=generator)
        offset_x = torch.randint(0, span, (batch_size,), device=device, generator=generator)
        views = (offset_y * span + offset_x) * 2
        if self.horizontal_flip:
            views += torch.rand(batch_size, device=device, generator=generator) < 0.5
        return views

    def apply(self, images: Tensor, views: Tensor) -> Tensor:
        """``images`` ``[B, C, H, W]`` (any dtype) each cropped and flipped as its view id in ``views`` says."""
        if self.padding == 0 and not self.horizontal_flip:
            return images
        batch_size, channels, height, width = images.shape
        padding, span, device = self.padding, 2 * self.padding + 1, images.device
        padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images
        # One gather per batch: the source pixel of every output pixel, with the flip folded into the column index.
        offsets = (views // 2).view(batch_size, 1, 1)
        offset_y, offset_x = offsets // span, offsets % span
        columns = torch.arange(width, device=device).expand(batch_size, 1, width)
        flip = (views % 2 == 1).view(batch_size, 1, 1)
        columns = torch.where(flip, width - 1 - columns, columns)
        rows = offset_y + torch.arange(height, device=device)[None, :, None]
        source = (rows * (width + 2 * padding) + offset_x + columns).view(batch_size, 1, height * width)
        gathered = padded.flatten(2).gather(2, source.expand(batch_size, channels, height * width))
        return gathered.view(batch_size, channels, height, width)


def random_crop_flip(
    images: Tensor, padding: int, horizontal_flip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Randomly crop each image after zero padding and flip half of them horizontally (:class:`CropFlip`).

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
    augmentation = CropFlip(padding, horizontal_flip)
    return augmentation.apply(images, augmentation.draw(len(images), generator, images.device))


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Convert a ``uint8`` batch to float32 in ``[0, 1]`` and standardise each channel.

    Example:
        >>> normalize(torch.full((1, 1, 1, 1), 255, dtype=torch.uint8), mean=[0.5], std=[0.5]).item()
        1.0
    """
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=images.device)[None, :, None, None]
    shift = torch.tensor([m / s for m, s in zip(mean, std, strict=True)], device=images.device)[None, :, None, None]
    return images.float().mul_(scale).sub_(shift)
