"""Logit-level distillation losses, and the logit standardisation (Sun et al., CVPR 2024) they can apply first."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

#: Added to the standard deviation by :func:`standardize_logits`: the official ``normalize`` (Sun et al., 2024,
#: sunshangquan/logit-standardization-KD ``mdistiller/distillers/KD.py:7-10``) divides by ``1e-7 + std``.
STANDARDIZE_EPSILON = 1e-7


def standardize_logits(logits: Tensor) -> Tensor:
    """Z-score of each row of logits over the class dimension: ``(z - mean(z)) / (1e-7 + std(z))``.

    Logit standardisation (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024) lets the student
    match the teacher's logit *relations* rather than their range and offset; the losses here apply it to both the
    student's and the teacher's logits before dividing by the temperature (``standardize=True``), as the official
    ``kd_loss`` and ``dkd_loss`` do (sunshangquan/logit-standardization-KD at f6e5aa5,
    ``mdistiller/distillers/KD.py:7-19``, ``mdistiller/distillers/DKD.py:7-14``).

    The standard deviation is the **sample** one (Bessel-corrected, divisor ``C - 1``): the official ``normalize``
    calls ``logit.std(dim=-1)``, whose default in PyTorch is unbiased. The population form (divisor ``C``) would give
    logits larger by ``sqrt(C / (C - 1))`` (0.5% for 100 classes), i.e. a slightly lower effective temperature.

    Args:
        logits: ``[..., C]`` logits, ``C >= 2``; standardised along the last dimension.

    Example:
        >>> import torch
        >>> standardize_logits(torch.tensor([[1.0, 2.0, 3.0]]))
        tensor([[-1.0000,  0.0000,  1.0000]])
    """
    if logits.shape[-1] < 2:
        raise ValueError(f"logits: standardisation needs at least 2 classes, got shape {tuple(logits.shape)}")
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True, correction=1)
    return (logits - mean) / (STANDARDIZE_EPSILON + std)


def soft_target_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0, *, standardize: bool = False
) -> Tensor:
    """Hinton et al. (2015) soft-target loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    The ``T^2`` factor keeps the gradient magnitude comparable to the cross-entropy term as ``T`` changes.

    Args:
        student_logits: ``[B, C]`` student logits.
        teacher_logits: ``[B, C]`` teacher logits (no gradient is needed through them).
        temperature: softening temperature ``T > 0``. With ``standardize=True`` this is the "base temperature" of Sun
            et al. (2024), 2 in their CIFAR-100 runs (``tools/train.py:103,114``, with KD weight 9 and CE weight 0.1:
            ``tools/train.py:104,113``, ``mdistiller/engine/cfg.py:64``).
        standardize: apply :func:`standardize_logits` to both logits first (off by default: Hinton KD unchanged).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[1.0, 2.0, 3.0]])
        >>> soft_target_kl(logits, logits).item()
        0.0
        >>> soft_target_kl(logits, 10 * logits, standardize=True).item()  # same z-scores: nothing to learn
        0.0
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def soft_cross_entropy(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, *, standardize: bool = False
) -> Tensor:
    """Cross-entropy of the student's softened distribution against the teacher's, averaged over the batch.

    ``-sum softmax(t/T) * log_softmax(s/T)``, without the ``T^2`` factor: the form BSS (Heo et al., 2019) uses.
    It differs from the KL form by the teacher's entropy, a constant for the student.

    Args:
        student_logits: ``[B, C]`` student logits.
        teacher_logits: ``[B, C]`` teacher logits.
        temperature: softening temperature ``T > 0``.
        standardize: apply :func:`standardize_logits` to both logits first, as :func:`soft_target_kl` does (ours for
            this loss: Sun et al., 2024 standardise KD, DKD and MLKD, not BSS). Off by default.

    Example:
        >>> import torch, math
        >>> round(soft_cross_entropy(torch.zeros(1, 4), torch.zeros(1, 4)).item(), 6) == round(math.log(4), 6)
        True
        >>> logits = torch.tensor([[1.0, 2.0, 3.0]])
        >>> bool(torch.isclose(soft_cross_entropy(logits, logits, standardize=True),
        ...                    soft_cross_entropy(10 * logits, 10 * logits, standardize=True)))
        True
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)
    return -(teacher_probs * F.log_softmax(student_logits / temperature, dim=-1)).sum(dim=-1).mean()
