from __future__ import annotations

import math

import pytest
import torch

from lit_kd.losses import soft_cross_entropy, soft_target_kl


def test_soft_target_kl_matches_hand_computation() -> None:
    student = torch.tensor([[0.0, math.log(3.0)]])  # softmax at T=1: [1/4, 3/4]
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # softmax at T=1: [3/4, 1/4]
    expected = 0.75 * math.log(0.75 / 0.25) + 0.25 * math.log(0.25 / 0.75)
    assert soft_target_kl(student, teacher, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_soft_target_kl_scales_logits_by_temperature_and_multiplies_by_t_squared() -> None:
    student = torch.tensor([[0.0, 2 * math.log(3.0)], [0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0], [0.0, 0.0]])
    per_sample = [0.75 * math.log(3.0) + 0.25 * math.log(1 / 3.0), 0.0]  # T=2 halves the logits
    expected = 4.0 * sum(per_sample) / 2  # T^2, batch mean
    assert soft_target_kl(student, teacher, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_soft_target_kl_gradient_reaches_the_student_only() -> None:
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    soft_target_kl(student, teacher.detach()).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_soft_cross_entropy_matches_hand_computation() -> None:
    student = torch.tensor([[0.0, math.log(3.0)]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    expected = -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("loss", [soft_target_kl, soft_cross_entropy])
def test_bad_temperature_is_refused(loss) -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        loss(torch.zeros(1, 2), torch.zeros(1, 2), temperature=0.0)
