"""DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022): relations, not values.

The student matches the teacher's predicted probabilities up to a linear transform: one minus the Pearson correlation
between the two, per sample across classes (inter-class relation) and per class across the batch (intra-class
relation). Official code: hunto/image_classification_sota (the ``classification`` submodule of hunto/DIST_KD, pinned at
d9662f7), ``lib/models/losses/dist_kd.py:4-34``. Defaults: ``beta = gamma = tau = 1`` (``dist_kd.py:22``), the
ImageNet setting (``kd: 'dist'``, ``lib/models/losses/kd_loss.py:29-30``, ``configs/strategies/distill/
resnet_dist.yaml:28-30``, KD weight 2). The CIFAR-100 setting is ``kd: dist_t4``: ``tau = 4``, KD weight 2, CE
weight 1 (``configs/strategies/distill/dist_cifar.yaml:34-36``, parsed at ``kd_loss.py:31-33``).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from lit_kd.losses.kd import standardize_logits

#: Added to the product of norms in the cosine similarity, as in ``dist_kd.py:4-5``.
_COSINE_EPSILON = 1e-8


class DISTTerms(NamedTuple):
    """The two unweighted parts of DIST, each already multiplied by ``tau^2`` (``dist_kd.py:31-32``)."""

    inter_class: Tensor
    """``1 - mean Pearson(student row, teacher row)``: the relation across classes of each sample."""
    intra_class: Tensor
    """``1 - mean Pearson(student column, teacher column)``: the relation across the batch of each class."""


def _one_minus_mean_pearson(student: Tensor, teacher: Tensor) -> Tensor:
    """``1 - mean_i pearson(student[i], teacher[i])`` over the rows of two ``[N, M]`` tensors."""
    student = student - student.mean(dim=1, keepdim=True)
    teacher = teacher - teacher.mean(dim=1, keepdim=True)
    cosine = (student * teacher).sum(dim=1) / (student.norm(dim=1) * teacher.norm(dim=1) + _COSINE_EPSILON)
    return 1 - cosine.mean()


def dist_terms(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, *, standardize: bool = False
) -> DISTTerms:
    """DIST's inter-class and intra-class terms on the probabilities ``softmax(logits / tau)``.

    Args:
        student_logits: ``[B, C]`` student logits.
        teacher_logits: ``[B, C]`` teacher logits.
        temperature: ``tau > 0`` (1 by default, ``dist_kd.py:22``; 4 on CIFAR-100, ``dist_cifar.yaml:36``).
        standardize: apply :func:`~lit_kd.losses.kd.standardize_logits` to both logits before dividing by ``tau``
            (ours: the logit-standardisation code of Sun et al. 2024 applies it to KD, DKD and MLKD, not to DIST; we
            apply it the same way, before the temperature). Off by default.

    Example:
        >>> import torch
        >>> teacher = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
        >>> terms = dist_terms(teacher, teacher)
        >>> abs(terms.inter_class.item()) < 1e-6 and abs(terms.intra_class.item()) < 1e-6
        True
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits {tuple(teacher_logits.shape)} must both "
            "be [B, C]"
        )
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    student_probs = (student_logits / temperature).softmax(dim=1)
    teacher_probs = (teacher_logits / temperature).softmax(dim=1)
    scale = temperature**2
    return DISTTerms(
        inter_class=scale * _one_minus_mean_pearson(student_probs, teacher_probs),
        intra_class=scale * _one_minus_mean_pearson(student_probs.t(), teacher_probs.t()),
    )


def dist_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
    *,
    standardize: bool = False,
) -> Tensor:
    """DIST's loss ``beta * inter_class + gamma * intra_class`` (``dist_kd.py:28-34``), without the KD weight.

    The official objective is ``1 * CE + 2 * dist_loss`` (``kd_loss.py:57``; weights from ``dist_cifar.yaml:34-35``
    and ``resnet_dist.yaml:29-30``). To log the two parts, call :func:`dist_terms` and weight them.

    Args:
        student_logits: ``[B, C]`` student logits.
        teacher_logits: ``[B, C]`` teacher logits.
        beta: weight of the inter-class term (1, ``dist_kd.py:22``).
        gamma: weight of the intra-class term (1, ``dist_kd.py:22``).
        temperature: ``tau`` (1, ``dist_kd.py:22``; pass 4 for the CIFAR-100 setting).
        standardize: standardise both logits first (ours for DIST, see :func:`dist_terms`); off by default.

    Example:
        >>> import torch
        >>> student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> round(dist_loss(student, -student).item(), 6)  # anti-correlated in both directions: 2 + 2
        4.0
    """
    terms = dist_terms(student_logits, teacher_logits, temperature, standardize=standardize)
    return beta * terms.inter_class + gamma * terms.intra_class
