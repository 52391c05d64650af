"""BSS: knowledge distillation with adversarial samples supporting the decision boundary."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lit_kd.callbacks.bss import BoundarySampleMining
from lit_kd.losses import soft_cross_entropy
from lit_kd.methods.base import DistillationModule


class BSSDistillation(DistillationModule):
    """BSS: Heo et al., "Knowledge Distillation with Adversarial Samples Supporting Decision Boundary" (AAAI 2019).

    ``loss = CE(s, y) + r * softCE_T(s, t) + r_bss * softCE_T(s_bss, t_bss)``: cross-entropy, soft cross-entropy
    to the teacher on the batch, and soft cross-entropy to the teacher on *boundary supporting samples* (base
    samples moved by an attack on the teacher until they just cross its decision boundary towards a sampled
    class). The samples, the attack's settings and the weights ``r`` (4 down to 1) and ``r_bss`` (2 down to 0 at
    75% of training) come from the :class:`~lit_kd.callbacks.BoundarySampleMining` callback; fitted without one,
    the module adds one with the official defaults (``configure_callbacks``). Default ``T = 3``, and soft
    cross-entropy without ``T^2``: ``train_BSS_distillation.py`` of the official code (bhheo/BSS_distillation).

    Args:
        student: the network being trained.
        teacher: the teacher's architecture.
        temperature: softening temperature ``T`` of both distillation terms.
        standardize: standardise the logits of both distillation terms first
            (:func:`~lit_kd.losses.soft_cross_entropy`; ours: Sun et al. 2024 do not apply it to BSS). Off by default.
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    memoizes_teacher_logits = True  # its teacher reads only the training images' logits

    def __init__(
        self, student: nn.Module, teacher: nn.Module, temperature: float = 3.0, standardize: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.standardize = standardize
        self.boundary_mining: BoundarySampleMining | None = None

    def configure_callbacks(self) -> list[Callback]:
        """Add a :class:`BoundarySampleMining` with the official defaults unless the trainer already has one."""
        if any(isinstance(callback, BoundarySampleMining) for callback in self.trainer.callbacks):
            return []
        rank_zero_info(f"{type(self).__name__}: adding BoundarySampleMining() with the official BSS defaults")
        return [BoundarySampleMining()]

    def setup(self, stage: str) -> None:
        """Find the mining callback that feeds this module (when fitting)."""
        super().setup(stage)
        if stage == "fit":
            self.boundary_mining = BoundarySampleMining.find(self.trainer)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy, KD on the batch and KD on the batch's boundary supporting samples, as weighted this epoch."""
        mining = self.boundary_mining
        if mining is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the lit_kd.callbacks.BoundarySampleMining callback: fit it with a "
                "Trainer (it adds one) or set module.boundary_mining"
            )
        student_logits = self.student(images)
        teacher_logits = self.teacher_logits(images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        distillation = soft_cross_entropy(
            student_logits, teacher_logits, self.temperature, standardize=self.standardize
        )
        loss = cross_entropy + mining.distillation_weight * distillation
        samples = mining.mine(self.frozen_teacher, images, targets, teacher_logits, student_logits)
        boundary = distillation.new_zeros(())
        if samples is not None:
            boundary_logits = self.student(samples.images)
            boundary = soft_cross_entropy(
                boundary_logits, samples.teacher_logits, self.temperature, standardize=self.standardize
            )
            loss = loss + mining.boundary_weight * boundary
        return {"loss": loss, "ce": cross_entropy, "kd": distillation, "boundary_kd": boundary}, student_logits
