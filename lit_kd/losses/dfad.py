"""The discrepancy DFAD's student minimises and its generator maximises (Fang et al., 2019)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def logit_discrepancy(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean absolute error between student and teacher logits, averaged over the batch and the classes.

    DFAD's model discrepancy ``||t - s||_1 / n`` over the ``n`` logits (Fang et al., "Data-Free Adversarial
    Distillation", 2019), computed as ``F.l1_loss(s_logit, t_logit)`` in ``DFAD_cifar.py`` of the official code:
    the student's loss is this with the teacher's logits detached, the generator's loss is its negative. Neither
    side is detached here: the caller decides where gradients go (the generator step needs them through both
    networks, down to the images).

    Example:
        >>> import torch
        >>> student = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
        >>> teacher = torch.tensor([[0.0, 2.0], [0.0, -0.5]])
        >>> logit_discrepancy(student, teacher).item()  # (1 + 4 + 0 + 1) / 4
        1.5
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)}"
        )
    return F.l1_loss(student_logits, teacher_logits)
