"""An interrupted save never leaves a corrupt checkpoint; the ``lit-kd`` command saves atomically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lit_kd.checkpointing
from lit_kd.checkpointing import AtomicCheckpointIO
from lit_kd.lightning_cli import LitKDCLI
from tests.support.paths import RECIPES

RECIPE = RECIPES / "cifar10" / "vanilla_resnet20.yaml"


def test_a_save_interrupted_mid_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.ones(1000)}, target)

    def write_half_then_die(checkpoint: dict, file) -> None:
        file.write(b"PK\x03\x04 half of a zip archive")
        raise KeyboardInterrupt  # Ctrl+C, or a pre-empted job, in the middle of the write

    monkeypatch.setattr(lit_kd.checkpointing.torch, "save", write_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(1000)}, target)
    monkeypatch.undo()

    restored = torch.load(target)
    assert restored["step"] == 1 and torch.equal(restored["weights"], torch.ones(1000))
    assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]  # the partial file is gone


def test_a_completed_save_replaces_the_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    for step in (1, 2):
        AtomicCheckpointIO().save_checkpoint({"step": step}, target)
    assert torch.load(target) == {"step": 2}
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint({}, target, storage_options={"x": 1})


def test_the_command_line_trainer_saves_atomically(tmp_path: Path, cifar_folder: Path) -> None:
    cli = LitKDCLI(args=["--config", str(RECIPE), "--data.data_dir", str(cifar_folder)], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
