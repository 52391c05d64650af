"""Decoupled knowledge distillation (DKD): target-class and non-target-class KD, weighted apart, with a warm-up."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_kd.losses import decoupled_kd_terms, dkd_warmup_factor
from lit_kd.methods.base import DistillationModule


class DecoupledKD(DistillationModule):
    """DKD of Zhao et al. (CVPR 2022), "Decoupled Knowledge Distillation", as the official distiller trains it.

    ``loss = ce_weight * CE(student, y) + min(epoch / warmup_epochs, 1) * (alpha * TCKD + beta * NCKD)``
    (megvii-research/mdistiller at a08d46f, ``mdistiller/distillers/DKD.py:71-79``), with TCKD and NCKD from
    :func:`~lit_kd.losses.decoupled_kd_terms` and the warm-up from :func:`~lit_kd.losses.dkd_warmup_factor`. The
    epoch counts from 1 as mdistiller's (``mdistiller/engine/trainer.py:78-86``): Lightning's epoch ``e`` trains with
    ``min((e + 1) / warmup_epochs, 1)``. Defaults are ``CFG.DKD`` (``mdistiller/engine/cfg.py:163-167``): CE weight
    1.0, ``alpha`` 1.0, ``beta`` 8.0, ``T`` 4.0, 20 warm-up epochs; the official CIFAR-100 configs set ``beta`` per
    pair (2.0 for ResNet-56 -> ResNet-20, ``configs/cifar100/dkd/res56_res20.yaml:18-19``; see
    :mod:`lit_kd.losses.dkd`). Logged: ``ce``, ``tckd``, ``nckd`` (unweighted), ``dkd`` (``alpha * TCKD + beta *
    NCKD``, before the warm-up) and ``dkd_warmup`` (the factor).

    ``standardize=True`` standardises both logits first (Sun et al., 2024, "Logit Standardization in Knowledge
    Distillation"). It leaves the other defaults as they are; the official logit-standardisation runs
    (sunshangquan/logit-standardization-KD at f6e5aa5, ``tools/train.py:115-118`` with ``--base-temp 2 --kd-weight
    9``, ``tools/train.py:103-104``) multiply ``alpha`` and ``beta`` by 9 and set ``T = 2``, keeping the CE weight 1.0
    and the 20-epoch warm-up: ``alpha: 9``, ``beta: 72`` (18 for ResNet-56 -> ResNet-20), ``temperature: 2``.

    Args:
        student: the network being trained.
        teacher: the teacher's architecture.
        ce_weight: weight of the cross-entropy on the labels (``CFG.DKD.CE_WEIGHT``).
        alpha: weight of TCKD (``CFG.DKD.ALPHA``).
        beta: weight of NCKD (``CFG.DKD.BETA``).
        temperature: softening temperature ``T > 0`` (``CFG.DKD.T``).
        warmup_epochs: epochs over which the DKD term ramps up linearly (``CFG.DKD.WARMUP``); 0 turns it off.
        standardize: standardise both logits before the DKD terms (off by default).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    memoizes_teacher_logits = True  # its teacher reads only the training images' logits

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        ce_weight: float = 1.0,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup_epochs: int = 20,
        standardize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        for name, value in (("ce_weight", ce_weight), ("alpha", alpha), ("beta", beta)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not warmup_epochs >= 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.ce_weight = ce_weight
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
        self.warmup_epochs = warmup_epochs
        self.standardize = standardize

    def warmup_factor(self) -> float:
        """The DKD term's weight this epoch: ``min((current_epoch + 1) / warmup_epochs, 1)`` (mdistiller's count)."""
        return dkd_warmup_factor(self.current_epoch + 1, self.warmup_epochs)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Weighted cross-entropy plus the warmed-up ``alpha * TCKD + beta * NCKD``."""
        student_logits = self.student(images)
        cross_entropy = F.cross_entropy(student_logits, targets)
        terms = decoupled_kd_terms(
            student_logits, self.teacher_logits(images), targets, self.temperature, standardize=self.standardize
        )
        distillation = self.alpha * terms.target_class + self.beta * terms.non_target_class
        warmup = self.warmup_factor()
        loss = self.ce_weight * cross_entropy + warmup * distillation
        losses = {
            "loss": loss,
            "ce": cross_entropy,
            "tckd": terms.target_class,
            "nckd": terms.non_target_class,
            "dkd": distillation,
            "dkd_warmup": cross_entropy.new_tensor(warmup),
        }
        return losses, student_logits
