"""When DFAD's generator and student are updated, and at what learning rates."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from lit_kd.callbacks.settings import warn_changed_settings
from lit_kd.runtime.manual import in_second_phase


class GeneratorUpdateSchedule(Callback):
    """Owns the student:generator step ratio of :class:`~lit_kd.methods.DataFreeAdversarialDistillation`.

    Training steps repeat in iterations of ``student_steps`` student updates followed by ``generator_steps``
    generator updates; the defaults 5 and 1 are those of ``DFAD_cifar.py`` (VainF/Data-Free-Adversarial-Distillation).
    A callback runs outside DDP's forward redirection and the autocast context, so it steps no optimiser: it sets
    the learning rates at setup (before the optimisers are built) and answers :meth:`is_generator_step` for each
    global step; the module's ``training_step`` makes the one DDP- and AMP-correct update of that step. The
    module adds one with the defaults when the trainer has none.

    The schedule is a function of the global step, which the trainer restores, so a resumed run continues it where
    it stopped; the ratio is saved in checkpoints and a resume with a different one warns. On resume the restored
    optimiser state, learning rates included, takes precedence over ``student_lr``/``generator_lr``.

    Args:
        student_steps: student updates per iteration (official: 5).
        generator_steps: generator updates per iteration (official: 1).
        student_lr: the student optimiser's learning rate; ``None`` keeps the module's optimiser default (0.1).
        generator_lr: the generator optimiser's learning rate; ``None`` keeps the module's default (1e-3).

    Example:
        >>> schedule = GeneratorUpdateSchedule(student_steps=2)
        >>> [schedule.is_generator_step(step) for step in range(6)]
        [False, False, True, False, False, True]
    """

    def __init__(
        self,
        student_steps: int = 5,
        generator_steps: int = 1,
        student_lr: float | None = None,
        generator_lr: float | None = None,
    ) -> None:
        if student_steps < 1 or generator_steps < 1:
            raise ValueError(
                f"student_steps and generator_steps must be >= 1, got {student_steps} and {generator_steps}"
            )
        for name, lr in (("student_lr", student_lr), ("generator_lr", generator_lr)):
            if lr is not None and not lr > 0:
                raise ValueError(f"{name} must be > 0 or None, got {lr}")
        self.student_steps = student_steps
        self.generator_steps = generator_steps
        self.student_lr = student_lr
        self.generator_lr = generator_lr

    @property
    def steps_per_iteration(self) -> int:
        """Training steps in one iteration (student steps, then generator steps)."""
        return self.student_steps + self.generator_steps

    @staticmethod
    def find(trainer: Trainer) -> GeneratorUpdateSchedule:
        """The trainer's one :class:`GeneratorUpdateSchedule`; raises if it has none or several."""
        found = [callback for callback in trainer.callbacks if isinstance(callback, GeneratorUpdateSchedule)]
        if len(found) != 1:
            raise RuntimeError(
                f"DFAD needs exactly one lit_kd.callbacks.GeneratorUpdateSchedule in Trainer(callbacks=...), found "
                f"{len(found)}"
            )
        return found[0]

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Attach to the module and set its learning rates (before its optimisers are built)."""
        if not hasattr(pl_module, "generator_schedule"):
            raise ValueError(
                f"GeneratorUpdateSchedule needs a method with a generator (DataFreeAdversarialDistillation), got "
                f"{type(pl_module).__name__}"
            )
        pl_module.generator_schedule = self
        if self.student_lr is not None:
            pl_module.student_lr = self.student_lr
        if self.generator_lr is not None:
            pl_module.generator_lr = self.generator_lr

    def is_generator_step(self, step: int) -> bool:
        """Whether global step ``step`` updates the generator (otherwise it updates the student)."""
        return in_second_phase(step, self.student_steps, self.generator_steps)

    def state_dict(self) -> dict[str, Any]:
        """The step ratio and the rates, so the checkpoint records them and a resume can tell if it continues them."""
        return {
            "student_steps": self.student_steps,
            "generator_steps": self.generator_steps,
            "student_lr": self.student_lr,
            "generator_lr": self.generator_lr,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Warn if the checkpoint was written under another step ratio (this run's ratio applies from now on)."""
        saved = (state_dict["student_steps"], state_dict["generator_steps"])
        if saved != (self.student_steps, self.generator_steps):
            rank_zero_warn(
                f"GeneratorUpdateSchedule: the checkpoint was trained with {saved[0]} student : {saved[1]} generator "
                f"steps, this run uses {self.student_steps} : {self.generator_steps} from the restored global step on"
            )
        rates = {"student_lr": self.student_lr, "generator_lr": self.generator_lr}
        warn_changed_settings(type(self).__name__, state_dict, rates)
