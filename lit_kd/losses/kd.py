"""Logit-level distillation losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton et al. (2015) soft-target loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    The ``T^2`` factor keeps the gradient magnitude comparable to the cross-entropy term as ``T`` changes.

    Args:
        student_logits: ``[B, C]`` student logits.
        teacher_logits: ``[B, C]`` teacher logits (no gradient is needed through them).
        temperature: softening temperature ``T > 0``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[1.0, 2.0, 3.0]])
        >>> soft_target_kl(logits, logits).item()
        0.0
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Cross-entropy of the student's softened distribution against the teacher's, averaged over the batch.

    ``-sum softmax(t/T) * log_softmax(s/T)``, without the ``T^2`` factor: the form BSS (Heo et al., 2019) uses.
    It differs from the KL form by the teacher's entropy, a constant for the student.

    Example:
        >>> import torch, math
        >>> round(soft_cross_entropy(torch.zeros(1, 4), torch.zeros(1, 4)).item(), 6) == round(math.log(4), 6)
        True
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)
    return -(teacher_probs * F.log_softmax(student_logits / temperature, dim=-1)).sum(dim=-1).mean()
