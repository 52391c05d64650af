"""DIST: distillation of the teacher's inter-class and intra-class relations (Pearson correlations of probabilities)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import dist_terms
from lit_kd.methods.base import DistillationModule


class DISTDistillation(DistillationModule):
    """DIST of Huang et al. (NeurIPS 2022), "Knowledge Distillation from A Stronger Teacher".

    ``loss = ce_weight * CE(student, y) + kd_weight * (beta * inter + gamma * intra)``, where ``inter`` and ``intra``
    are ``tau^2 * (1 - mean Pearson correlation)`` of the probabilities ``softmax(logits / tau)`` across classes and
    across the batch (:func:`~lit_kd.losses.dist_terms`; official objective: hunto/image_classification_sota at
    d9662f7, ``lib/models/losses/kd_loss.py:57``). The defaults are the official CIFAR-100 setting ``kd: dist_t4``:
    ``tau = 4`` (``kd_loss.py:31-33``), KD weight 2 and CE weight 1 (``configs/strategies/distill/
    dist_cifar.yaml:34-36``), ``beta = gamma = 1`` (``kd_loss.py:33``). The ImageNet setting ``kd: dist`` has
    ``tau = 1`` (``kd_loss.py:29-30``, ``configs/strategies/distill/resnet_dist.yaml:28-30``), the default of the loss
    function :func:`~lit_kd.losses.dist_loss` but not of this class. Logged: ``ce``, ``inter``, ``intra`` (unweighted)
    and ``dist`` (``beta * inter + gamma * intra``, before ``kd_weight``).

    ``standardize=True`` standardises both logits before the temperature (Sun et al., 2024; ours for DIST: the
    logit-standardisation code applies it to KD, DKD and MLKD only). Off by default.

    Args:
        student: the network being trained.
        teacher: the teacher's architecture.
        ce_weight: weight of the cross-entropy on the labels (``ori_loss_weight``).
        kd_weight: weight of the DIST term (``kd_loss_weight``).
        beta: weight of the inter-class relation.
        gamma: weight of the intra-class relation.
        temperature: ``tau > 0``.
        standardize: standardise both logits first (off by default).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    memoizes_teacher_logits = True  # its teacher reads only the training images' logits

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        ce_weight: float = 1.0,
        kd_weight: float = 2.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        temperature: float = 4.0,
        standardize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        for name, value in (("ce_weight", ce_weight), ("kd_weight", kd_weight), ("beta", beta), ("gamma", gamma)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.ce_weight = ce_weight
        self.kd_weight = kd_weight
        self.beta = beta
        self.gamma = gamma
        self.temperature = temperature
        self.standardize = standardize

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Weighted cross-entropy plus the weighted inter- and intra-class relation losses."""
        student_logits = self.student(images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        terms = dist_terms(student_logits, self.teacher_logits(images), self.temperature, standardize=self.standardize)
        distillation = self.beta * terms.inter_class + self.gamma * terms.intra_class
        loss = self.ce_weight * cross_entropy + self.kd_weight * distillation
        losses = {
            "loss": loss,
            "ce": cross_entropy,
            "inter": terms.inter_class,
            "intra": terms.intra_class,
            "dist": distillation,
        }
        return losses, student_logits
