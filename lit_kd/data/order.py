"""Seeded, stratified orders of a split: every prefix is a fair sample, and held-out splits keep class balance.

Evaluation loops are often cut short (``limit_val_batches``, ``val_check_interval`` with a partial epoch, a quick look
in a notebook), and image folders list their files class by class: in that order the first thousand CIFAR-10 test
images are all airplanes. lit-kd therefore stores every split in a :func:`stratified_order`, in which each prefix
holds every class (or, for regression, every decile of the targets) in about its share of the whole split; taking a
prefix is also how validation sets and subsets are drawn, so they keep the class balance too.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor


def strata(targets: Tensor, bins: int = 10) -> Tensor:
    """The groups an order is stratified by: the classes, or for float (regression) targets their ``bins`` quantiles.

    Example:
        >>> strata(torch.tensor([2, 0, 1])).tolist()
        [2, 0, 1]
        >>> strata(torch.tensor([0.1, 0.9, 0.5, 0.3]), bins=2).tolist()
        [0, 1, 1, 0]
    """
    if not targets.is_floating_point():
        return targets
    edges = torch.quantile(targets.float(), torch.linspace(0, 1, bins + 1)[1:-1])
    return torch.bucketize(targets.float(), edges, right=True)


def stratified_order(groups: Tensor, seed: int) -> Tensor:
    """A seeded permutation of ``range(len(groups))`` in which every prefix holds each group in proportion.

    Each group is shuffled, and its ``k``-th member of ``n`` gets the key ``(k + u) / n`` with ``u`` uniform in
    ``[0, 1)``; sorting by key interleaves the groups at their rates. With groups of equal size every prefix holds
    each group within one sample of its share (all ``k``-th members come before any ``(k + 1)``-th); with unequal
    sizes, about in proportion. The order depends on the seed and the groups only, not on how the split was listed.

    Example:
        >>> order = stratified_order(torch.tensor([0] * 5 + [1] * 5), seed=0)
        >>> [int(torch.tensor([0] * 5 + [1] * 5)[order[:k]].sum()) for k in (2, 4, 6)]  # group 1 in every prefix
        [1, 2, 3]
    """
    generator = torch.Generator().manual_seed(seed)
    keys = torch.empty(len(groups), dtype=torch.float64)
    for value in torch.unique(groups):
        members = torch.nonzero(groups == value).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        offsets = torch.rand(len(members), generator=generator, dtype=torch.float64)
        keys[members] = (torch.arange(len(members), dtype=torch.float64) + offsets) / len(members)
    return torch.argsort(keys, stable=True)


def run_seed(default: int = 0) -> int:
    """The run's seed: the one ``seed_everything`` (``lit-kd``'s ``seed_everything:``) set, else ``default``.

    Lightning's ``seed_everything`` records it in ``PL_GLOBAL_SEED``, which DDP processes inherit.
    """
    return int(os.environ.get("PL_GLOBAL_SEED", default))
