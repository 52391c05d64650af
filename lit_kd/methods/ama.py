"""AMA: activation map adaptation, a trainable copy of a teacher stage that adapts its output to the student."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import ConvRegressor, hint_loss
from lit_kd.methods.base import DistillationModule
from lit_kd.methods.fitnets import check_layer, probe_feature_maps, require_feature_net


class ActivationMapAdaptation(DistillationModule):
    """Activation map adaptation (AMA): a trainable copy of a teacher stage supervises the student's hidden map.

    Wu et al. (2020), "Activation Map Adaptation for Effective Knowledge Distillation" (arXiv:2010.13500). From
    the paper's abstract (its full text and code were not available to us): an "activation map adaptive
    module" replaces some blocks of the teacher and is trained along with the student, "exploring the most
    appropriate supervisory features adaptively during the training process"; the student is supervised by the
    teacher's (adapted) hidden-layer output; CIFAR-10, +0.6% student accuracy.

    Our reading, which fixes what the abstract leaves open:

    - the adaptive module is a trainable copy of teacher stage ``adapted_stage`` (so the adapted teacher starts
      as the teacher); the teacher's own weights stay frozen;
    - adapted teacher = frozen teacher up to that stage -> adaptive module -> frozen rest of the teacher;
    - the student's map at the same depth (``forward_features(x).features[adapted_stage]``) is regressed onto the
      adapted map as in FitNets (:class:`~lit_kd.losses.ConvRegressor`, MSE); that hint loss trains the student,
      the regressor *and* the adaptive module, which is how the supervising activations move towards what the
      student can learn;
    - the adapted teacher keeps classifying: its cross-entropy (weight ``adapted_ce_weight``) trains the adaptive
      module so that the adapted activations stay useful for the frozen rest of the teacher.

    ``loss = CE(student) + hint_weight * MSE(regressor(s_k), A(t_{k-1})) + adapted_ce_weight * CE(adapted teacher)``.
    Defaults: stage 2 and ``hint_weight = 100`` as lit-kd's FitNets (RepDistiller's hint settings);
    ``adapted_ce_weight = 1`` is our choice.

    Args:
        student: the network being trained (a zoo :class:`~lit_kd.models.FeatureNet`).
        teacher: the teacher's architecture (a zoo :class:`~lit_kd.models.FeatureNet`).
        adapted_stage: which teacher stage is replaced (1 = first stage); the student's map of the same index
            is supervised.
        hint_weight: weight of the hint term.
        adapted_ce_weight: weight of the adapted teacher's cross-entropy.
        probe_size: image size of the dummy batch that sizes the regressor.
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        adapted_stage: int = 2,
        hint_weight: float = 100.0,
        adapted_ce_weight: float = 1.0,
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=require_feature_net(student, "student"), teacher=teacher, **kwargs)
        require_feature_net(teacher, "teacher")
        if check_layer(adapted_stage, teacher, "adapted_stage") == 0:
            raise ValueError(f"adapted_stage must index a teacher stage (1..{len(teacher.stages)}), got 0 (the stem)")
        check_layer(adapted_stage, student, "adapted_stage")
        if hint_weight < 0 or adapted_ce_weight < 0:
            raise ValueError(f"hint_weight and adapted_ce_weight must be >= 0, got {hint_weight}, {adapted_ce_weight}")
        self.adapted_stage = adapted_stage
        self.hint_weight = hint_weight
        self.adapted_ce_weight = adapted_ce_weight
        self.adapter = copy.deepcopy(teacher.stages[adapted_stage - 1]).requires_grad_(True).train()
        student_map = probe_feature_maps(student, probe_size)[adapted_stage]
        teacher_map = probe_feature_maps(teacher, probe_size)[adapted_stage]
        self.regressor = ConvRegressor.between(student_map, teacher_map)

    def adapted_teacher(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The adapted activation map and the adapted teacher's logits (gradients reach only the adaptive module)."""
        stages = self.teacher.stages
        with torch.no_grad():
            features = self.teacher.stem(images)
            for stage in stages[: self.adapted_stage - 1]:
                features = stage(features)
        adapted_map = self.adapter(features)
        features = adapted_map
        for stage in stages[self.adapted_stage :]:
            features = stage(features)
        logits = self.teacher.classifier(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))
        return adapted_map, logits

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Student cross-entropy, hint loss to the adapted map, and the adapted teacher's cross-entropy."""
        student_output = self.student.forward_features(images)
        adapted_map, adapted_logits = self.adapted_teacher(images)
        cross_entropy = F.cross_entropy(student_output.logits, targets)
        hint = hint_loss(self.regressor(student_output.features[self.adapted_stage]), adapted_map)
        adapted_ce = F.cross_entropy(adapted_logits, targets)
        loss = cross_entropy + self.hint_weight * hint + self.adapted_ce_weight * adapted_ce
        return {"loss": loss, "ce": cross_entropy, "hint": hint, "adapted_ce": adapted_ce}, student_output.logits
