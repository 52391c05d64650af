"""FitNets, attention transfer and AMA: losses against hand-computed values, gradients, frozen teachers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lit_kd.losses import ConvRegressor, attention_map, attention_transfer_loss, hint_loss
from lit_kd.methods import ActivationMapAdaptation, AttentionTransfer, FitNets
from lit_kd.models import create_model
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer

# two channels over two positions: sum of squares per position (1 + 9, 4 + 0), mean over channels (5, 2)
STUDENT_MAP = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
TEACHER_MAP = torch.tensor([[[[1.0, 0.0]]]])  # one channel: attention (1, 0)


def test_attention_map_is_the_normalised_channel_mean_of_squares() -> None:
    expected = torch.tensor([[5.0, 2.0]]) / math.sqrt(29)
    assert torch.allclose(attention_map(STUDENT_MAP), expected)
    assert torch.allclose(attention_map(-STUDENT_MAP, p=1), torch.tensor([[4.0, 2.0]]) / math.sqrt(20))


def test_attention_transfer_loss_by_hand() -> None:
    expected = ((5 / math.sqrt(29) - 1) ** 2 + (2 / math.sqrt(29)) ** 2) / 2  # mean over batch x positions
    assert attention_transfer_loss(STUDENT_MAP, TEACHER_MAP).item() == pytest.approx(expected, rel=1e-6)
    assert attention_transfer_loss(STUDENT_MAP, STUDENT_MAP * 3).item() == pytest.approx(0.0, abs=1e-12)


def test_attention_transfer_pools_the_larger_map() -> None:
    student = torch.tensor([[[[1.0, 3.0, 5.0, 7.0], [1.0, 3.0, 5.0, 7.0]]]])  # 2x4 pools to 1x2: (2, 6)
    assert attention_transfer_loss(student, torch.tensor([[[[2.0, 6.0]]]])).item() == pytest.approx(0, abs=1e-12)
    assert attention_transfer_loss(student, torch.tensor([[[[6.0, 2.0]]]])).item() > 0.1


def test_hint_loss_by_hand_and_regressor_shapes() -> None:
    assert hint_loss(torch.zeros(1, 2, 1, 1), torch.tensor([[[[1.0]], [[3.0]]]])).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="teacher map's shape"):
        hint_loss(torch.zeros(1, 2, 1, 1), torch.zeros(1, 3, 1, 1))
    for student_size, teacher_size in ((8, 8), (8, 4), (4, 8), (7, 4)):
        student, teacher = (
            torch.randn(2, 16, student_size, student_size),
            torch.randn(2, 64, teacher_size, teacher_size),
        )
        assert ConvRegressor.between(student, teacher)(student).shape == teacher.shape
    assert ConvRegressor((16, 7, 7), (64, 4, 4)).regressor[0].kernel_size == (4, 4)  # RepDistiller's 1 + s_H - t_H
    with pytest.raises(ValueError, match="4x4 cannot be regressed onto a teacher map of 6x6"):
        ConvRegressor((16, 4, 4), (64, 6, 6))


def make(method, tmp_path: Path, **kwargs):
    torch.manual_seed(0)
    teacher = create_model("resnet14", num_classes=10)
    path = save_state_dict(teacher, tmp_path / "teacher.pt")
    return method(
        create_model("resnet8", num_classes=10),
        create_model("resnet14", num_classes=10),
        teacher_checkpoint=path,
        **kwargs,
    )


def test_fitnets_loss_and_gradients(tmp_path: Path) -> None:
    module = make(FitNets, tmp_path, hint_weight=10.0)
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    module.eval()  # deterministic BN for the hand computation
    losses, logits = module.training_losses(images, targets)
    student = module.student.forward_features(images)
    teacher_map = module.teacher.forward_features(images).features[
        2
    ]  # hint layer 2 is stages.1: RepDistiller's feat[2]
    expected_hint = F.mse_loss(module.regressor(student.features[2]), teacher_map)
    assert torch.allclose(losses["hint"], expected_hint)
    assert torch.allclose(losses["loss"], F.cross_entropy(logits, targets) + 10.0 * expected_hint)
    module.train()
    losses, _ = module.training_losses(images, targets)
    losses["hint"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.regressor.parameters())
    assert module.student.stages[1][0].conv1.weight.grad.abs().sum() > 0  # below the hint layer
    assert module.student.classifier.weight.grad is None  # above it: the hint does not reach
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())


def test_fitnets_trains_the_regressor_never_the_teacher(tmp_path: Path, cifar_folder: Path) -> None:
    module = make(FitNets, tmp_path)
    regressor_before = [p.detach().clone() for p in module.regressor.parameters()]
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(module, tiny_cifar(cifar_folder))
    assert all(not torch.equal(a, b) for a, b in zip(regressor_before, module.regressor.parameters(), strict=True))
    assert all(torch.equal(teacher_before[k], v) for k, v in module.teacher.state_dict().items())


def test_feature_methods_explain_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a feature index needs a lit_kd.models.FeatureNet; TinyNet is not one"):
        FitNets(TinyNet(), create_model("resnet8", num_classes=10), hint_layer=2)
    with pytest.raises(ValueError, match=r"hint_layer must be in 0\.\.3"):
        make(FitNets, tmp_path, hint_layer=4)
    with pytest.raises(ValueError, match="pair up"):
        make(AttentionTransfer, tmp_path, student_layers=[1, 2], teacher_layers=[3])
    with pytest.raises(ValueError, match="adapted_layer must name a teacher block"):
        make(ActivationMapAdaptation, tmp_path, adapted_layer=0)


def official_at(x: torch.Tensor) -> torch.Tensor:
    """szagoruyko/attention-transfer utils.py:18-19 (commit 893df54)."""
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


def official_at_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """utils.py:22-23."""
    return (official_at(x) - official_at(y)).pow(2).mean()


def test_attention_transfer_total_loss_is_the_official_one(tmp_path: Path) -> None:
    """cifar.py:219-223: ``distillation(y_s, y_t, targets, T, alpha=0) + beta * sum(at_loss(g_s, g_t))``: plain CE
    (alpha 0, cifar.py:56) plus beta, not beta / 2, times the summed group losses; beta = 1000 (README.md:68)."""
    module = make(AttentionTransfer, tmp_path)
    assert module.beta == 1000.0
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    module.eval()
    losses, logits = module.training_losses(images, targets)
    student, teacher = module.student.forward_features(images), module.teacher.forward_features(images)
    loss_groups = [official_at_loss(x, y) for x, y in zip(student.features[1:], teacher.features[1:], strict=True)]
    official = F.cross_entropy(logits, targets) + 1000.0 * sum(loss_groups)
    torch.testing.assert_close(losses["loss"], official)
    torch.testing.assert_close(losses["at"], sum(loss_groups))
    module.train()
    module.training_losses(images, targets)[0]["at"].backward()
    assert module.student.stem[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.teacher.parameters())


def test_ama_adapter_starts_as_the_teacher_stage_and_learns_while_the_teacher_stays_frozen(
    tmp_path: Path, cifar_folder: Path
) -> None:
    module = make(ActivationMapAdaptation, tmp_path)
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    module.eval()
    with torch.no_grad():
        adapted_map, adapted_logits = module.adapted_teacher(images)
        assert torch.allclose(adapted_logits, module.teacher(images), atol=1e-5)  # a copy of the replaced stage
        assert torch.allclose(adapted_map, module.teacher.forward_features(images).features[2], atol=1e-5)
    module.train()
    losses, _ = module.training_losses(images, targets)
    losses["hint"].backward(retain_graph=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.adapter.parameters() if p.dim() > 1)
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())
    module.zero_grad()
    losses["adapted_ce"].backward()
    assert module.adapter[0].conv1.weight.grad.abs().sum() > 0  # through the frozen upper teacher stages
    assert module.student.stem[0].weight.grad is None
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    adapter_before = module.adapter[0].conv1.weight.detach().clone()
    tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(module, tiny_cifar(cifar_folder))
    assert not torch.equal(adapter_before, module.adapter[0].conv1.weight)
    assert all(torch.equal(teacher_before[k], v) for k, v in module.teacher.state_dict().items())


def test_ama_hint_stops_at_the_adapted_map_when_it_must_not_train_the_adapter(tmp_path: Path) -> None:
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    hints = []
    for trains in (True, False):
        module = make(ActivationMapAdaptation, tmp_path, hint_trains_adapter=trains).train()
        losses, _ = module.training_losses(images, targets)
        losses["hint"].backward()
        hints.append(losses["hint"].detach())
        assert module.student.stem[0].weight.grad.abs().sum() > 0
        assert module.regressor.regressor[0].weight.grad.abs().sum() > 0
        adapter_grads = [p.grad for p in module.adapter.parameters() if p.dim() > 1]
        if trains:
            assert all(g is not None and g.abs().sum() > 0 for g in adapter_grads)
        else:
            assert all(g is None for g in adapter_grads)
    torch.testing.assert_close(hints[0], hints[1])  # the same loss value; only where its gradient goes differs


def test_ama_adapter_batchnorm_sees_each_training_batch_once_and_nothing_else(tmp_path: Path) -> None:
    """Building the teacher's inference copy runs a probe batch through it; the armed adapter must not see it."""
    module = make(ActivationMapAdaptation, tmp_path)
    module.train()
    norm = module.adapter[0].bn1
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    for step in (1, 2):
        module.training_losses(images, targets)
        assert norm.num_batches_tracked.item() == step
    module.teacher_runner.invalidate()  # a rebuilt copy (e.g. after a checkpoint load) probes again
    module.training_losses(images, targets)
    assert norm.num_batches_tracked.item() == 3
