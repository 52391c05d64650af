"""DKD, DIST and logit standardisation as methods: each loss is the official distiller's combination of the losses.

The loss functions are checked against ports of the official code in ``test_modern_losses.py``; here the methods
must combine them as the official distillers do: mdistiller's ``DKD.forward_train``
(``ce_weight * CE + min(epoch / warmup, 1) * dkd_loss``, epochs counted from 1), the DIST wrapper of
hunto/image_classification_sota (``ori_loss_weight * CE + kd_loss_weight * DIST``), and the KD of
logit-standardization-KD (``ce_weight * CE + kd_weight * kd_loss(normalize(s), normalize(t))``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from lit_kd.losses import dist_loss, dkd_loss, soft_cross_entropy, soft_target_kl
from lit_kd.methods import DecoupledKD, DISTDistillation, EnsembleDistillation, HintonKD, SelfDistillation
from lit_kd.methods.base import DistillationModule
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


def build(method: type[DistillationModule], tmp_path: Path, **kwargs: Any) -> DistillationModule:
    """``method`` with a tiny student and a saved teacher, run as it is (no folded copy: exact teacher logits)."""
    torch.manual_seed(0)
    teacher_path = str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))
    return method(TinyNet(), TinyNet(width=16), teacher_checkpoint=teacher_path, fast_teacher=False, **kwargs)


def batch(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(size, 3, 32, 32, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def at_epoch(module: DistillationModule, tmp_path: Path, epoch: int) -> DistillationModule:
    """Attach a trainer whose ``current_epoch`` is ``epoch`` (counted from 0, as Lightning does)."""
    trainer = tiny_trainer(tmp_path)
    trainer.fit_loop.epoch_progress.current.completed = epoch
    module.trainer = trainer
    assert module.current_epoch == epoch
    return module


def official_dkd_objective(student, teacher, targets, epoch, ce_weight, alpha, beta, temperature, warmup):
    """mdistiller ``DKD.forward_train`` (``mdistiller/distillers/DKD.py:71-79``): ``loss_ce + loss_dkd``."""
    loss_ce = ce_weight * F.cross_entropy(student, targets)
    loss_dkd = min(epoch / warmup, 1.0) * dkd_loss(student, teacher, targets, alpha, beta, temperature)
    return loss_ce + loss_dkd


# ------------------------------------------------------------------------------------------------------------- DKD
@pytest.mark.parametrize(("epoch", "factor"), [(0, 1 / 20), (9, 0.5), (19, 1.0), (30, 1.0)])
def test_dkd_loss_is_the_official_objective_with_its_warmup(tmp_path: Path, epoch: int, factor: float) -> None:
    module = at_epoch(
        build(DecoupledKD, tmp_path, ce_weight=0.5, alpha=2.0, beta=3.0, temperature=2.0), tmp_path, epoch
    )
    images, targets = batch()
    losses, logits = module.training_losses(images, targets)
    teacher = module.teacher(images)
    expected = official_dkd_objective(logits, teacher, targets, epoch + 1, 0.5, 2.0, 3.0, 2.0, 20)
    torch.testing.assert_close(losses["loss"], expected)
    assert losses["dkd_warmup"].item() == pytest.approx(factor)
    torch.testing.assert_close(losses["ce"], F.cross_entropy(logits, targets))
    torch.testing.assert_close(losses["dkd"], dkd_loss(logits, teacher, targets, 2.0, 3.0, 2.0))
    torch.testing.assert_close(losses["dkd"], 2.0 * losses["tckd"] + 3.0 * losses["nckd"])
    assert set(losses) == {"loss", "ce", "tckd", "nckd", "dkd", "dkd_warmup"}


def test_dkd_defaults_are_mdistillers_and_a_zero_warmup_is_off(tmp_path: Path) -> None:
    module = build(DecoupledKD, tmp_path)
    assert (module.ce_weight, module.alpha, module.beta, module.temperature) == (1.0, 1.0, 8.0, 4.0)
    assert (module.warmup_epochs, module.standardize) == (20, False)
    assert module.warmup_factor() == pytest.approx(1 / 20)  # no trainer: epoch 0, the first epoch (1 / 20)
    assert build(DecoupledKD, tmp_path, warmup_epochs=0).warmup_factor() == 1.0


class RecordWarmup(pl.Callback):
    def __init__(self) -> None:
        self.factors: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.factors[trainer.current_epoch] = trainer.callback_metrics["train/dkd_warmup"].item()


def test_dkd_warmup_follows_the_trainers_epoch(tmp_path: Path, cifar_folder: Path) -> None:
    module = build(DecoupledKD, tmp_path, warmup_epochs=4)
    record = RecordWarmup()
    trainer = tiny_trainer(tmp_path, max_epochs=3, limit_train_batches=2, limit_val_batches=0, callbacks=[record])
    trainer.fit(module, tiny_cifar(cifar_folder))
    assert record.factors == pytest.approx({0: 0.25, 1: 0.5, 2: 0.75})


# ------------------------------------------------------------------------------------------------------------ DIST
def test_dist_loss_is_the_official_objective(tmp_path: Path) -> None:
    module = build(DISTDistillation, tmp_path, ce_weight=0.5, kd_weight=3.0, beta=2.0, gamma=0.5, temperature=3.0)
    images, targets = batch()
    losses, logits = module.training_losses(images, targets)
    teacher = module.teacher(images)
    distillation = dist_loss(logits, teacher, beta=2.0, gamma=0.5, temperature=3.0)
    # kd_loss.py:57: ori_loss * ori_loss_weight + kd_loss * kd_loss_weight
    torch.testing.assert_close(losses["loss"], F.cross_entropy(logits, targets) * 0.5 + distillation * 3.0)
    torch.testing.assert_close(losses["dist"], distillation)
    torch.testing.assert_close(losses["dist"], 2.0 * losses["inter"] + 0.5 * losses["intra"])
    assert set(losses) == {"loss", "ce", "inter", "intra", "dist"}


def test_dist_defaults_are_the_official_cifar_setting(tmp_path: Path) -> None:
    module = build(DISTDistillation, tmp_path)
    settings = (module.ce_weight, module.kd_weight, module.beta, module.gamma, module.temperature)
    assert settings == (1.0, 2.0, 1.0, 1.0, 4.0) and module.standardize is False


# ------------------------------------------------------------------------------------------------- both methods
@pytest.mark.parametrize("fast_teacher", [False, True], ids=["teacher", "folded_teacher"])
@pytest.mark.parametrize("method", [DecoupledKD, DISTDistillation, HintonKD])
def test_gradient_reaches_the_student_and_never_the_teacher(tmp_path: Path, method: type, fast_teacher: bool) -> None:
    torch.manual_seed(0)
    teacher_path = str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))
    module = method(TinyNet(), TinyNet(width=16), teacher_checkpoint=teacher_path, fast_teacher=fast_teacher)
    losses, _ = module.training_losses(*batch())
    losses["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())
    assert all(p.grad is None for p in module.frozen_teacher.parameters())


def hand_standardized(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``normalize`` (logit-standardization-KD ``mdistiller/distillers/KD.py:7-10``)."""

    def normalize(logit: torch.Tensor) -> torch.Tensor:
        return (logit - logit.mean(dim=-1, keepdim=True)) / (1e-7 + logit.std(dim=-1, keepdim=True))

    return normalize(student), normalize(teacher)


