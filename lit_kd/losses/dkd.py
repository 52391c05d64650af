"""Decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022).

The KD loss splits into a target-class term (TCKD: KL between the binary distributions "target class / any other
class") and a non-target-class term (NCKD: KL between the distributions over the non-target classes alone); DKD
weights them independently, ``alpha * TCKD + beta * NCKD``. Defaults are those of the official code,
megvii-research/mdistiller at a08d46f (``mdistiller/engine/cfg.py:162-167``): CE weight 1.0, ``alpha`` 1.0, ``beta``
8.0, ``T`` 4.0, warm-up 20 epochs. Its CIFAR-100 configs override ``beta`` per pair
(``configs/cifar100/dkd/<pair>.yaml:18-19``): 2.0 for ``res56_res20`` and ``res110_res32``; 6.0 for ``vgg13_vgg8``,
``vgg13_mv2``, ``wrn40_2_wrn_16_2`` and ``wrn40_2_wrn_40_1``; the remaining pairs (``res32x4_res8x4``,
``res32x4_shuv1``, ``res32x4_shuv2``, ``res50_mv2``, ``wrn40_2_shuv1``) keep 8.0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_kd.losses.kd import standardize_logits


class DecoupledKDTerms(NamedTuple):
    """The two unweighted parts of DKD, each ``T^2 * KL`` averaged over the batch (log both, weight them yourself)."""

    target_class: Tensor
    """TCKD: KL between the teacher's and the student's binary ``[p_target, 1 - p_target]`` distributions."""
    non_target_class: Tensor
    """NCKD: KL between the teacher's and the student's distributions over the non-target classes."""


def decoupled_kd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    temperature: float = 4.0,
    *,
    standardize: bool = False,
) -> DecoupledKDTerms:
    """TCKD and NCKD of Zhao et al. (2022), Eq. 6-7, as the official ``dkd_loss`` computes them before weighting.

    Both are ``T^2 * sum KL / B`` (``mdistiller/distillers/DKD.py:16-31``). The official code takes the log of the
    summed probabilities for TCKD and masks the target class by subtracting 1000 from its (tempered) logit for NCKD;
    here both are computed in log space and NCKD's softmax runs over the ``C - 1`` non-target classes only, which is
    the same value to float precision and stays finite when a probability underflows.

    Args:
        student_logits: ``[B, C]`` student logits.
        teacher_logits: ``[B, C]`` teacher logits.
        targets: ``[B]`` integer class labels.
        temperature: softening temperature ``T > 0`` (official default 4.0, ``mdistiller/engine/cfg.py:166``; 2 with
            ``standardize=True`` in Sun et al. 2024, ``tools/train.py:103,118``).
        standardize: apply :func:`~lit_kd.losses.kd.standardize_logits` to both logits first, as the logit
            standardisation code does (sunshangquan/logit-standardization-KD ``mdistiller/distillers/DKD.py:12-14``).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 1.0, 0.0]])
        >>> terms = decoupled_kd_terms(logits, logits, torch.tensor([0]))
        >>> terms.target_class.item(), terms.non_target_class.item()
        (0.0, 0.0)
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape or student_logits.shape[1] < 2:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits {tuple(teacher_logits.shape)} must both "
            "be [B, C] with C >= 2"
        )
    targets = targets.reshape(-1)
    if targets.shape[0] != student_logits.shape[0]:
        raise ValueError(f"targets: {targets.shape[0]} labels for a batch of {student_logits.shape[0]}")
    if standardize:
        student_logits, teacher_logits = standardize_logits(student_logits), standardize_logits(teacher_logits)
    batch_size, num_classes = student_logits.shape
    is_target = F.one_hot(targets, num_classes).bool()
    tckd = _binary_kl(student_logits / temperature, teacher_logits / temperature, is_target)
    # NCKD: the non-target logits, in their original order, as a [B, C - 1] tensor.
    student_others = student_logits[~is_target].view(batch_size, num_classes - 1) / temperature
    teacher_others = teacher_logits[~is_target].view(batch_size, num_classes - 1) / temperature
    nckd = F.kl_div(
        F.log_softmax(student_others, dim=1), F.log_softmax(teacher_others, dim=1), reduction="sum", log_target=True
    )
    scale = temperature**2 / batch_size
    return DecoupledKDTerms(target_class=tckd * scale, non_target_class=nckd * scale)


