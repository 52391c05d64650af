"""The Lightning hooks every lit-kd module shares, the students' and the cGAN's alike."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from lit_kd.runtime.guards import check_learning_rates, refuse_lr_find, stop_on_non_finite_loss
from lit_kd.runtime.manual import broadcast_buffers, load_scalers, save_scalers, step_schedulers
from lit_kd.seeding import reseed_for_batch


class RuntimeModule(LightningModule):
    """A LightningModule whose runs resume exactly, stop on a NaN loss and stay in sync under DDP.

    - Per-batch reseeding: torch is reseeded from ``(seed, epoch, batch, rank)`` before every training batch
      (:func:`~lit_kd.seeding.reseed_for_batch`, the run's seed taken at fit start), so a run resumed mid-epoch
      draws the same noise, attacks and dropout masks as the uninterrupted one.
    - Guards: negative or NaN learning rates are refused before the first update, and a NaN or infinite loss stops
      the run before it reaches the weights (:mod:`lit_kd.runtime.guards`); ``Tuner.lr_find`` is refused under
      manual optimisation.
    - Manual optimisation (:mod:`lit_kd.runtime.manual`): rank 0's buffers are broadcast at every batch, before
      validation and at the end (DDP does not under manual optimisation), epoch schedulers are stepped, and the
      per-optimiser gradient scalers are saved in and restored from checkpoints.

    Subclasses that override a hook call ``super()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._base_seed = 0
        self._batch_idx = 0

    def setup(self, stage: str) -> None:
        """Refuse ``Tuner.lr_find`` under manual optimisation."""
        refuse_lr_find(self)

    def on_fit_start(self) -> None:
        """Refuse negative or NaN learning rates; remember the run's seed as the base of the per-batch seeds."""
        check_learning_rates(self.trainer.optimizers, type(self).__name__)
        self._base_seed = torch.initial_seed()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch from ``(seed, epoch, batch, rank)``; under manual optimisation take rank 0's buffers."""
        reseed_for_batch(self._base_seed, self.current_epoch, batch_idx, self.global_rank, self.trainer.world_size)
        self._batch_idx = batch_idx
        if not self.automatic_optimization:
            broadcast_buffers(self)

    def on_validation_start(self) -> None:
        """Evaluate every rank with rank 0's buffers (manual optimisation; DDP does it for automatic)."""
        if not self.automatic_optimization:
            broadcast_buffers(self)

    def on_train_end(self) -> None:
        """Leave every rank with rank 0's buffers (manual optimisation; DDP does it for automatic)."""
        if not self.automatic_optimization:
            broadcast_buffers(self)

    def on_train_epoch_end(self) -> None:
        """Step epoch-interval LR schedulers under manual optimisation (Lightning steps them for automatic)."""
        if not self.automatic_optimization:
            step_schedulers(self, "epoch")

    def on_before_backward(self, loss: Tensor) -> None:
        """Stop before a NaN or infinite loss reaches the weights (see :mod:`lit_kd.runtime.guards`)."""
        stop_on_non_finite_loss(self, loss)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the per-optimiser gradient scalers of manual optimisation under 16-mixed."""
        save_scalers(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the per-optimiser gradient scalers."""
        load_scalers(self, checkpoint)
