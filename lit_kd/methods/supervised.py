"""Plain supervised training: teachers and the vanilla-student baseline, for classification and regression."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from lit_kd.methods.base import StudentModule


class SupervisedModule(StudentModule):
    """Trains a network on the labels alone: for teachers and for the vanilla student every KD paper reports.

    The loss is :meth:`~StudentModule.task_loss`: cross-entropy for classification; for a regression DataModule
    (``task = "regression"``, e.g. :class:`~lit_kd.data.UTKFaceDataModule`, with a one-output network such as
    ``create_model("resnet20", num_classes=1)``) the MSE on the scaled targets, with MAE/RMSE in the data's units
    as metrics. Its checkpoints load directly as a teacher (``teacher_checkpoint`` of any distillation method).

    Example:
        >>> from lit_kd.models import create_model
        >>> module = SupervisedModule(create_model("resnet8", num_classes=10))
    """

    supported_tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The task loss of the student's outputs (cross-entropy, or MSE for regression)."""
        outputs = self.student(images)
        return {"loss": self.task_loss(outputs, targets)}, outputs
