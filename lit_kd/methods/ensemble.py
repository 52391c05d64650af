"""Ensemble distillation: one student matches the averaged soft outputs of several trained networks."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lit_kd.checkpointing import load_network_weights
from lit_kd.losses import soft_target_kl
from lit_kd.methods.base import DistillationModule


class LogitEnsemble(nn.Module):
    """An ensemble whose output is the mean of its members' logits (the ensemble of Allen-Zhu & Li, 2020, Sec. 2).

    Its state dict holds ``members.<i>.<parameter>``, so a checkpoint of a
    :class:`~lit_kd.methods.SeedEnsembleModule` (networks under ``student.members.<i>``) loads into it as one teacher.

    Example:
        >>> import torch
        >>> ensemble = LogitEnsemble([nn.Linear(4, 3), nn.Linear(4, 3)])
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(ensemble(x), (ensemble.members[0](x) + ensemble.members[1](x)) / 2)
        True
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("members must hold at least one network, got none")
        self.members = nn.ModuleList(members)

    def member_logits(self, images: Tensor) -> Tensor:
        """Every member's logits, stacked: ``[K, B, num_classes]``."""
        return torch.stack([member(images) for member in self.members])

    def forward(self, images: Tensor) -> Tensor:
        """The mean of the members' logits, ``[B, num_classes]``."""
        return self.member_logits(images).mean(dim=0)


class MemberAccuracies(nn.Module):
    """Top-1 accuracy of an ensemble and of each of its members: ``<stage>/ensemble_acc``, ``<stage>/member<i>_acc``."""

    def __init__(self, num_members: int, num_classes: int) -> None:
        super().__init__()
        names = ["ensemble_acc", *(f"member{index}_acc" for index in range(num_members))]
        self.metrics = nn.ModuleDict({name: MulticlassAccuracy(num_classes, average="micro") for name in names})

    def update_and_log(self, module: LightningModule, stage: str, member_logits: Tensor, targets: Tensor) -> None:
        """Update with ``[K, B, C]`` member logits (the ensemble is their mean) and log every accuracy per epoch."""
        for name, logits in zip(self.metrics, [member_logits.mean(dim=0), *member_logits], strict=True):
            self.metrics[name].update(logits, targets)
            module.log(f"{stage}/{name}", self.metrics[name], on_step=False, on_epoch=True)


class EnsembleDistillation(DistillationModule):
    """Distils the mean logits of K trained networks into one student, from their soft outputs alone.

    Allen-Zhu & Li (2020), "Towards Understanding Ensemble, Knowledge Distillation and Self-Distillation in Deep
    Learning": networks that differ only by the random seeds of their initialisation are averaged
    (:class:`LogitEnsemble`, the average of their outputs), and a single network trained to match the ensemble's
    output instead of the true labels recovers much of the ensemble's gain.
    ``loss = ce_weight * CE(student, y) + T^2 * KL(softmax(ensemble / T) || softmax(student / T))``, with
    ``ce_weight = 0`` (the ensemble's outputs only, as the paper describes) and ``T = 4``, lit-kd's Hinton-KD default
    (RepDistiller's CIFAR setting), not a value taken from Allen-Zhu & Li. Validation also logs the ensemble's and
    each member's accuracy (``val/ensemble_acc``, ``val/member<i>_acc``) next to the student's ``val/acc``.

    Args:
        student: the network being trained.
        teachers: the members' architectures (same or different; each must output ``num_classes`` logits).
        teacher_checkpoints: one checkpoint per member (lit-kd/Lightning checkpoints or state dicts). Leave it out
            to load all members at once from ``teacher_checkpoint``, e.g. a :class:`~lit_kd.methods.SeedEnsembleModule`
            checkpoint, or when the members are :class:`~lit_kd.models.PretrainedNetwork` s.
        temperature: softening temperature ``T``.
        ce_weight: weight of the label cross-entropy.
        standardize: standardise the student's and the ensemble's logits before the soft-target loss (logit
            standardisation, Sun et al. 2024; see :class:`~lit_kd.methods.HintonKD`). Off by default.
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    memoizes_teacher_logits = True  # its teacher reads only the training images' logits

    hparams_ignore = (*DistillationModule.hparams_ignore, "teachers")

    def __init__(
        self,
        student: nn.Module,
        teachers: list[nn.Module],
        teacher_checkpoints: list[str] | None = None,
        temperature: float = 4.0,
        ce_weight: float = 0.0,
        standardize: bool = False,
        **kwargs: Any,
    ) -> None:
        if not temperature > 0 or not ce_weight >= 0:
            raise ValueError(f"temperature must be > 0 and ce_weight >= 0, got {temperature} and {ce_weight}")
        teacher = LogitEnsemble(teachers)
        with warnings.catch_warnings():
            if teacher_checkpoints is not None:
                if kwargs.get("teacher_checkpoint") is not None:
                    raise ValueError("set teacher_checkpoints (one per member) or teacher_checkpoint (all), not both")
                if len(teacher_checkpoints) != len(teachers):
                    raise ValueError(
                        f"teacher_checkpoints has {len(teacher_checkpoints)} entries for {len(teachers)} teachers"
                    )
                for index, (member, path) in enumerate(zip(teachers, teacher_checkpoints, strict=True)):
                    load_network_weights(member, path, argument=f"teacher_checkpoints[{index}]")
            if teacher_checkpoints is not None or all(getattr(m, "weights_name", None) for m in teachers):
                warnings.filterwarnings("ignore", message=".*teacher_checkpoint is None")  # members are loaded
            super().__init__(student=student, teacher=teacher, **kwargs)
        self.temperature = temperature
        self.ce_weight = ce_weight
        self.standardize = standardize
        self.member_accuracies: MemberAccuracies | None = None

    def setup(self, stage: str) -> None:
        """Build the base's metrics and the ensemble/member accuracies."""
        super().setup(stage)
        if self.member_accuracies is None:
            self.member_accuracies = MemberAccuracies(len(self.teacher.members), self.num_classes)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Soft-target KL to the ensemble's mean logits, plus optionally weighted cross-entropy."""
        student_logits = self.student(images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        teacher_logits = self.teacher_logits(images)
        distillation = soft_target_kl(student_logits, teacher_logits, self.temperature, standardize=self.standardize)
        loss = self.ce_weight * cross_entropy + distillation
        return {"loss": loss, "ce": cross_entropy, "kd": distillation}, student_logits

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """The student's loss and accuracy, and the accuracy of the ensemble and of each member."""
        super().validation_step(batch, batch_idx)
        images, targets = batch
        with torch.no_grad():
            self.member_accuracies.update_and_log(self, "val", self.frozen_teacher.member_logits(images), targets)
