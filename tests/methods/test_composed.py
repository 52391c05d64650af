"""Composed objectives: equal to the single methods on the same batch, errors in one line, terms in the checkpoint."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lit_kd.losses import soft_target_kl
from lit_kd.losses.terms import AttentionTerm, CrossEntropyTerm, DISTTerm, DKDTerm, HintTerm, KDTerm
from lit_kd.methods import (
    AttentionTransfer,
    ComposedDistillation,
    DecoupledKD,
    DISTDistillation,
    FitNets,
    HintonKD,
)
from tests.support.method_cases import tiny_resnet
from tests.support.training import tiny_cifar, tiny_trainer


def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    return tiny_resnet(4, seed=1), tiny_resnet(8, seed=2)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(6, 3, 32, 32, generator=generator), torch.randint(0, 10, (6,), generator=generator)


def losses_and_gradients(module: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.train()
    losses, _ = module.training_losses(*batch())
    losses["loss"].backward()
    assert all(parameter.grad is None for parameter in module.teacher.parameters())
    return losses["loss"].detach(), {name: p.grad.clone() for name, p in module.student.named_parameters()}


def assert_same_objective(single: torch.nn.Module, composed: ComposedDistillation) -> None:
    single_loss, single_gradients = losses_and_gradients(single)
    composed_loss, composed_gradients = losses_and_gradients(composed)
    torch.testing.assert_close(composed_loss, single_loss)
    assert single_gradients.keys() == composed_gradients.keys()
    for name, gradient in single_gradients.items():
        torch.testing.assert_close(composed_gradients[name], gradient, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("fast_teacher", [True, False])
def test_composed_ce_and_kd_equals_hinton_kd(fast_teacher: bool) -> None:
    student, teacher = pair()
    single = HintonKD(copy.deepcopy(student), copy.deepcopy(teacher), temperature=3.0, alpha=0.7)
    terms = [CrossEntropyTerm(weight=0.3), KDTerm(weight=0.7, temperature=3.0)]
    composed = ComposedDistillation(student, teacher, terms, fast_teacher=fast_teacher)
    assert_same_objective(single, composed)


@pytest.mark.parametrize("standardize", [False, True])
def test_composed_ce_and_dkd_with_its_warm_up_equals_decoupled_kd(standardize: bool) -> None:
    student, teacher = pair()
    single = DecoupledKD(copy.deepcopy(student), copy.deepcopy(teacher), beta=2.0, standardize=standardize)
    dkd = DKDTerm(alpha=1.0, beta=2.0, temperature=4.0, standardize=standardize, warmup_epochs=20)
    composed = ComposedDistillation(student, teacher, [CrossEntropyTerm(), dkd])
    assert_same_objective(single, composed)  # epoch 0: both weigh DKD by 1 / 20


def test_composed_ce_and_dist_equals_dist_distillation() -> None:
    student, teacher = pair()
    single = DISTDistillation(copy.deepcopy(student), copy.deepcopy(teacher))  # the CIFAR setting: CE + 2 DIST, tau 4
    composed = ComposedDistillation(student, teacher, [CrossEntropyTerm(), DISTTerm(weight=2.0, temperature=4.0)])
    assert_same_objective(single, composed)


def test_composed_ce_and_attention_equals_attention_transfer() -> None:
    student, teacher = pair()
    single = AttentionTransfer(copy.deepcopy(student), copy.deepcopy(teacher), beta=1000.0)
    composed = ComposedDistillation(student, teacher, [CrossEntropyTerm(), AttentionTerm(weight=1000.0)])
    assert composed.student_layers == [1, 2, 3] and composed.teacher_layers == [1, 2, 3]
    assert_same_objective(single, composed)


def test_composed_ce_and_hint_equals_fitnets_and_trains_the_regressor() -> None:
    student, teacher = pair()
    single = FitNets(copy.deepcopy(student), copy.deepcopy(teacher), hint_layer=2, hint_weight=100.0)
    composed = ComposedDistillation(student, teacher, [CrossEntropyTerm(), HintTerm(weight=100.0, student_layer=2)])
    composed.terms[1].regressor.load_state_dict(single.regressor.state_dict())
    assert_same_objective(single, composed)
    assert composed.terms[1].regressor.regressor[0].weight.grad.abs().sum() > 0
    assert any(p is composed.terms[1].regressor.regressor[0].weight for p in composed.parameters())


def test_each_term_is_logged_unweighted_and_weighted_and_the_loss_is_their_weighted_sum() -> None:
    student, teacher = pair()
    terms = [CrossEntropyTerm(weight=0.5), KDTerm(weight=2.0, name="soft"), AttentionTerm(weight=10.0)]
    module = ComposedDistillation(student, teacher, terms)
    images, targets = batch()
    losses, logits = module.training_losses(images, targets)
    assert set(losses) == {"loss", "ce", "ce_weighted", "soft", "soft_weighted", "at", "at_weighted"}
    with torch.no_grad():
        teacher_logits = module.teacher(images)
    torch.testing.assert_close(losses["ce"], F.cross_entropy(logits, targets))
    torch.testing.assert_close(losses["soft"], soft_target_kl(logits, teacher_logits, 4.0), rtol=1e-4, atol=1e-6)
    p_teacher, log_p_student = (teacher_logits / 4).softmax(1), (logits / 4).log_softmax(1)  # by hand: T^2 KL(t || s)
    by_hand = 16 * (p_teacher * (p_teacher.log() - log_p_student)).sum(1).mean()
    torch.testing.assert_close(losses["soft"], by_hand, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["soft_weighted"], 2.0 * losses["soft"])
    total = 0.5 * losses["ce"] + 2.0 * losses["soft"] + 10.0 * losses["at"]
    torch.testing.assert_close(losses["loss"], total)


def test_a_warm_up_ramps_the_weight_linearly_over_the_first_epochs() -> None:
    term = DKDTerm(weight=1.0, warmup_epochs=20)  # mdistiller: min(epoch / 20, 1) with 1-based epochs
    assert [term.weight_at(epoch) for epoch in (0, 9, 19, 30)] == [0.05, 0.5, 1.0, 1.0]
    student, teacher = pair()
    module = ComposedDistillation(student, teacher, [CrossEntropyTerm(), term])
    losses, _ = module.training_losses(*batch())  # epoch 0 without a trainer
    torch.testing.assert_close(losses["dkd_weighted"], 0.05 * losses["dkd"])


def test_a_fit_logs_every_term_and_the_checkpoint_rebuilds_the_same_terms(tmp_path: Path, cifar_folder: Path) -> None:
    student, teacher = pair()
    terms = [CrossEntropyTerm(weight=0.1), KDTerm(weight=0.9, standardize=True), HintTerm(weight=5.0)]
    module = ComposedDistillation(student, teacher, terms)
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, tiny_cifar(cifar_folder))
    assert {"train/ce", "train/ce_weighted", "train/kd", "train/kd_weighted", "train/hint"} <= set(
        trainer.callback_metrics
    )
    trainer.save_checkpoint(tmp_path / "composed.ckpt")
    stored = torch.load(tmp_path / "composed.ckpt", weights_only=True)["hyper_parameters"]["terms"]
    assert stored[1] == {
        "class_path": "lit_kd.losses.terms.KDTerm",
        "init_args": {"weight": 0.9, "warmup_epochs": 0, "name": None, "temperature": 4.0, "standardize": True},
    }
    restored = ComposedDistillation.load_from_checkpoint(
        tmp_path / "composed.ckpt", student=tiny_resnet(4), teacher=tiny_resnet(8)
    )
    assert [type(term) for term in restored.terms] == [CrossEntropyTerm, KDTerm, HintTerm]
    assert restored.terms[1].standardize and restored.terms[2].weight == 5.0
    for key, value in module.state_dict().items():
        if not key.startswith("teacher."):
            torch.testing.assert_close(restored.state_dict()[key], value)


def test_a_wrong_term_fails_at_construction_in_one_line_naming_it() -> None:
    student, teacher = pair()
    with pytest.raises(ValueError, match=r"terms\[1\] names 'os\.system', which is not a lit-kd loss term") as error:
        ComposedDistillation(student, teacher, [CrossEntropyTerm(), {"class_path": "os.system", "init_args": {}}])
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"terms\[0\] is str, not a loss term"):
        ComposedDistillation(student, teacher, ["kd"])
    with pytest.raises(ValueError, match=r"term names \['kd'\] repeat"):
        ComposedDistillation(student, teacher, [KDTerm(), KDTerm(temperature=2.0)])
    with pytest.raises(ValueError, match="terms is empty"):
        ComposedDistillation(student, teacher, [])
    with pytest.raises(ValueError, match=r"AttentionTerm: student_layers \[1, 2\] and teacher_layers \[1\]"):
        ComposedDistillation(student, teacher, [AttentionTerm(student_layers=[1, 2], teacher_layers=[1])])
    with pytest.raises(ValueError, match="KDTerm: temperature must be > 0"):
        KDTerm(temperature=0.0)
    with pytest.raises(ValueError, match="DKDTerm: weight must be >= 0"):
        DKDTerm(weight=float("nan"))


def test_a_missing_layer_names_the_valid_paths() -> None:
    student, teacher = pair()
    with pytest.raises(ValueError, match=r"stages\.9.*stages\.1") as error:
        ComposedDistillation(student, teacher, [HintTerm(student_layer="stages.9")])
    assert "student_layers" in str(error.value)
