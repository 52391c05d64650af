"""FitNets: hint regression on a middle layer through a learned regressor."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import ConvRegressor, hint_loss
from lit_kd.methods.base import DistillationModule
from lit_kd.models.base import FeatureNet


def require_feature_net(network: nn.Module, argument: str) -> FeatureNet:
    """Check that ``network`` is a zoo :class:`~lit_kd.models.FeatureNet` (its feature maps are read directly)."""
    if not isinstance(network, FeatureNet):
        raise TypeError(
            f"{argument} must be a lit_kd.models.FeatureNet (any zoo network, e.g. CifarResNet) to be distilled "
            f"through its feature maps, got {type(network).__name__}"
        )
    return network


def check_layer(layer: int, network: nn.Module, argument: str) -> int:
    """Check that ``layer`` indexes ``network.forward_features(x).features`` (0 = stem, 1.. = stage outputs)."""
    count = len(network.feature_channels)
    if not 0 <= layer < count:
        raise ValueError(f"{argument} must be in 0..{count - 1} (0 = stem, then each stage), got {layer}")
    return layer


@torch.no_grad()
def probe_feature_maps(network: nn.Module, image_size: int = 32) -> list[Tensor]:
    """Feature maps of ``network`` on a dummy batch ``[2, 3, image_size, image_size]`` (eval mode), to size adapters."""
    was_training = network.training
    network.eval()
    try:
        parameter = next(network.parameters())
        features = network.forward_features(torch.zeros(2, 3, image_size, image_size, device=parameter.device))
    finally:
        network.train(was_training)
    return list(features.features)


class FitNets(DistillationModule):
    """FitNets of Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", trained in one stage.

    A :class:`~lit_kd.losses.ConvRegressor` maps the student's hint-layer map onto the teacher's guided-layer map;
    ``loss = CE(student, y) + hint_weight * MSE(regressor(student_hint), teacher_guided)``. The paper pre-trains
    up to the hint layer first and then runs KD; like RepDistiller (Tian et al., 2020, ``--distill hint``), whose
    defaults these are, the hint term is instead added to cross-entropy for the whole run: ``hint_weight = 100``
    (``-b 100``, ``-r 1``, ``-a 0``), hint layer 2 (``--hint_layer 2``: the output of the second stage, the middle
    of a three-stage CIFAR network). The regressor is trained with the student.

    Args:
        student: the network being trained (a zoo :class:`~lit_kd.models.FeatureNet`).
        teacher: the teacher's architecture (a zoo :class:`~lit_kd.models.FeatureNet`).
        hint_layer: index of the student's hint map in ``forward_features(x).features`` (0 = stem).
        guided_layer: index of the teacher's guided map; by default ``hint_layer``.
        hint_weight: weight of the hint term.
        probe_size: image size of the dummy batch that sizes the regressor (the training size is fine too: only
            the ratio of the two maps' sizes matters).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        hint_layer: int = 2,
        guided_layer: int | None = None,
        hint_weight: float = 100.0,
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=require_feature_net(student, "student"), teacher=teacher, **kwargs)
        require_feature_net(teacher, "teacher")
        guided_layer = hint_layer if guided_layer is None else guided_layer
        self.hint_layer = check_layer(hint_layer, student, "hint_layer")
        self.guided_layer = check_layer(guided_layer, teacher, "guided_layer")
        if hint_weight < 0:
            raise ValueError(f"hint_weight must be >= 0, got {hint_weight}")
        self.hint_weight = hint_weight
        student_map = probe_feature_maps(student, probe_size)[self.hint_layer]
        teacher_map = probe_feature_maps(teacher, probe_size)[self.guided_layer]
        self.regressor = ConvRegressor.between(student_map, teacher_map)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy plus the weighted hint loss between the regressed student map and the teacher map."""
        student_output = self.student.forward_features(images)
        with torch.no_grad():
            teacher_map = self.teacher.forward_features(images).features[self.guided_layer]
        cross_entropy = F.cross_entropy(student_output.logits, targets)
        hint = hint_loss(self.regressor(student_output.features[self.hint_layer]), teacher_map)
        loss = cross_entropy + self.hint_weight * hint
        return {"loss": loss, "ce": cross_entropy, "hint": hint}, student_output.logits
