"""Hinton knowledge distillation."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import soft_target_kl
from lit_kd.methods.base import DistillationModule


class HintonKD(DistillationModule):
    """Knowledge distillation of Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network".

    ``loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.
    Defaults ``T = 4``, ``alpha = 0.9`` are the CIFAR settings of RepDistiller/mdistiller (Tian et al., 2020).

    Args:
        student: the network being trained.
        teacher: the teacher's architecture.
        temperature: softening temperature ``T``.
        alpha: weight of the soft-target term (``1 - alpha`` goes to cross-entropy).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self, student: nn.Module, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9, **kwargs: Any
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.temperature = temperature
        self.alpha = alpha

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy on the labels plus the soft-target KL to the teacher."""
        student_logits = self.student(images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        distillation = soft_target_kl(student_logits, self.teacher_logits(images), self.temperature)
        loss = (1 - self.alpha) * cross_entropy + self.alpha * distillation
        return {"loss": loss, "ce": cross_entropy, "kd": distillation}, student_logits
