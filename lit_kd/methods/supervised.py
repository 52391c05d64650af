"""Plain supervised training: teachers and the vanilla-student baseline."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_kd.methods.base import StudentModule


class SupervisedModule(StudentModule):
    """Trains a network with cross-entropy alone: for teachers and for the vanilla student every KD paper reports.

    Its checkpoints load directly as a teacher (``teacher_checkpoint`` of any distillation method).

    Example:
        >>> from lit_kd.models import create_model
        >>> module = SupervisedModule(create_model("resnet8", num_classes=10))
    """

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy of the student's logits."""
        logits = self.student(images)
        return {"loss": F.cross_entropy(logits, targets)}, logits
