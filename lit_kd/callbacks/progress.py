"""One printed line per training epoch: for runs without a progress bar (piped output, logs, notebooks)."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


class EpochProgress(pl.Callback):
    """One line per training epoch: its number, the mean training loss, the validation accuracy and the seconds.

    ``  epoch 2/6: train loss 1.624, val acc 41.20%, 27 s (54 s in all)``. The loss is the mean of the losses the
    training steps returned; the validation accuracy is ``val/acc`` when a validation ran in the epoch.
    """

    def __init__(self) -> None:
        self.fit_start = self.epoch_start = 0.0
        self.loss_sum, self.steps = 0.0, 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the clock of the whole fit."""
        self.fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the epoch's clock and loss mean."""
        self.epoch_start = time.perf_counter()
        self.loss_sum, self.steps = 0.0, 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Add the step's loss to the epoch's mean."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.loss_sum += float(loss)
            self.steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print the epoch's line (Lightning has run the epoch's validation by now)."""
        now = time.perf_counter()
        parts = [f"  epoch {trainer.current_epoch + 1}/{trainer.max_epochs}:"]
        if self.steps:
            parts.append(f"train loss {self.loss_sum / self.steps:.3f},")
        accuracy = trainer.callback_metrics.get("val/acc")
        if accuracy is not None:
            parts.append(f"val acc {100 * float(accuracy):.2f}%,")
        parts.append(f"{now - self.epoch_start:.0f} s ({now - self.fit_start:.0f} s in all)")
        print(" ".join(parts), flush=True)
