"""K networks trained side by side in one run, e.g. K seeds of a teacher architecture for an ensemble."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.methods.base import StudentModule
from lit_kd.methods.ensemble import LogitEnsemble, MemberAccuracies


class SeedEnsembleModule(StudentModule):
    """Trains K networks side by side with cross-entropy, e.g. K seeds of a teacher architecture for an ensemble.

    Each member gets its own cross-entropy on the same batches (``loss`` is their sum, so each member's gradient is
    the one it would get alone); the members differ only by their initialisation (built one after another from the
    seeded generator: list the same network K times in YAML), the setting of Allen-Zhu & Li (2020): networks of
    the same architecture, trained with the same algorithm on the same data, differing "only by the random seeds
    used in the initialization". ``val/acc`` is the ensemble's (mean logits) accuracy, ``val/member<i>_acc`` each
    member's. One run trains all K, on one device or with DDP; its checkpoint loads directly as the teacher of
    :class:`~lit_kd.methods.EnsembleDistillation` (``teacher_checkpoint``). Members trained in separate runs are
    passed as ``teacher_checkpoints`` instead.

    Args:
        members: the K networks (same or different architectures).
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``: see :class:`StudentModule`.
    """

    hparams_ignore = (*StudentModule.hparams_ignore, "members")

    def __init__(self, members: list[nn.Module], **kwargs: Any) -> None:
        super().__init__(student=LogitEnsemble(members), **kwargs)
        self.member_accuracies: MemberAccuracies | None = None

    def networks_to_check(self) -> dict[str, nn.Module]:
        """Every member must output ``num_classes`` logits."""
        return {f"member {index}": member for index, member in enumerate(self.student.members)}

    def setup(self, stage: str) -> None:
        """Build the base's metrics and the per-member accuracies."""
        super().setup(stage)
        if self.member_accuracies is None:
            self.member_accuracies = MemberAccuracies(len(self.student.members), self.num_classes)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The sum of the members' cross-entropies (each also logged); the ensemble's logits."""
        member_logits = self.student.member_logits(images)
        losses = {f"ce_member{index}": F.cross_entropy(logits, targets) for index, logits in enumerate(member_logits)}
        return {"loss": sum(losses.values()), **losses}, member_logits.mean(dim=0)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Loss and accuracy of the ensemble, and each member's accuracy."""
        images, targets = batch
        member_logits = self.student.member_logits(images)
        ensemble_logits = member_logits.mean(dim=0)
        self.log_loss_terms({"loss": F.cross_entropy(ensemble_logits, targets)}, "val", batch_size=len(targets))
        self.update_and_log_metrics("val", ensemble_logits, targets)
        self.member_accuracies.update_and_log(self, "val", member_logits, targets)
