"""Loss terms to compose a distillation objective from, in Python or in YAML.

A term is a small module that declares what it reads (the student's and the teacher's logits, feature maps at
module paths, the targets) and returns its unweighted value; its ``weight``, with an optional linear warm-up, is
applied by :class:`~lit_kd.methods.ComposedDistillation`, which runs the networks once and feeds every term. Each term
calls the same loss function as the method it comes from (:class:`~lit_kd.methods.HintonKD`, ``FitNets``,
``AttentionTransfer``, DKD, DIST), so a composed objective equals that method on the same batch.

Example (YAML, ``model.init_args.terms``)::

    terms:
      - class_path: lit_kd.losses.terms.CrossEntropyTerm
      - class_path: lit_kd.losses.terms.KDTerm
        init_args: {weight: 0.9, temperature: 4.0}
      - class_path: lit_kd.losses.terms.AttentionTerm
        init_args: {weight: 1000.0}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from lightning.pytorch.core.mixins import HyperparametersMixin
from torch import Tensor, nn

from lit_kd.losses.attention_transfer import attention_transfer_loss
from lit_kd.losses.dist import dist_loss
from lit_kd.losses.dkd import dkd_loss
from lit_kd.losses.fitnets import ConvRegressor, hint_loss
from lit_kd.losses.kd import soft_target_kl
from lit_kd.models.features import LayerName, middle_stage_pair, stage_pairs


@dataclass
class TermInputs:
    """What one batch gives the terms: logits, targets, and each term's own feature maps (in its layers' order)."""

    student_logits: Tensor
    teacher_logits: Tensor
    targets: Tensor
    student_maps: list[Tensor]
    teacher_maps: list[Tensor]


class LossTerm(HyperparametersMixin, nn.Module):
    """A weighted term of a composed objective: ``weight * warm-up(epoch) * value(inputs)``.

    Subclasses set :attr:`default_name`, implement :meth:`forward` (the unweighted value) and, if they read feature
    maps, set :attr:`student_layers`/:attr:`teacher_layers` (module paths or zoo feature indices) in
    :meth:`resolve_layers`, and size their trainable parts in :meth:`build`.

    Args:
        weight: the term's weight (>= 0).
        warmup_epochs: ramp the weight up linearly over this many epochs, ``min((epoch + 1) / warmup_epochs, 1)``
            with Lightning's 0-based epoch: DKD's warm-up (``mdistiller/distillers/DKD.py:72``, 1-based epochs).
            0 (default): no warm-up.
        name: the term's log key (``train/<name>``); by default :attr:`default_name`.

    Every constructor argument, the subclass's included, is in :attr:`hparams` (Lightning's ``save_hyperparameters``),
    which is how a composed module stores its terms in a checkpoint.
    """

    default_name: ClassVar[str] = "term"

    def __init__(self, weight: float = 1.0, warmup_epochs: int = 0, name: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not weight >= 0:
            raise ValueError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        if not warmup_epochs >= 0:
            raise ValueError(f"{type(self).__name__}: warmup_epochs must be >= 0, got {warmup_epochs}")
        self.weight, self.warmup_epochs = float(weight), int(warmup_epochs)
        self.name = name or self.default_name
        self.student_layers: list[LayerName] = []
        self.teacher_layers: list[LayerName] = []

    def weight_at(self, epoch: int) -> float:
        """The weight at Lightning epoch ``epoch`` (0-based), warm-up included.

        Example:
            >>> [KDTerm(weight=2.0, warmup_epochs=4).weight_at(epoch) for epoch in (0, 1, 3, 9)]
            [0.5, 1.0, 2.0, 2.0]
        """
        if self.warmup_epochs == 0:
            return self.weight
        return self.weight * min((epoch + 1) / self.warmup_epochs, 1.0)

    def resolve_layers(self, student: nn.Module, teacher: nn.Module) -> None:
        """Set :attr:`student_layers` and :attr:`teacher_layers` for these networks (none by default)."""

    def build(self, student_maps: list[Tensor], teacher_maps: list[Tensor]) -> None:
        """Make the term's trainable parts from a probe batch's maps (a regressor's size); nothing by default."""

    def forward(self, inputs: TermInputs) -> Tensor:
        """The unweighted value of the term on one batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(inputs)")


class CrossEntropyTerm(LossTerm):
    """Cross-entropy of the student's logits on the labels."""

    default_name = "ce"

    def forward(self, inputs: TermInputs) -> Tensor:
        """``CE(student_logits, targets)``."""
        return F.cross_entropy(inputs.student_logits, inputs.targets)


class KDTerm(LossTerm):
    """Hinton et al.'s soft-target KL, ``T^2 * KL(teacher_T || student_T)`` (:func:`~lit_kd.losses.soft_target_kl`).

    Args:
        temperature: softening temperature (4, as :class:`~lit_kd.methods.HintonKD`).
        standardize: z-score both logits first (logit standardisation, Sun et al., 2024); off by default.
        **kwargs: ``weight``, ``warmup_epochs``, ``name``.
    """

    default_name = "kd"

    def __init__(self, temperature: float = 4.0, standardize: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"KDTerm: temperature must be > 0, got {temperature}")
        self.temperature, self.standardize = temperature, standardize

    def forward(self, inputs: TermInputs) -> Tensor:
        """The soft-target KL between the student's and the teacher's logits."""
        return soft_target_kl(
            inputs.student_logits, inputs.teacher_logits, self.temperature, standardize=self.standardize
        )


class DKDTerm(LossTerm):
    """Decoupled KD, ``alpha * TCKD + beta * NCKD`` (:func:`~lit_kd.losses.dkd_loss`; Zhao et al., CVPR 2022).

    The official objective is ``CE + min(epoch / 20, 1) * dkd``: compose :class:`CrossEntropyTerm` with
    ``DKDTerm(warmup_epochs=20)`` (``mdistiller/engine/cfg.py:162-167``; the default here is no warm-up, as for every
    term, so set it).

    Args:
        alpha: TCKD weight (1, ``mdistiller/engine/cfg.py:164``).
        beta: NCKD weight (8, ``mdistiller/engine/cfg.py:165``).
        temperature: softening temperature (4, ``mdistiller/engine/cfg.py:166``).
        standardize: logit standardisation first; off by default.
        **kwargs: ``weight``, ``warmup_epochs``, ``name``.
    """

    default_name = "dkd"

    def __init__(
        self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, standardize: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not alpha >= 0 or not beta >= 0 or not temperature > 0:
            raise ValueError(f"DKDTerm: need alpha, beta >= 0 and temperature > 0, got {alpha}, {beta}, {temperature}")
        self.alpha, self.beta, self.temperature, self.standardize = alpha, beta, temperature, standardize

    def forward(self, inputs: TermInputs) -> Tensor:
        """DKD's distillation term on the batch."""
        return dkd_loss(
            inputs.student_logits,
            inputs.teacher_logits,
            inputs.targets,
            self.alpha,
            self.beta,
            self.temperature,
            standardize=self.standardize,
        )


class DISTTerm(LossTerm):
    """DIST's inter- and intra-class relation loss (:func:`~lit_kd.losses.dist_loss`; Huang et al., NeurIPS 2022).

    Args:
        beta: inter-class weight (1, ``dist_kd.py:22``).
        gamma: intra-class weight (1, ``dist_kd.py:22``).
        temperature: ``tau`` (1, ``dist_kd.py:22``; the CIFAR setting is 4 with term weight 2, ``dist_cifar.yaml``).
        standardize: logit standardisation first (ours for DIST); off by default.
        **kwargs: ``weight``, ``warmup_epochs``, ``name``.
    """

    default_name = "dist"

    def __init__(
        self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0, standardize: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not beta >= 0 or not gamma >= 0 or not temperature > 0:
            raise ValueError(f"DISTTerm: need beta, gamma >= 0 and temperature > 0, got {beta}, {gamma}, {temperature}")
        self.beta, self.gamma, self.temperature, self.standardize = beta, gamma, temperature, standardize

    def forward(self, inputs: TermInputs) -> Tensor:
        """DIST's relation loss on the batch."""
        return dist_loss(
            inputs.student_logits,
            inputs.teacher_logits,
            self.beta,
            self.gamma,
            self.temperature,
            standardize=self.standardize,
        )


class AttentionTerm(LossTerm):
    """Attention transfer, ``sum_j attention_transfer_loss(s_j, t_j)`` over paired maps (as ``AttentionTransfer``).

    Args:
        p: exponent of the attention map (2, szagoruyko/attention-transfer ``utils.py:19``).
        student_layers: the student's maps (module paths or zoo feature indices); by default every stage output
            (:func:`~lit_kd.models.features.spatial_stages` for any network), paired from the deepest back.
        teacher_layers: the teacher's maps, paired one to one; by default every stage output.
        **kwargs: ``weight`` (``AttentionTransfer``'s ``beta``: 1000 there), ``warmup_epochs``, ``name``.
    """

    default_name = "at"

    def __init__(
        self,
        p: float = 2.0,
        student_layers: list[LayerName] | None = None,
        teacher_layers: list[LayerName] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not p > 0:
            raise ValueError(f"AttentionTerm: p must be > 0, got {p}")
        self.p, self.requested = p, (student_layers, teacher_layers)

    def resolve_layers(self, student: nn.Module, teacher: nn.Module) -> None:
        """The requested layers, or every stage output paired from the deepest back; they must pair one to one."""
        self.student_layers, self.teacher_layers = stage_pairs(student, teacher, *self.requested)
        if len(self.student_layers) != len(self.teacher_layers) or not self.student_layers:
            raise ValueError(
                f"AttentionTerm: student_layers {self.student_layers} and teacher_layers {self.teacher_layers} must "
                "pair up one to one (same non-zero length)"
            )

    def forward(self, inputs: TermInputs) -> Tensor:
        """The summed attention-transfer losses of the paired maps."""
        pairs = zip(inputs.student_maps, inputs.teacher_maps, strict=True)
        return sum(attention_transfer_loss(s, t, self.p) for s, t in pairs)


class HintTerm(LossTerm):
    """FitNets' hint, ``MSE(regressor(s), t)`` with a trained :class:`~lit_kd.losses.ConvRegressor` (as ``FitNets``).

    Args:
        student_layer: the student's hint map (module path or zoo feature index); by default the middle stage, as
            ``FitNets``.
        teacher_layer: the teacher's guided map; by default ``student_layer`` if named, else the teacher's middle.
        **kwargs: ``weight`` (``FitNets``' ``hint_weight``: 100 there), ``warmup_epochs``, ``name``.
    """

    default_name = "hint"

    def __init__(
        self, student_layer: LayerName | None = None, teacher_layer: LayerName | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.requested = (student_layer, teacher_layer)
        self.regressor: ConvRegressor | None = None

    def resolve_layers(self, student: nn.Module, teacher: nn.Module) -> None:
        """The named layers, else each network's middle stage (zoo: ``2``), as ``FitNets``."""
        arguments = ("student_layer", "teacher_layer")
        student_layer, teacher_layer = middle_stage_pair(student, teacher, *self.requested, arguments)
        self.student_layers, self.teacher_layers = [student_layer], [teacher_layer]

    def build(self, student_maps: list[Tensor], teacher_maps: list[Tensor]) -> None:
        """A regressor from the student's map shape to the teacher's."""
        self.regressor = ConvRegressor.between(student_maps[0], teacher_maps[0])

    def forward(self, inputs: TermInputs) -> Tensor:
        """The hint loss between the regressed student map and the teacher map."""
        return hint_loss(self.regressor(inputs.student_maps[0]), inputs.teacher_maps[0])


#: The terms a composed objective may be built from by name in stored settings (a checkpoint never names other code).
TERMS: dict[str, type[LossTerm]] = {
    term.__name__: term for term in (CrossEntropyTerm, KDTerm, DKDTerm, DISTTerm, AttentionTerm, HintTerm)
}
