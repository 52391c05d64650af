"""Behaviour every method must have: exact resume (callback state included), NaN stops, DDP keeps ranks in sync."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.support.method_cases import METHOD_CASES, trained_weights
from tests.support.paths import REPO_ROOT, SUPPORT
from tests.support.training import tiny_trainer


@pytest.fixture
def data_folders(cifar_folder: Path, utkface_folder: Path) -> dict[str, Path]:
    return {"cifar10": cifar_folder, "utkface": utkface_folder}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("name", list(METHOD_CASES))
def test_resumed_run_equals_an_uninterrupted_one(
    name: str, precision: str, tmp_path: Path, data_folders: dict[str, Path]
) -> None:
    """Also under bf16 mixed precision (CPU autocast): every method trains with finite losses and resumes exactly."""
    # 4 or 5 steps an epoch (batch 16 of the generated images, or its share): step 7 is in the middle of epoch 1.
    pl.seed_everything(0)
    case = METHOD_CASES[name](tmp_path)
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=7, save_top_k=-1)
    settings = dict(max_epochs=3, limit_val_batches=1, precision=precision)
    trainer = tiny_trainer(tmp_path, callbacks=[*case.callbacks, checkpoints], enable_checkpointing=True, **settings)
    trainer.fit(case.module, case.data(data_folders, 16))
    steps_per_epoch = trainer.num_training_batches
    assert steps_per_epoch in (4, 5) and trainer.global_step == 3 * steps_per_epoch
    assert all(torch.isfinite(value).all() for key, value in trainer.callback_metrics.items() if "loss" in key)
    uninterrupted = trained_weights(case.module)

    pl.seed_everything(0)
    resumed_case = METHOD_CASES[name](tmp_path)
    before = trained_weights(resumed_case.module)
    resumed_trainer = tiny_trainer(tmp_path, callbacks=resumed_case.callbacks, **settings)
    checkpoint = tmp_path / "ckpt" / "step=7.ckpt"
    resumed_trainer.fit(resumed_case.module, resumed_case.data(data_folders, 16), ckpt_path=checkpoint)
    assert resumed_trainer.global_step == trainer.global_step
    resumed = trained_weights(resumed_case.module)

    assert resumed.keys() == uninterrupted.keys()
    # a method may build parts at setup (CRD's embeddings and banks): those are not in ``before``
    assert any(key in before and not torch.equal(before[key], value) for key, value in uninterrupted.items())
    for key, value in uninterrupted.items():
        torch.testing.assert_close(
            resumed[key], value, rtol=0, atol=1e-6, msg=lambda message, key=key, name=name: f"{name}: {key}: {message}"
        )


class PoisonInputs(pl.Callback):
    """Turns the inputs of one training batch (images, or a data-free method's noise) into NaN, as corrupt data or
    an exploding input would."""

    def __init__(self, batch_index: int) -> None:
        self.batch_index = batch_index

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.batch_index:
            inputs = batch if isinstance(batch, torch.Tensor) else batch[0]
            inputs.fill_(float("nan"))
            if getattr(module, "real_pool", None) is not None:  # a CcGAN reads its real images from the training set:
                self.handle = module.generator.register_forward_hook(lambda m, i, output: output * float("nan"))
        elif getattr(self, "handle", None) is not None:  # its discriminator sees NaN fakes in this batch instead
            self.handle.remove()


@pytest.mark.parametrize("name", list(METHOD_CASES))
def test_a_nan_loss_stops_training_with_the_method_and_step(
    name: str, tmp_path: Path, data_folders: dict[str, Path]
) -> None:
    pl.seed_everything(0)
    case = METHOD_CASES[name](tmp_path)
    trainer = tiny_trainer(tmp_path, limit_val_batches=0, callbacks=[*case.callbacks, PoisonInputs(batch_index=2)])
    method = type(case.module).__name__
    with pytest.raises(FloatingPointError, match=rf"{method}: .*global step 2 \(epoch 0, batch 2\)"):
        trainer.fit(case.module, case.data(data_folders, 16))
    # no optimiser step was taken with the NaN loss (BatchNorm's running statistics saw the NaN inputs, though)
    assert all(torch.isfinite(parameter).all() for parameter in case.module.parameters())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_method_keeps_two_ddp_processes_in_sync(tmp_path: Path, data_folders: dict[str, Path]) -> None:
    """One ``torchrun`` launch of two CPU processes (gloo, ``strategy="ddp"``) trains every method for 3 steps."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        str(SUPPORT / "ddp_matrix.py"),
        str(tmp_path),
        *(f"{name}={folder}" for name, folder in data_folders.items()),
    ]
    # the repo root first (tests.support), then the caller's PYTHONPATH: the processes import the lit_kd under test
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for name in METHOD_CASES:
        initial = torch.load(tmp_path / f"{name}.initial.pt")
        ranks = [torch.load(tmp_path / f"{name}.rank{rank}.pt") for rank in (0, 1)]
        # a method may build parts at setup (CRD's embeddings and banks), after the initial weights were read
        assert ranks[0].keys() == ranks[1].keys() and initial.keys() <= ranks[0].keys(), name
        for key, value in ranks[0].items():
            torch.testing.assert_close(
                ranks[1][key],
                value,
                rtol=0,
                atol=0,
                msg=lambda message, key=key, name=name: f"{name}: {key}: {message}",
            )
        assert any(not torch.equal(value, ranks[0][key]) for key, value in initial.items()), f"{name} did not train"