def test_standardized_dkd_is_dkd_on_standardized_logits(tmp_path: Path) -> None:
    images, targets = batch()
    plain, _ = at_epoch(build(DecoupledKD, tmp_path), tmp_path, 25).training_losses(images, targets)
    module = at_epoch(
        build(DecoupledKD, tmp_path, standardize=True, alpha=9.0, beta=72.0, temperature=2.0), tmp_path, 25
    )
    losses, logits = module.training_losses(images, targets)
    student, teacher = hand_standardized(logits, module.teacher(images))
    expected = F.cross_entropy(logits, targets) + dkd_loss(student, teacher, targets, 9.0, 72.0, 2.0)
    torch.testing.assert_close(losses["loss"], expected)
    same_settings, _ = at_epoch(build(DecoupledKD, tmp_path, standardize=True), tmp_path, 25).training_losses(
        images, targets
    )
    assert not torch.isclose(same_settings["dkd"], plain["dkd"])


def test_standardized_dist_is_dist_on_standardized_logits(tmp_path: Path) -> None:
    images, targets = batch()
    plain, _ = build(DISTDistillation, tmp_path).training_losses(images, targets)
    module = build(DISTDistillation, tmp_path, standardize=True)
    losses, logits = module.training_losses(images, targets)
    student, teacher = hand_standardized(logits, module.teacher(images))
    torch.testing.assert_close(losses["dist"], dist_loss(student, teacher, temperature=4.0))
    torch.testing.assert_close(losses["loss"], F.cross_entropy(logits, targets) + 2.0 * losses["dist"])
    assert not torch.isclose(losses["dist"], plain["dist"])


