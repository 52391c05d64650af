"""AMA: activation map adaptation, a trainable copy of a teacher stage that adapts its output to the student."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import ConvRegressor, hint_loss
from lit_kd.methods.base import DistillationModule
from lit_kd.models.features import FeatureTaps, LayerName, middle_stage_pair, probe_maps, resolve_layer
from lit_kd.models.probe import evaluation_mode


class ActivationMapAdaptation(DistillationModule):
    """Activation map adaptation (AMA): a trainable copy of a teacher stage supervises the student's hidden map.

    Wu et al. (2020), "Activation Map Adaptation for Effective Knowledge Distillation" (arXiv:2010.13500). From
    the paper's abstract (its full text and code were not available to us): an "activation map adaptive
    module" replaces some blocks of the teacher and is trained along with the student, "exploring the most
    appropriate supervisory features adaptively during the training process"; the student is supervised by the
    teacher's (adapted) hidden-layer output; CIFAR-10, +0.6% student accuracy.

    Our reading, which fixes what the abstract leaves open:

    - the adaptive module is a trainable copy of teacher block ``adapted_layer`` (so the adapted teacher starts
      as the teacher); the teacher's own weights stay frozen;
    - adapted teacher = frozen teacher up to that stage -> adaptive module -> frozen rest of the teacher;
    - the student's map at the same depth (``student_layer``, by default the same stage) is regressed onto the
      adapted map as in FitNets (:class:`~lit_kd.losses.ConvRegressor`, MSE); that hint loss trains the student,
      the regressor *and* the adaptive module, which is how the supervising activations move towards what the
      student can learn (``hint_trains_adapter=False`` stops the hint's gradient at the adapted map, so that only the
      adapted cross-entropy moves the module: a probe of this reading, not the method);
    - the adapted teacher keeps classifying: its cross-entropy (weight ``adapted_ce_weight``) trains the adaptive
      module so that the adapted activations stay useful for the frozen rest of the teacher.

    ``loss = CE(student) + hint_weight * MSE(regressor(s_k), A(t_{k-1})) + adapted_ce_weight * CE(adapted teacher)``.
    Defaults: stage 2 and ``hint_weight = 100`` as lit-kd's FitNets (RepDistiller's hint settings);
    ``adapted_ce_weight = 1`` is our choice.

    Any network works: the adapted block is named by module path (``adapted_layer``, e.g. ``layer3`` of a
    torchvision ResNet), and the adapted teacher is the frozen teacher run with that block's output replaced by the
    adaptive copy's (a forward hook, :class:`~lit_kd.models.features.FeatureTaps` for the student's map). Zoo
    networks also take feature indices (``adapted_layer: 2`` is ``stages.1``).

    Args:
        student: the network being trained (any ``nn.Module``).
        teacher: the teacher's architecture (any ``nn.Module``).
        adapted_layer: the teacher block that is replaced: a module path, or a zoo stage index (1 = first stage); by
            default the middle stage (zoo: ``2``; any other network: the middle of
            :func:`~lit_kd.models.features.spatial_stages`).
        student_layer: the student map supervised by the adapted map; by default ``adapted_layer`` if named, else the
            student's middle stage.
        hint_weight: weight of the hint term.
        adapted_ce_weight: weight of the adapted teacher's cross-entropy.
        hint_trains_adapter: whether the hint loss trains the adaptive module too (our reading; default ``True``).
        probe_size: image size of the dummy batch that sizes the regressor.
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        adapted_layer: LayerName | None = None,
        student_layer: LayerName | None = None,
        hint_weight: float = 100.0,
        adapted_ce_weight: float = 1.0,
        hint_trains_adapter: bool = True,
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        if isinstance(adapted_layer, int) and adapted_layer == 0:
            raise ValueError("adapted_layer must name a teacher block (a zoo stage: 1, 2, ...), got 0 (the stem)")
        if not hint_weight >= 0 or not adapted_ce_weight >= 0:
            raise ValueError(f"hint_weight and adapted_ce_weight must be >= 0, got {hint_weight}, {adapted_ce_weight}")
        self.hint_weight = hint_weight
        self.adapted_ce_weight = adapted_ce_weight
        self.hint_trains_adapter = hint_trains_adapter
        arguments = ("adapted_layer", "student_layer")
        adapted_layer, student_layer = middle_stage_pair(
            teacher, student, adapted_layer, student_layer, arguments, probe_size
        )
        self.adapted_layer = resolve_layer(teacher, adapted_layer, "adapted_layer")
        # copied before any hook is put on the teacher (a deep copy would carry the hooks along)
        self.adapter = copy.deepcopy(teacher.get_submodule(self.adapted_layer)).requires_grad_(True).train()
        self.student_taps = FeatureTaps(student, [student_layer], "student_layer")
        self._adapting, self._adapted_map = False, None
        teacher.get_submodule(self.adapted_layer).register_forward_hook(self._adapt)
        (student_map,) = probe_maps(self.student_taps, probe_size)
        with torch.no_grad(), evaluation_mode(teacher, self.adapter):  # the adapter's BatchNorm statistics stay
            teacher_map, _ = self.adapted_teacher(torch.zeros(2, 3, probe_size, probe_size, device=student_map.device))
        self.regressor = ConvRegressor.between(student_map, teacher_map)

    def _adapt(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        """Forward hook on the teacher's adapted block: inside :meth:`adapted_teacher`, the adaptive copy's output.

        The rest of the teacher gets a copy, so that an in-place operation after the block (a ``ReLU(inplace=True)``)
        does not change the adapted map the hint loss reads. In the teacher's inference copy no BatchNorm after the
        block is folded into it (:func:`~lit_kd.models.inference.fold_batchnorm` leaves hooked layers as they are).
        """
        if not self._adapting:
            return None
        self._adapted_map = self.adapter(*inputs)
        return self._adapted_map.clone()

    def adapted_teacher(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The adapted activation map and the adapted teacher's logits (gradients reach only the adaptive module)."""
        self._adapting = True
        try:
            logits = self.frozen_teacher(images)  # the adapted block's hook is on it too
            adapted_map = self._adapted_map
        finally:
            self._adapting, self._adapted_map = False, None
        if adapted_map is None:
            raise RuntimeError(f"adapted_layer {self.adapted_layer!r} did not run in the teacher's forward pass")
        return adapted_map, logits

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Student cross-entropy, hint loss to the adapted map, and the adapted teacher's cross-entropy."""
        student_logits, (student_map,) = self.student_taps(images)
        adapted_map, adapted_logits = self.adapted_teacher(images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        hint = hint_loss(self.regressor(student_map), adapted_map if self.hint_trains_adapter else adapted_map.detach())
        adapted_ce = F.cross_entropy(adapted_logits, targets)
        loss = cross_entropy + self.hint_weight * hint + self.adapted_ce_weight * adapted_ce
        return {"loss": loss, "ce": cross_entropy, "hint": hint, "adapted_ce": adapted_ce}, student_logits
