"""Hinton knowledge distillation, optionally on standardised logits (Sun et al., 2024)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import soft_target_kl
from lit_kd.methods.base import DistillationModule


class HintonKD(DistillationModule):
    """Knowledge distillation of Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network".

    ``loss = (1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.
    Defaults ``T = 4``, ``alpha = 0.9`` are the CIFAR settings of RepDistiller/mdistiller (Tian et al., 2020).

    ``standardize=True`` is the logit standardisation of Sun et al. (2024), "Logit Standardization in Knowledge
    Distillation": both logits are z-scored per sample before the temperature
    (:func:`~lit_kd.losses.standardize_logits`). Its official settings (sunshangquan/logit-standardization-KD at
    f6e5aa5) are not this class's defaults; set them with the option: base temperature ``T = 2``
    (``tools/train.py:103,114``), KD weight 9 and CE weight 0.1 (``tools/train.py:104,113``,
    ``mdistiller/engine/cfg.py:64``), i.e. ``temperature: 2``, ``kd_weight: 9``, ``ce_weight: 0.1``
    (``recipes/cifar10/kd_ls_resnet56_resnet20.yaml``). Those weights do not sum to 1, hence the two explicit weights.

    Args:
        student: the network being trained.
        teacher: the teacher's architecture.
        temperature: softening temperature ``T``.
        alpha: weight of the soft-target term (``1 - alpha`` goes to cross-entropy).
        standardize: standardise both logits before the soft-target loss (off by default: KD as Hinton et al.).
        ce_weight: weight of the cross-entropy, overriding ``1 - alpha`` (``None``: ``1 - alpha``).
        kd_weight: weight of the soft-target term, overriding ``alpha`` (``None``: ``alpha``).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    memoizes_teacher_logits = True  # its teacher reads only the training images' logits

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.9,
        standardize: bool = False,
        ce_weight: float | None = None,
        kd_weight: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        for name, weight in (("ce_weight", ce_weight), ("kd_weight", kd_weight)):
            if weight is not None and not weight >= 0:
                raise ValueError(f"{name} must be >= 0 (or None), got {weight}")
        self.temperature = temperature
        self.alpha = alpha
        self.standardize = standardize
        self.ce_weight = 1 - alpha if ce_weight is None else ce_weight
        self.kd_weight = alpha if kd_weight is None else kd_weight

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Cross-entropy on the labels plus the soft-target KL to the teacher."""
        student_logits = self.student(images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        teacher_logits = self.teacher_logits(images)
        distillation = soft_target_kl(student_logits, teacher_logits, self.temperature, standardize=self.standardize)
        loss = self.ce_weight * cross_entropy + self.kd_weight * distillation
        return {"loss": loss, "ce": cross_entropy, "kd": distillation}, student_logits
