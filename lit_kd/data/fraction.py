"""Seeded choice of a fraction of a training split: the limited-label setting (e.g. CIFAR-10 with 10% of the labels)."""

from __future__ import annotations

import torch
from torch import Tensor


def fraction_indices(targets: Tensor, fraction: float, seed: int, stratified: bool) -> Tensor:
    """Indices (sorted) of a seeded random ``fraction`` of a split, per class when ``stratified``.

    With ``stratified=True`` (classification) every class keeps ``max(1, round(fraction * n_c))`` of its ``n_c``
    samples, so the class proportions of the split are kept and no class disappears; with ``stratified=False``
    (regression) the split keeps ``max(1, round(fraction * n))`` samples drawn uniformly. Halves round up. The
    at-least-one rule and the rounding are our choice. The draw depends only on ``seed`` and the targets, and the
    indices come back in increasing order, so ``fraction=1`` keeps the split exactly as it was.

    Args:
        targets: the split's targets ``[N]`` (class indices when ``stratified``).
        fraction: the share to keep, in ``(0, 1]``.
        seed: seed of the draw.
        stratified: draw the same share from every class.

    Raises:
        ValueError: ``fraction`` is not in ``(0, 1]``.

    Example:
        >>> targets = torch.tensor([0] * 10 + [1] * 30)
        >>> kept = fraction_indices(targets, 0.1, seed=0, stratified=True)
        >>> targets[kept].bincount().tolist()
        [1, 3]
        >>> len(fraction_indices(targets, 0.25, seed=0, stratified=False))
        10
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    if not stratified:
        return _draw(torch.arange(len(targets)), fraction, generator)
    groups = [torch.nonzero(targets == value).flatten() for value in torch.unique(targets)]
    return torch.cat([_draw(group, fraction, generator) for group in groups]).sort().values


def _draw(indices: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    keep = max(1, int(fraction * len(indices) + 0.5))
    return indices[torch.randperm(len(indices), generator=generator)[:keep]].sort().values
