"""Attention transfer: match the normalised spatial attention maps of student and teacher stages."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import attention_transfer_loss
from lit_kd.methods.base import DistillationModule
from lit_kd.models.features import FeatureTaps, LayerName, probe_maps, stage_pairs


class AttentionTransfer(DistillationModule):
    """Activation-based attention transfer of Zagoruyko & Komodakis (ICLR 2017), "Paying More Attention to Attention".

    ``loss = CE(student, y) + beta * sum_j attention_transfer_loss(student_j, teacher_j)`` over pairs of stage
    outputs (:func:`~lit_kd.losses.attention_transfer_loss`, squared distance of L2-normalised ``mean_c |F|^p``
    maps, averaged over batch and positions). This is the official code's total loss,
    ``utils.distillation(...) + opt.beta * sum(loss_groups)`` (szagoruyko/attention-transfer ``cifar.py:222-223`` at
    893df54; no version of it halves ``beta``), with its README's ``--beta 1e+3`` (``README.md:68``) and ``alpha = 0``
    (``cifar.py:56``: cross-entropy only); RepDistiller computes the same (``helper/loops.py:184``, ``-b 1000`` in
    ``scripts/run_cifar_distill.sh:9``). ``p = 2`` (``utils.py:19``, ``x.pow(2)``); every stage output (the
    official code's group outputs, ``cifar.py:131-138``; RepDistiller's ``feat[1:-1]``). The paper's Eq. 2 writes
    ``beta / 2`` with an un-squared norm; the code's ``beta`` already includes that factor.

    The layers are any network's module paths, read with forward hooks
    (:class:`~lit_kd.models.features.FeatureTaps`); zoo networks also take feature indices (0 = stem, ``i`` =
    stage ``i``). Unnamed, they are every stage output (zoo: indices ``1 .. n``; any other network: the last module
    before each change of resolution, :func:`~lit_kd.models.features.spatial_stages`), paired from the deepest stage
    back. Maps of different spatial sizes are pooled to the smaller one (RepDistiller), channel counts may
    differ (attention maps have none).

    Args:
        student: the network being trained (any ``nn.Module``).
        teacher: the teacher's architecture (any ``nn.Module``).
        beta: weight of the summed attention terms (official 1000).
        p: exponent of the attention map.
        student_layers: the student maps: module paths or zoo feature indices; by default every stage output.
        teacher_layers: the teacher maps paired with them, one to one; by default every stage output.
        probe_size: image size of the dummy batch that checks the layers at construction.
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        beta: float = 1000.0,
        p: float = 2.0,
        student_layers: list[LayerName] | None = None,
        teacher_layers: list[LayerName] | None = None,
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        student_layers, teacher_layers = stage_pairs(student, teacher, student_layers, teacher_layers, probe_size)
        if len(student_layers) != len(teacher_layers) or not student_layers:
            raise ValueError(
                f"student_layers {student_layers} and teacher_layers {teacher_layers} must pair up one to one (same "
                f"non-zero length); set both when the networks have different numbers of stages"
            )
        if not beta >= 0 or not p > 0:
            raise ValueError(f"beta must be >= 0 and p > 0, got beta={beta}, p={p}")
        self.student_taps = FeatureTaps(student, student_layers, "student_layers")
        self.teacher_taps = FeatureTaps(teacher, teacher_layers, "teacher_layers")
        probe_maps(self.student_taps, probe_size), probe_maps(self.teacher_taps, probe_size)  # 4-D maps, or raise
        self.beta = beta
        self.p = p

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy plus ``beta`` times the summed attention-transfer losses of the paired stages."""
        student_logits, student_maps = self.student_taps(images)
        teacher = self.frozen_teacher  # made here, outside teacher_forward's inference mode (ordinary weights)
        _, teacher_maps = self.teacher_forward(lambda batch: self.teacher_taps(batch, teacher), images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        attention = sum(attention_transfer_loss(s, t, self.p) for s, t in zip(student_maps, teacher_maps, strict=True))
        loss = cross_entropy + self.beta * attention
        return {"loss": loss, "ce": cross_entropy, "at": attention}, student_logits