def test_hinton_kd_with_the_official_logit_standardisation_settings(tmp_path: Path) -> None:
    """logit-standardization-KD ``KD.forward_train`` (``mdistiller/distillers/KD.py:38-41``): 0.1 CE + 9 KD, T = 2."""
    images, targets = batch()
    plain, _ = build(HintonKD, tmp_path, temperature=2.0).training_losses(images, targets)
    module = build(HintonKD, tmp_path, standardize=True, temperature=2.0, ce_weight=0.1, kd_weight=9.0)
    losses, logits = module.training_losses(images, targets)
    student, teacher = hand_standardized(logits, module.teacher(images))
    kd = soft_target_kl(student, teacher, 2.0)
    torch.testing.assert_close(losses["kd"], kd)
    torch.testing.assert_close(losses["loss"], 0.1 * F.cross_entropy(logits, targets) + 9.0 * kd)
    assert not torch.isclose(losses["kd"], plain["kd"])


def test_hinton_kd_weights_default_to_alpha(tmp_path: Path) -> None:
    module = build(HintonKD, tmp_path, alpha=0.7)
    assert (module.ce_weight, module.kd_weight) == (pytest.approx(0.3), 0.7) and module.standardize is False
    images, targets = batch()
    losses, logits = module.training_losses(images, targets)
    torch.testing.assert_close(losses["loss"], 0.3 * losses["ce"] + 0.7 * losses["kd"])


def test_standardize_passes_through_ensemble_and_self_distillation(tmp_path: Path) -> None:
    images, targets = batch()
    paths = [str(save_state_dict(TinyNet(), tmp_path / f"member{index}.pt")) for index in range(2)]
    ensemble = EnsembleDistillation(TinyNet(), [TinyNet(), TinyNet()], teacher_checkpoints=paths, standardize=True)
    losses, logits = ensemble.training_losses(images, targets)
    student, teacher = hand_standardized(logits, ensemble.teacher(images))
    torch.testing.assert_close(losses["kd"], soft_target_kl(student, teacher, 4.0), rtol=1e-4, atol=1e-6)

    previous = str(save_state_dict(TinyNet(), tmp_path / "previous.pt"))
    born_again = SelfDistillation(TinyNet(), TinyNet(), teacher_checkpoint=previous, standardize=True)
    assert born_again.standardize is True and born_again.hparams["standardize"] is True
    losses, logits = born_again.training_losses(images, targets)
    student, teacher = hand_standardized(logits, born_again.teacher(images))
    torch.testing.assert_close(losses["kd"], soft_target_kl(student, teacher, 1.0), rtol=1e-4, atol=1e-6)


def test_soft_cross_entropy_standardize_is_the_loss_on_standardized_logits() -> None:
    generator = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(6, 10, generator=generator), 5 * torch.randn(6, 10, generator=generator) + 3
    standardized = soft_cross_entropy(student, teacher, 3.0, standardize=True)
    torch.testing.assert_close(standardized, soft_cross_entropy(*hand_standardized(student, teacher), 3.0))
    assert not torch.isclose(standardized, soft_cross_entropy(student, teacher, 3.0))
    with pytest.raises(ValueError, match="temperature"):
        soft_cross_entropy(student, teacher, 0.0, standardize=True)


# -------------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("method", "name", "value"),
    [
        (DecoupledKD, "ce_weight", -1.0),
        (DecoupledKD, "alpha", -0.5),
        (DecoupledKD, "beta", -8.0),
        (DecoupledKD, "temperature", 0.0),
        (DecoupledKD, "temperature", -4.0),
        (DecoupledKD, "warmup_epochs", -1),
        (DISTDistillation, "ce_weight", -1.0),
        (DISTDistillation, "kd_weight", -2.0),
        (DISTDistillation, "beta", -1.0),
        (DISTDistillation, "gamma", -1.0),
        (DISTDistillation, "temperature", 0.0),
        (HintonKD, "ce_weight", -0.1),
        (HintonKD, "kd_weight", -9.0),
        (EnsembleDistillation, "temperature", 0.0),
    ],
)
def test_bad_hyperparameters_are_refused_by_name(method: type, name: str, value: float) -> None:
    networks = ([TinyNet()],) if method is EnsembleDistillation else (TinyNet(),)
    with warnings.catch_warnings(), pytest.raises(ValueError, match=name):
        warnings.simplefilter("ignore")
        method(TinyNet(), *networks, **{name: value})
