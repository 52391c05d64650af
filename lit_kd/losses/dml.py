"""Mutual (peer-to-peer) soft-target loss of online distillation: DML (Zhang et al., 2018) and AFD's logit term."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor

from lit_kd.losses.kd import soft_target_kl


def mutual_kl(
    logits: Sequence[Tensor],
    pairs: Sequence[tuple[int, int]],
    temperature: float = 1.0,
    reduction: Literal["mean", "sum"] = "mean",
) -> list[Tensor]:
    """Each network's ``T^2 * KL(softmax(mentor / T) || softmax(self / T))``, averaged (or summed) over its mentors.

    Deep mutual learning (Zhang et al., CVPR 2018, eq. 3-4): peer ``i`` minimises the KL divergence from every other
    peer's predicted distribution to its own, averaged over the peers; the mentors' logits are detached, so the term
    of peer ``i`` trains peer ``i`` only. ``pairs`` lists ``(student, mentor)`` index pairs (all ordered pairs for
    DML, the ring ``(i, i - 1)`` for AFD's cyclic scheme); a network that is no pair's student gets a zero term.

    Args:
        logits: ``[B, C]`` logits of each network.
        pairs: ``(student, mentor)`` pairs, indices into ``logits``.
        temperature: softening temperature; DML uses 1 (plain KL), the ``T^2`` factor is then 1.
        reduction: ``"mean"`` over a network's mentors (the paper's ``1 / (K - 1)``) or ``"sum"`` (the official
            TensorFlow code, ``train_models.py:90-95``); equal for two networks.

    Returns:
        One scalar per network.

    Example:
        >>> import torch
        >>> a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> terms = mutual_kl([a, b], [(0, 1), (1, 0)])
        >>> round(terms[0].item(), 4) == round(terms[1].item(), 4) == 0.4621
        True
    """
    for student, mentor in pairs:
        if student == mentor or not (0 <= student < len(logits) and 0 <= mentor < len(logits)):
            raise ValueError(f"pairs: ({student}, {mentor}) must be two different indices in [0, {len(logits)})")
    sums = [logits[0].new_zeros(()) for _ in logits]
    counts = [0] * len(logits)
    for student, mentor in pairs:
        sums[student] = sums[student] + soft_target_kl(logits[student], logits[mentor].detach(), temperature)
        counts[student] += 1
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if reduction == "sum":
        return sums
    return [total / count if count else total for total, count in zip(sums, counts, strict=True)]


def all_pairs(num_networks: int) -> list[tuple[int, int]]:
    """Every ordered ``(student, mentor)`` pair of distinct networks: DML's peer graph.

    Example:
        >>> all_pairs(3)
        [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    """
    return [(i, j) for i in range(num_networks) for j in range(num_networks) if i != j]


def ring_pairs(num_networks: int) -> list[tuple[int, int]]:
    """AFD's cyclic scheme (Chung et al., 2020): network ``i`` learns from network ``i - 1 (mod n)``.

    Example:
        >>> ring_pairs(3)
        [(0, 2), (1, 0), (2, 1)]
    """
    return [(i, (i - 1) % num_networks) for i in range(num_networks)]


__all__ = ["all_pairs", "mutual_kl", "ring_pairs"]
