from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from lit_kd.losses import soft_target_kl
from lit_kd.methods import HintonKD, SupervisedModule, load_network_weights
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


def make_kd(tmp_path: Path, **kwargs) -> HintonKD:
    teacher_path = str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))
    return HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=teacher_path, **kwargs)


def test_hinton_loss_is_the_weighted_sum_of_ce_and_soft_target_kl(tmp_path: Path) -> None:
    module = make_kd(tmp_path, temperature=3.0, alpha=0.7)
    images, targets = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    module.student.eval()
    losses, logits = module.training_losses(images, targets)
    teacher_logits = module.teacher(images)
    expected_ce = F.cross_entropy(logits, targets)
    expected_kd = soft_target_kl(logits, teacher_logits, 3.0)
    assert torch.allclose(losses["ce"], expected_ce)
    # the teacher runs with its BatchNorm folded into its convolutions: equal to float tolerance
    torch.testing.assert_close(losses["kd"], expected_kd, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["loss"], 0.3 * expected_ce + 0.7 * expected_kd, rtol=1e-4, atol=1e-6)


def test_gradient_reaches_the_student_and_never_the_teacher(tmp_path: Path) -> None:
    module = make_kd(tmp_path)
    losses, _ = module.training_losses(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    losses["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())


def test_teacher_is_loaded_and_never_changes_during_fit(tmp_path: Path, cifar_folder: Path) -> None:
    teacher = TinyNet(width=16)
    module = HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=save_state_dict(teacher, tmp_path / "t.pt"))
    for loaded, original in zip(module.teacher.state_dict().values(), teacher.state_dict().values(), strict=True):
        assert torch.equal(loaded, original)
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    tiny_trainer(tmp_path, max_epochs=2).fit(module, tiny_cifar(cifar_folder))
    after = module.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included: eval mode held
    optimised = {id(p) for group in module.trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in module.teacher.parameters()}


class RecordTeacherMode(pl.Callback):
    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.modes.append(any(m.training for m in module.teacher.modules()))
        assert module.student.training


def test_teacher_stays_in_eval_mode_after_validation(tmp_path: Path, cifar_folder: Path) -> None:
    recorder = RecordTeacherMode()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[recorder])
    trainer.fit(make_kd(tmp_path), tiny_cifar(cifar_folder))
    assert len(recorder.modes) == 10 and not any(recorder.modes)


def test_checkpoint_leaves_the_teacher_out_and_resume_restores_it(tmp_path: Path, cifar_folder: Path) -> None:
    module = make_kd(tmp_path)
    trainer = tiny_trainer(tmp_path)
    trainer.fit(module, tiny_cifar(cifar_folder))
    trainer.save_checkpoint(tmp_path / "kd.ckpt")
    state_dict = torch.load(tmp_path / "kd.ckpt", weights_only=False)["state_dict"]
    assert any(k.startswith("student.") for k in state_dict)
    assert not any(k.startswith("teacher.") for k in state_dict)
    restored = HintonKD.load_from_checkpoint(tmp_path / "kd.ckpt", student=TinyNet(), teacher=TinyNet(width=16))
    assert restored.hparams["teacher_checkpoint"] == str(tmp_path / "teacher.pt")
    for key, value in module.student.state_dict().items():
        assert torch.equal(restored.student.state_dict()[key], value)
    for key, value in module.teacher.state_dict().items():
        assert torch.equal(restored.teacher.state_dict()[key], value)


def test_save_teacher_keeps_it_in_the_checkpoint(tmp_path: Path, cifar_folder: Path) -> None:
    trainer = tiny_trainer(tmp_path, max_steps=1)
    trainer.fit(make_kd(tmp_path, save_teacher=True), tiny_cifar(cifar_folder))
    trainer.save_checkpoint(tmp_path / "kd.ckpt")
    assert any(k.startswith("teacher.") for k in torch.load(tmp_path / "kd.ckpt", weights_only=False)["state_dict"])


def test_supervised_checkpoint_loads_as_a_teacher(tmp_path: Path, cifar_folder: Path) -> None:
    supervised = SupervisedModule(TinyNet(width=16))
    trainer = tiny_trainer(tmp_path, max_steps=2)
    trainer.fit(supervised, tiny_cifar(cifar_folder))
    trainer.save_checkpoint(tmp_path / "teacher.ckpt")
    kd = HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=tmp_path / "teacher.ckpt")
    for key, value in supervised.student.state_dict().items():
        assert torch.equal(kd.teacher.state_dict()[key], value)


def test_wrong_teacher_checkpoint_is_explained(tmp_path: Path) -> None:
    path = save_state_dict(TinyNet(width=4), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit TinyNet"):
        HintonKD(TinyNet(), TinyNet(width=16), teacher_checkpoint=path)
    torch.save({"unrelated.weight": torch.zeros(1)}, tmp_path / "unrelated.pt")
    with pytest.raises(ValueError, match=r"has no weights for TinyNet.*'unrelated\.'"):
        load_network_weights(TinyNet(), tmp_path / "unrelated.pt")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        HintonKD(TinyNet(), TinyNet(), teacher_checkpoint=tmp_path / "missing.ckpt")


def test_missing_teacher_checkpoint_warns(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="teacher_checkpoint is None"):
        HintonKD(TinyNet(), TinyNet())


def test_class_count_mismatch_fails_before_training(tmp_path: Path, cifar_folder: Path) -> None:
    module = HintonKD(TinyNet(), TinyNet(num_classes=100), teacher_checkpoint=None)
    with pytest.raises(ValueError, match=r"teacher \(TinyNet\) outputs 100 classes but the data has 10"):
        tiny_trainer(tmp_path).fit(module, tiny_cifar(cifar_folder))
    with pytest.raises(ValueError, match="num_classes=7 but CIFAR10DataModule has 10"):
        tiny_trainer(tmp_path).fit(SupervisedModule(TinyNet(), num_classes=7), tiny_cifar(cifar_folder))


@pytest.mark.parametrize(("name", "value"), [("temperature", 0.0), ("alpha", 1.5)])
def test_bad_hyperparameters_are_refused(name: str, value: float) -> None:
    with warnings.catch_warnings(), pytest.raises(ValueError, match=name):
        warnings.simplefilter("ignore")
        HintonKD(TinyNet(), TinyNet(), **{name: value})


def test_training_improves_accuracy_on_learnable_data(tmp_path: Path, cifar_folder: Path) -> None:
    torch.manual_seed(0)
    module = SupervisedModule(TinyNet(width=16), optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    trainer = tiny_trainer(tmp_path, max_epochs=15)
    trainer.fit(module, tiny_cifar(cifar_folder, crop_padding=0))
    assert trainer.callback_metrics["val/acc"] > 0.5  # chance is 0.1; classes differ by colour
