"""A distillation objective composed of weighted loss terms, configured in YAML without a subclass."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lit_kd.losses.terms import TERMS, LossTerm, TermInputs
from lit_kd.methods.base import DistillationModule
from lit_kd.models.features import FeatureTaps, LayerName, probe_maps


class ComposedDistillation(DistillationModule):
    """Distillation whose loss is a sum of weighted terms: ``loss = sum_i weight_i(epoch) * term_i(batch)``.

    Each term (:mod:`lit_kd.losses.terms`: cross-entropy, KD, DKD, DIST, attention transfer, FitNets' hint) declares
    the feature maps it reads; the student and the teacher run once per batch, with one forward hook per distinct
    layer (:class:`~lit_kd.models.features.FeatureTaps`, any network's module paths or zoo feature indices), and
    every term gets the logits, the targets and its own maps. A term's trainable parts (a hint regressor) are sized on
    a probe batch at construction and trained with the student. Each term is logged unweighted as ``train/<name>``
    and weighted as ``train/<name>_weighted``.

    ``CrossEntropyTerm(weight=0.1) + KDTerm(weight=0.9)`` is :class:`~lit_kd.methods.HintonKD`;
    ``CrossEntropyTerm + AttentionTerm(weight=1000)`` is :class:`~lit_kd.methods.AttentionTransfer`;
    ``CrossEntropyTerm + HintTerm(weight=100)`` is :class:`~lit_kd.methods.FitNets` (the same losses and gradients on
    the same batch, tested). ``CrossEntropyTerm + DKDTerm(warmup_epochs=20, standardize=True)`` is DKD with logit
    standardisation.

    Args:
        student: the network being trained (any ``nn.Module``).
        teacher: the teacher's architecture (any ``nn.Module``).
        terms: the loss terms (:class:`~lit_kd.losses.terms.LossTerm` objects; in stored settings, their
            ``{"class_path", "init_args"}`` of a term in :data:`~lit_kd.losses.terms.TERMS`); names must be unique.
        probe_size: image size of the dummy batch that checks the layers and sizes the terms.
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``, ...:
            see :class:`~lit_kd.methods.DistillationModule`.
    """

    hparams_ignore = (*DistillationModule.hparams_ignore, "terms")

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        terms: list[LossTerm],
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        terms = [build_term(term, index) for index, term in enumerate(terms)]
        if not terms:
            raise ValueError("ComposedDistillation: terms is empty; give at least one loss term")
        names = [term.name for term in terms]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"ComposedDistillation: term names {repeated} repeat; give each term its own name")
        for term in terms:
            term.resolve_layers(student, teacher)
        self.student_layers = distinct(layer for term in terms for layer in term.student_layers)
        self.teacher_layers = distinct(layer for term in terms for layer in term.teacher_layers)
        self.student_taps = FeatureTaps(student, self.student_layers, "student_layers")
        self.teacher_taps = FeatureTaps(teacher, self.teacher_layers, "teacher_layers")
        student_maps = probe_maps(self.student_taps, probe_size) if self.student_layers else []
        teacher_maps = probe_maps(self.teacher_taps, probe_size) if self.teacher_layers else []
        for term in terms:
            term.build(*self.maps_of(term, student_maps, teacher_maps))
        self.terms = nn.ModuleList(terms)
        self.hparams["terms"] = [term_settings(term) for term in terms]  # plain values: the checkpoint records them

    def maps_of(
        self, term: LossTerm, student_maps: list[Tensor], teacher_maps: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """The maps ``term`` reads, in the order of its layers."""
        return (
            [student_maps[self.student_layers.index(layer)] for layer in term.student_layers],
            [teacher_maps[self.teacher_layers.index(layer)] for layer in term.teacher_layers],
        )

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Every term on the batch, unweighted and weighted, and their sum as ``loss``."""
        student_logits, student_maps = self.student_taps(images)
        teacher = self.frozen_teacher  # made here, outside teacher_forward's inference mode (ordinary weights)
        teacher_logits, teacher_maps = self.teacher_forward(lambda batch: self.teacher_taps(batch, teacher), images)
        losses: dict[str, Tensor] = {}
        total = student_logits.new_zeros(())
        for term in self.terms:
            own_student_maps, own_teacher_maps = self.maps_of(term, student_maps, teacher_maps)
            value = term(TermInputs(student_logits, teacher_logits, targets, own_student_maps, own_teacher_maps))
            weighted = term.weight_at(self.current_epoch) * value
            losses[term.name], losses[f"{term.name}_weighted"] = value, weighted
            total = total + weighted
        return {"loss": total, **losses}, student_logits


def distinct(layers: Any) -> list[LayerName]:
    """The layers in order of first appearance, each once."""
    found: list[LayerName] = []
    for layer in layers:
        if layer not in found:
            found.append(layer)
    return found


def build_term(term: LossTerm | dict[str, Any], index: int) -> LossTerm:
    """``term`` itself, or the term its stored settings name (only a class of :data:`~lit_kd.losses.terms.TERMS`).

    Raises:
        ValueError: in one line, naming the position and what is wrong (not a term, an unknown class).
    """
    if isinstance(term, LossTerm):
        return term
    if not isinstance(term, dict) or "class_path" not in term:
        raise ValueError(
            f"ComposedDistillation: terms[{index}] is {type(term).__name__}, not a loss term (a "
            f"lit_kd.losses.terms class, e.g. class_path: lit_kd.losses.terms.KDTerm)"
        )
    class_path = str(term["class_path"])
    name = class_path.rsplit(".", 1)[-1]
    if name not in TERMS or class_path not in (name, f"lit_kd.losses.terms.{name}"):
        raise ValueError(
            f"ComposedDistillation: terms[{index}] names {class_path!r}, which is not a lit-kd loss term; the terms "
            f"are {', '.join(f'lit_kd.losses.terms.{known}' for known in TERMS)}"
        )
    return TERMS[name](**dict(term.get("init_args") or {}))


def term_settings(term: LossTerm) -> dict[str, Any]:
    """The ``{"class_path", "init_args"}`` that rebuild ``term``: its class and constructor arguments."""
    return {"class_path": f"{type(term).__module__}.{type(term).__name__}", "init_args": dict(term.hparams)}
