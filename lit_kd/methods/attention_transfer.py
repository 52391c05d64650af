"""Attention transfer: match the normalised spatial attention maps of student and teacher stages."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import attention_transfer_loss
from lit_kd.methods.base import DistillationModule
from lit_kd.methods.fitnets import check_layer, require_feature_net


class AttentionTransfer(DistillationModule):
    """Activation-based attention transfer of Zagoruyko & Komodakis (ICLR 2017), "Paying More Attention to Attention".

    ``loss = CE(student, y) + beta / 2 * sum_j attention_transfer_loss(student_j, teacher_j)`` over pairs of stage
    outputs (:func:`~lit_kd.losses.attention_transfer_loss`, squared distance of L2-normalised ``mean_c |F|^p``
    maps, averaged over batch and positions). Defaults from the paper and its official code
    (szagoruyko/attention-transfer, ``cifar.py``): ``beta = 1000``, ``p = 2``, every stage output ("at the end of
    each group of residual blocks"), cross-entropy with no KD term (``alpha = 0``). RepDistiller uses the same
    maps with ``beta = 1000`` and no ``/ 2``.

    Args:
        student: the network being trained (a zoo :class:`~lit_kd.models.FeatureNet`).
        teacher: the teacher's architecture (a zoo :class:`~lit_kd.models.FeatureNet`).
        beta: weight of the attention term (halved, as in the paper's Eq. 2).
        p: exponent of the attention map.
        student_layers: indices in ``forward_features(x).features`` of the student maps (0 = stem); by default
            every stage output ``1 .. len(features) - 1``.
        teacher_layers: the teacher maps paired with them; by default every stage output. Same length as
            ``student_layers``.
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        beta: float = 1000.0,
        p: float = 2.0,
        student_layers: list[int] | None = None,
        teacher_layers: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=require_feature_net(student, "student"), teacher=teacher, **kwargs)
        require_feature_net(teacher, "teacher")
        student_layers = list(range(1, len(student.feature_channels))) if student_layers is None else student_layers
        teacher_layers = list(range(1, len(teacher.feature_channels))) if teacher_layers is None else teacher_layers
        if len(student_layers) != len(teacher_layers) or not student_layers:
            raise ValueError(
                f"student_layers {student_layers} and teacher_layers {teacher_layers} must pair up one to one (same "
                f"non-zero length); set both when the networks have different numbers of stages"
            )
        if beta < 0 or p <= 0:
            raise ValueError(f"beta must be >= 0 and p > 0, got beta={beta}, p={p}")
        self.student_layers = [check_layer(layer, student, "student_layers") for layer in student_layers]
        self.teacher_layers = [check_layer(layer, teacher, "teacher_layers") for layer in teacher_layers]
        self.beta = beta
        self.p = p

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy plus ``beta / 2`` times the summed attention-transfer losses of the paired stages."""
        student_output = self.student.forward_features(images)
        with torch.no_grad():
            teacher_features = self.teacher.forward_features(images).features
        cross_entropy = F.cross_entropy(student_output.logits, targets)
        attention = sum(
            attention_transfer_loss(student_output.features[s], teacher_features[t], self.p)
            for s, t in zip(self.student_layers, self.teacher_layers, strict=True)
        )
        loss = cross_entropy + self.beta / 2 * attention
        return {"loss": loss, "ce": cross_entropy, "at": attention}, student_output.logits
