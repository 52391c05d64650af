"""Self-distillation: born-again networks, a network distilled from a trained copy of its own architecture."""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_kd.methods.hinton import HintonKD


class SelfDistillation(HintonKD):
    """Born-again networks of Furlanello et al. (ICML 2018): generation ``g + 1`` learns from generation ``g``.

    The teacher has the student's architecture (checked: same parameter names and shapes). The loss is Hinton KD
    (:class:`~lit_kd.methods.HintonKD`) with born-again defaults ``alpha = 1`` and ``T = 1``: the student matches
    the teacher's output distribution, with no label term and no softening (Furlanello et al., 2018, Sec. 3, as we
    recall it: the paper's text was not at hand to check; ``alpha < 1`` adds the labels back). Allen-Zhu & Li
    (2020) explain the gain as an implicit ensemble. ``lit-kd born-again`` runs several generations in a row
    (:func:`lit_kd.born_again.run_generations`).

    Args:
        student: the network being trained.
        teacher: the previous generation's architecture (the same as the student's).
        temperature: softening temperature ``T``.
        alpha: weight of the soft-target term (``1 - alpha`` goes to cross-entropy).
        **kwargs: ``standardize`` (logit standardisation, see :class:`~lit_kd.methods.HintonKD`),
            ``teacher_checkpoint`` (the previous generation), ``save_teacher``, ``num_classes``, ``optimizer``,
            ``lr_scheduler``.
    """

    def __init__(
        self, student: nn.Module, teacher: nn.Module, temperature: float = 1.0, alpha: float = 1.0, **kwargs: Any
    ) -> None:
        student_shapes = {name: tuple(value.shape) for name, value in student.state_dict().items()}
        teacher_shapes = {name: tuple(value.shape) for name, value in teacher.state_dict().items()}
        if student_shapes != teacher_shapes:
            different = sorted(set(student_shapes.items()) ^ set(teacher_shapes.items()))[:3]
            raise ValueError(
                f"self-distillation needs a teacher of the student's architecture: student {type(student).__name__} "
                f"and teacher {type(teacher).__name__} differ in {different}"
            )
        super().__init__(student=student, teacher=teacher, temperature=temperature, alpha=alpha, **kwargs)
