from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_kd.methods import HintonKD
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


def make_module(teacher_path: str, teacher_precision: str = "auto") -> HintonKD:
    return HintonKD(
        TinyNet(dropout=0.3), TinyNet(width=16), teacher_checkpoint=teacher_path, teacher_precision=teacher_precision
    )


@pytest.mark.parametrize("teacher_precision", ["32", "bf16"])  # bf16: what "auto" is on a CPU with native bf16
def test_resume_from_a_mid_epoch_checkpoint_equals_an_uninterrupted_run(
    tmp_path: Path, cifar_folder: Path, teacher_precision: str
) -> None:
    teacher_path = str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))
    # 80 images, batch 16: 5 steps an epoch; the checkpoint at step 7 is in the middle of epoch 1.
    pl.seed_everything(0)
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=7, save_top_k=-1)
    uninterrupted = make_module(teacher_path, teacher_precision)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[checkpoints], enable_checkpointing=True)
    trainer.fit(uninterrupted, tiny_cifar(cifar_folder))
    assert trainer.global_step == 15

    pl.seed_everything(0)
    resumed = make_module(teacher_path, teacher_precision)
    resumed_trainer = tiny_trainer(tmp_path, max_epochs=3)
    resumed_trainer.fit(resumed, tiny_cifar(cifar_folder), ckpt_path=tmp_path / "ckpt" / "step=7.ckpt")
    assert resumed_trainer.global_step == 15

    for key, value in uninterrupted.student.state_dict().items():
        torch.testing.assert_close(resumed.student.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)


def test_resumed_run_differs_without_the_checkpoint(tmp_path: Path, cifar_folder: Path) -> None:
    """Guard for the test above: two runs from different starting points do not end equal by accident."""
    teacher_path = str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))
    finals = []
    for seed in (0, 1):
        pl.seed_everything(seed)
        module = make_module(teacher_path)
        tiny_trainer(tmp_path, max_epochs=1).fit(module, tiny_cifar(cifar_folder))
        finals.append(module.student.classifier.weight.detach().clone())
    assert not torch.allclose(finals[0], finals[1])