def _binary_kl(student_scaled: Tensor, teacher_scaled: Tensor, is_target: Tensor) -> Tensor:
    """Summed ``KL(b_teacher || b_student)`` of the binary (target, rest) distributions of tempered logits."""

    def binary_log_probs(scaled_logits: Tensor) -> Tensor:
        log_probs = F.log_softmax(scaled_logits, dim=1)
        target = log_probs.masked_fill(~is_target, float("-inf")).logsumexp(dim=1)
        rest = log_probs.masked_fill(is_target, float("-inf")).logsumexp(dim=1)
        return torch.stack([target, rest], dim=1)

    return F.kl_div(
        binary_log_probs(student_scaled), binary_log_probs(teacher_scaled), reduction="sum", log_target=True
    )


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    *,
    standardize: bool = False,
) -> Tensor:
    """DKD's distillation term ``alpha * TCKD + beta * NCKD`` (without the cross-entropy and the warm-up factor).

    The official training objective is ``1.0 * CE + dkd_warmup_factor(epoch) * dkd_loss(...)``
    (``mdistiller/distillers/DKD.py:71-79``). To log the two parts, call :func:`decoupled_kd_terms` and weight them.

    Args:
        student_logits: ``[B, C]`` student logits.
        teacher_logits: ``[B, C]`` teacher logits.
        targets: ``[B]`` integer class labels.
        alpha: TCKD weight (1.0, ``mdistiller/engine/cfg.py:164``; times 9 with logit standardisation,
            ``tools/train.py:116``).
        beta: NCKD weight (8.0, ``mdistiller/engine/cfg.py:165``; 2.0 or 6.0 for some CIFAR-100 pairs, see the module
            docstring; times 9 with logit standardisation, ``tools/train.py:117``).
        temperature: softening temperature ``T > 0`` (4.0, ``mdistiller/engine/cfg.py:166``).
        standardize: standardise both logits first (Sun et al., 2024); off by default.

    Example:
        >>> import torch
        >>> student, teacher = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[2.0, 0.0, 0.0]])
        >>> targets = torch.tensor([1])
        >>> terms = decoupled_kd_terms(student, teacher, targets, temperature=1.0)
        >>> round(terms.non_target_class.item(), 4)  # teacher (e^2, 1) / (e^2 + 1) on classes 0 and 2, student uniform
        0.3278
        >>> loss = dkd_loss(student, teacher, targets, alpha=1.0, beta=8.0, temperature=1.0)
        >>> torch.allclose(loss, terms.target_class + 8.0 * terms.non_target_class)
        True
    """
    terms = decoupled_kd_terms(student_logits, teacher_logits, targets, temperature, standardize=standardize)
    return alpha * terms.target_class + beta * terms.non_target_class


def dkd_warmup_factor(epoch: float, warmup_epochs: float = 20) -> float:
    """The weight DKD's loss ramps up with: ``min(epoch / warmup_epochs, 1)``, from ``mdistiller/distillers/DKD.py:72``.

    mdistiller counts epochs from 1 (``mdistiller/engine/trainer.py:78-86``), so the first epoch trains with weight
    ``1 / 20`` and epoch 20 onwards with 1; from Lightning pass ``trainer.current_epoch + 1``. The default of 20 epochs
    is ``CFG.DKD.WARMUP`` (``mdistiller/engine/cfg.py:167``). ``warmup_epochs=0`` turns the warm-up off.

    Example:
        >>> [dkd_warmup_factor(epoch) for epoch in (1, 10, 20, 240)]
        [0.05, 0.5, 1.0, 1.0]
    """
    if not warmup_epochs >= 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if warmup_epochs == 0:
        return 1.0
    return min(epoch / warmup_epochs, 1.0)
