"""``EpochProgress`` prints one line per epoch: its number, the mean of the step losses, the validation accuracy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from lit_kd.callbacks import EpochProgress
from lit_kd.methods import SupervisedModule
from tests.support.networks import TinyNet
from tests.support.training import tiny_cifar, tiny_trainer


class StepLosses(Callback):
    """Keeps every training step's loss, per epoch."""

    def __init__(self) -> None:
        self.losses: list[list[float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.losses.append([])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[-1].append(float(outputs["loss"]))


def test_one_line_per_epoch_with_the_mean_step_loss_and_the_validation_accuracy(
    cifar_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = StepLosses()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[EpochProgress(), steps])
    trainer.fit(SupervisedModule(TinyNet()), tiny_cifar(cifar_folder))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  epoch ")]
    assert len(lines) == 2
    pattern = r"  epoch (\d)/2: train loss ([\d.]+), val acc ([\d.]+)%, \d+ s \(\d+ s in all\)"
    for epoch, (line, losses) in enumerate(zip(lines, steps.losses, strict=True), start=1):
        match = re.fullmatch(pattern, line)
        assert match, line
        assert int(match[1]) == epoch and len(losses) == 5  # 80 images in batches of 16
        assert float(match[2]) == pytest.approx(sum(losses) / len(losses), abs=5e-4)
    assert float(match[3]) == pytest.approx(100 * float(trainer.callback_metrics["val/acc"]), abs=5e-3)
