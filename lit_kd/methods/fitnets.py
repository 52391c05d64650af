"""FitNets: hint regression on a middle layer through a learned regressor."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import ConvRegressor, hint_loss
from lit_kd.methods.base import DistillationModule
from lit_kd.models.features import FeatureTaps, LayerName, middle_stage_pair, probe_maps


class FitNets(DistillationModule):
    """FitNets of Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", trained in one stage.

    A :class:`~lit_kd.losses.ConvRegressor` maps the student's hint-layer map onto the teacher's guided-layer map;
    ``loss = CE(student, y) + hint_weight * MSE(regressor(student_hint), teacher_guided)``. The paper pre-trains
    up to the hint layer first and then runs KD; like RepDistiller (Tian et al., 2020, ``--distill hint``), whose
    defaults these are, the hint term is instead added to cross-entropy for the whole run: ``hint_weight = 100``
    (``scripts/run_cifar_distill.sh:7``: ``-a 0 -b 100``, ``-r`` 1), hint layer 2 (``train_student.py:88``:
    ``--hint_layer`` 2, RepDistiller's ``feat[2]``: the output of the second stage, the middle of a three-stage CIFAR
    network). The regressor is trained with the student.

    The layers are any network's module paths (``layer2``, ``features.7``), read with forward hooks
    (:class:`~lit_kd.models.features.FeatureTaps`); zoo networks also take feature indices (0 = stem, ``i`` =
    stage ``i``). A layer that does not exist, or maps that cannot be regressed onto each other, raise at
    construction.

    Args:
        student: the network being trained (any ``nn.Module``).
        teacher: the teacher's architecture (any ``nn.Module``).
        hint_layer: the student's hint map: a module path, or a zoo feature index; by default the middle stage (zoo:
            ``2``; any other network: the middle one of :func:`~lit_kd.models.features.spatial_stages`).
        guided_layer: the teacher's guided map; by default ``hint_layer`` if named, else the teacher's middle stage.
        hint_weight: weight of the hint term.
        probe_size: image size of the dummy batch that sizes the regressor (the training size is fine too).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        hint_layer: LayerName | None = None,
        guided_layer: LayerName | None = None,
        hint_weight: float = 100.0,
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        if not hint_weight >= 0:
            raise ValueError(f"hint_weight must be >= 0, got {hint_weight}")
        self.hint_weight = hint_weight
        arguments = ("hint_layer", "guided_layer")
        hint_layer, guided_layer = middle_stage_pair(student, teacher, hint_layer, guided_layer, arguments, probe_size)
        self.student_taps = FeatureTaps(student, [hint_layer], "hint_layer")
        self.teacher_taps = FeatureTaps(teacher, [guided_layer], "guided_layer")
        (student_map,), (teacher_map,) = (
            probe_maps(self.student_taps, probe_size),
            probe_maps(self.teacher_taps, probe_size),
        )
        self.regressor = ConvRegressor.between(student_map, teacher_map)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy plus the weighted hint loss between the regressed student map and the teacher map."""
        student_logits, (student_map,) = self.student_taps(images)
        teacher = self.frozen_teacher  # made here, outside teacher_forward's inference mode (ordinary weights)
        _, (teacher_map,) = self.teacher_forward(lambda batch: self.teacher_taps(batch, teacher), images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        hint = hint_loss(self.regressor(student_map), teacher_map)
        loss = cross_entropy + self.hint_weight * hint
        return {"loss": loss, "ce": cross_entropy, "hint": hint}, student_logits
