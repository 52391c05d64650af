"""When and how fast the feature-map discriminators of an adversarial online method are updated."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_kd.callbacks.settings import warn_changed_settings


class DiscriminatorUpdateSchedule(Callback):
    """Owns the discriminator update schedule of :class:`~lit_kd.methods.OnlineAdversarialFeatureKD`.

    A callback runs outside DDP's forward redirection and the autocast context, so it does not step optimisers
    itself: it sets the discriminators' learning rate at setup and answers :meth:`should_update` for each global
    step and :attr:`steps_per_update`; the module's ``training_step`` does the DDP- and AMP-correct optimiser steps
    and leaves the discriminators' parameters untouched on steps where :meth:`should_update` returns ``False``.

    Args:
        every_n_steps: update the discriminators every ``n``-th training step (1: every step, as in AFD).
        steps_per_update: discriminator optimiser steps on each updating batch (1: the joint step only; ``k > 1``
            adds ``k - 1`` discriminator-only steps on the same batch's features, like a GAN's ``n_critic``).
        start_step: first global step with an update (e.g. let the networks' features settle first).
        stop_step: no updates from this global step on (``None``: until the end).
        lr: discriminator learning rate; ``None`` keeps the module's ``discriminator_lr``.

    Example:
        >>> schedule = DiscriminatorUpdateSchedule(every_n_steps=2, start_step=1)
        >>> [schedule.should_update(step) for step in range(5)]
        [False, True, False, True, False]
    """

    def __init__(
        self,
        every_n_steps: int = 1,
        steps_per_update: int = 1,
        start_step: int = 0,
        stop_step: int | None = None,
        lr: float | None = None,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps}")
        if steps_per_update < 1:
            raise ValueError(f"steps_per_update must be a positive integer, got {steps_per_update}")
        if start_step < 0 or (stop_step is not None and stop_step < start_step):
            raise ValueError(f"need 0 <= start_step <= stop_step, got start_step={start_step}, stop_step={stop_step}")
        if lr is not None and not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.every_n_steps = every_n_steps
        self.steps_per_update = steps_per_update
        self.start_step = start_step
        self.stop_step = stop_step
        self.lr = lr

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Attach to the module (before its optimiser is built, so ``lr`` takes effect)."""
        if not hasattr(pl_module, "discriminator_schedule"):
            raise ValueError(
                f"DiscriminatorUpdateSchedule needs a method with discriminators (OnlineAdversarialFeatureKD), "
                f"got {type(pl_module).__name__}"
            )
        pl_module.discriminator_schedule = self
        if self.lr is not None:
            pl_module.discriminator_lr = self.lr

    def should_update(self, step: int) -> bool:
        """Whether the discriminators take an optimiser step at global step ``step``."""
        if step < self.start_step or (self.stop_step is not None and step >= self.stop_step):
            return False
        return (step - self.start_step) % self.every_n_steps == 0

    def state_dict(self) -> dict[str, Any]:
        """Every setting, so the checkpoint records what it was trained with (the step itself the trainer restores)."""
        return {
            "every_n_steps": self.every_n_steps,
            "steps_per_update": self.steps_per_update,
            "start_step": self.start_step,
            "stop_step": self.stop_step,
            "lr": self.lr,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Warn if this run's settings differ from the checkpoint's (this run's apply from the restored step on)."""
        warn_changed_settings(type(self).__name__, state_dict, self.state_dict())
