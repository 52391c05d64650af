"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017): match normalised spatial attention maps."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def attention_map(feature_map: Tensor, p: float = 2.0) -> Tensor:
    """Activation-based spatial attention: ``mean_c |F_c|^p`` per position, flattened and L2-normalised per sample.

    Zagoruyko & Komodakis (2017), Sec. 3.1 (``F^p_mean``) and Eq. 2's ``Q / ||Q||_2``; official code
    ``at(x) = F.normalize(x.pow(2).mean(1).view(x.size(0), -1))`` (szagoruyko/attention-transfer).

    Args:
        feature_map: ``[B, C, H, W]`` activations.
        p: exponent; the paper uses 2.

    Returns:
        ``[B, H * W]`` attention vectors of unit L2 norm.

    Example:
        >>> import torch
        >>> attention_map(torch.tensor([[[[3.0, 4.0]]]]), p=1).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    if feature_map.dim() != 4:
        raise ValueError(f"feature_map must be [B, C, H, W], got shape {tuple(feature_map.shape)}")
    return F.normalize(feature_map.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def attention_transfer_loss(student_map: Tensor, teacher_map: Tensor, p: float = 2.0) -> Tensor:
    """Squared distance between the student's and the teacher's attention maps, averaged over batch and positions.

    This is the official code's ``at_loss`` (``(at(x) - at(y)).pow(2).mean()``, also RepDistiller's
    ``Attention``): the paper's ``|| Q_s/||Q_s|| - Q_t/||Q_t|| ||_2`` term, squared, with its ``beta`` "divided by
    the number of elements in attention map and batch size" (Zagoruyko & Komodakis, 2017, Sec. 4.1) folded in as
    the mean. When the maps differ in size, the larger one is average-pooled to the smaller one (RepDistiller).
    The channel counts may differ: attention maps have none.

    Example:
        >>> import torch
        >>> attention_transfer_loss(torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[0.0, 1.0]]]])).item()
        1.0
    """
    student_size, teacher_size = student_map.shape[-2:], teacher_map.shape[-2:]
    if student_size[0] > teacher_size[0]:
        student_map = F.adaptive_avg_pool2d(student_map, teacher_size)
    elif teacher_size[0] > student_size[0]:
        teacher_map = F.adaptive_avg_pool2d(teacher_map, student_size)
    return (attention_map(student_map, p) - attention_map(teacher_map, p)).pow(2).mean()
