"""benchmarks/parity_bss.py's adapter against a hand-written BSS step: it finds equality, and it finds mutations.

The reference here is a stand-in "checkout" written in this test from the paper's definitions (Heo et al., AAAI
2019: base samples both networks classify correctly, ranked by their disagreement; a target class drawn by the
teacher's probabilities; steps of ``alpha (f_b - f_k + 1e-4) grad / ||grad||`` while the teacher still predicts the
base class; soft cross-entropy on clean and boundary samples), not the official code. It has the official script's
shape (a ``train_attack_KD`` function over the script's globals, the schedule in a ``for epoch`` loop, an
``AttackBSS`` class), so the benchmark drives it exactly as it drives the official checkout.
"""

from __future__ import annotations

import copy
import importlib
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.support.paths import BENCHMARKS

SCRIPT_SOURCE = """
import torch
import torch.nn.functional as F

temperature = 3
attack_size = 64
max_epoch = 80
attack = AttackBSS(targeted=True, num_steps=10, max_epsilon=16, step_alpha=0.3, cuda=True, norm=2)


def train_attack_KD(t_net, s_net, ratio, ratio_attack, epoch):
    for inputs, targets in trainloader:
        optimizer.zero_grad()
        out_s, out_t = s_net(inputs), t_net(inputs)
        soft_t = F.softmax(out_t / temperature, 1)
        kd = -(soft_t * F.log_softmax(out_s / temperature, 1)).sum(1).mean()
        loss = F.cross_entropy(out_s, targets) + ratio * kd
        base = ((out_t.argmax(1) == targets) & (out_s.argmax(1) == targets)).nonzero()[:, 0]
        if ratio_attack > 0 and len(base) > 0:
            if len(base) > attack_size:
                gap = (F.softmax(out_t[base], 1) - F.softmax(out_s[base], 1)).detach() ** 2
                score = gap.sum(1) - gap.gather(1, targets[base, None])[:, 0]
                base = base[score.argsort(descending=True)[:attack_size]]
            probs, ranked = F.softmax(out_t[base], 1).detach().sort(1, descending=True)
            threshold = probs[:, 1:].sum(1) * torch.rand([len(base)]).cuda()
            first = (probs[:, 1:].cumsum(1) >= threshold[:, None]).int().argmax(1)
            boundary = attack.run(t_net, inputs[base].detach(), ranked[:, 1:].gather(1, first[:, None])[:, 0])
            soft_b = F.softmax(t_net(boundary) / temperature, 1)
            boundary_kd = -(soft_b * F.log_softmax(s_net(boundary) / temperature, 1)).sum(1).mean()
            loss = loss + ratio_attack * boundary_kd
        loss.backward()
        optimizer.step()


for epoch in range(1, max_epoch + 1):
    ratio = max(3 * (1 - epoch / max_epoch), 0) + 1
    attack_ratio = max(2 * (1 - 4 / 3 * epoch / max_epoch), 0)
    train_attack_KD(t_net, s_net, ratio, attack_ratio, epoch)
"""

ATTACK_SOURCE = """
import torch


class AttackBSS:
    def __init__(self, targeted=True, max_epsilon=16, norm=2, step_alpha=0.3, num_steps=10, cuda=True):
        self.step_alpha, self.num_steps = step_alpha, num_steps

    def run(self, model, input, target):
        input_adv = input.clone()
        base = model(input_adv).argmax(1)
        for _ in range(self.num_steps):
            input_adv.requires_grad_(True)
            logits = model(input_adv)
            active = (logits.argmax(1) == base).view(-1, 1, 1, 1)
            if not active.any():
                break
            margin = logits.gather(1, base[:, None]) - logits.gather(1, target[:, None])
            (grad,) = torch.autograd.grad(-margin.sum(), input_adv)
            norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            step = self.step_alpha * active * (margin.detach().view(-1, 1, 1, 1) + 1e-4) * grad / norm
            input_adv = torch.clamp(input_adv.detach() + step, -2.5, 2.5)
        return input_adv.detach()
"""

#: Changes to the stand-in that the comparison must find: (what, old text, new text).
MUTATIONS = {
    "attack step size x1.5": (ATTACK_SOURCE, "step = self.step_alpha", "step = 1.5 * self.step_alpha"),
    "base samples the teacher classifies correctly (student ignored)": (
        SCRIPT_SOURCE,
        " & (out_s.argmax(1) == targets)",
        "",
    ),
    "boundary term times T^2": (SCRIPT_SOURCE, "loss + ratio_attack", "loss + 9 * ratio_attack"),
}
STEPS = 4


@pytest.fixture(scope="module")
def parity_bss() -> Iterator[ModuleType]:
    """The benchmark module (and through it ``parity``) as the benchmark runs: lit-kd's teacher in float32, 1 thread."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        benchmark = importlib.import_module("parity_bss")
        torch.set_num_threads(1)
        try:
            with benchmark.float32_teacher():
                yield benchmark
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def parity(parity_bss: ModuleType) -> ModuleType:
    return importlib.import_module("parity")


@pytest.fixture(scope="module")
def problem_template(parity_bss: ModuleType):
    """The benchmark's problem, its first steps with batches of 8 (built once; each test takes a copy)."""
    return parity_bss.bss_problem(steps=STEPS, batch_size=8, seed=0)


@pytest.fixture
def problem(problem_template):
    return copy.deepcopy(problem_template)


def in_float64(problem):
    """The problem in float64.

    In float32 BSS carries rounding far: boundary samples sit at the teacher's decision boundary by design, so
    whether the attack stops, or a ReLU switches, is decided by the last bits, and lit-kd against itself (with its
    BN-folded or its plain teacher) is over the target within a few steps (``float32_noise_floor`` in
    ``benchmarks/results/parity_bss.md``). In float64 an equal computation stays equal to about 1e-15.
    """
    problem.student.double()
    problem.teacher.double()
    for batch in problem.batches:
        batch.images, batch.uniforms = batch.images.double(), batch.uniforms.double()
    return problem


def line_of(source: str, text: str) -> int:
    """The number of the first line of the written ``source`` that holds ``text``."""
    lines = textwrap.dedent(source).splitlines()
    return next(number for number, line in enumerate(lines, start=1) if text in line)


def write_checkout(root: Path, script: str = SCRIPT_SOURCE, attack: str = ATTACK_SOURCE) -> Path:
    """A stand-in checkout: the script, and the attack in a package whose ``__init__.py`` must not run."""
    (root / "attacks").mkdir(parents=True)
    (root / "attacks" / "__init__.py").write_text("raise RuntimeError('the package __init__ must not run')\n")
    (root / "attacks" / "attack_BSS.py").write_text(textwrap.dedent(attack))
    (root / "train_BSS_distillation.py").write_text(textwrap.dedent(script))
    return root


def compare(parity: ModuleType, parity_bss: ModuleType, checkout: Path, problem) -> dict:
    """lit-kd's BSS against the stand-in, as the benchmark compares it with the official code (in its dtype)."""
    with parity.default_dtype(problem.batches[0].images.dtype):
        module = parity_bss.bss_module(problem)
        official = parity_bss.official_bss(checkout, problem, module)
        return parity.compare(parity.lit_side(module), official.side, problem, STEPS, trace_root=checkout)


def test_the_adapter_finds_an_equal_bss_step_equal(parity, parity_bss: ModuleType, problem, tmp_path: Path) -> None:
    checkout = write_checkout(tmp_path)
    result = compare(parity, parity_bss, checkout, in_float64(problem))
    assert result["max_abs_weight_diff"] <= parity_bss.FLOAT64_TARGET
    assert math.isclose(result["first_loss_lit_kd"], result["first_loss_official"], rel_tol=1e-12)
    assert result["first_step_max_abs_grad_diff"] < 1e-12
    # both sides attacked the same samples: some steps at the cap (the ranking ran), some below it, none idle
    lit = parity_bss.attacked_per_step(problem, "lit_kd")
    assert lit == parity_bss.attacked_per_step(problem, "official") and len(lit) == STEPS
    cap = parity_bss.attacked_at_most(problem)
    assert cap in lit and min(lit) > 0 and min(lit) < cap
    # the weights moved (steps that did nothing would also be "equal")
    start = {f"student.{name}": p for name, p in problem.student.named_parameters()}
    moved = max(float((p - start[name].detach()).abs().max()) for name, p in result["lit_kd_run"].weights.items())
    assert moved > 100 * parity_bss.TARGET
    # the stand-in's step and attack ran, at their own lines; the schedule ran when the side was built (not traced
    # here), the package's __init__ and module level never
    lines = result["official_lines"]
    step = ("optimizer.zero_grad()", "base = base[score", "threshold =", "loss + ratio_attack", "optimizer.step()")
    assert {line_of(SCRIPT_SOURCE, text) for text in step} <= lines["train_BSS_distillation.py"]
    assert not {line_of(SCRIPT_SOURCE, text) for text in ("attack = ", "ratio = ")} & lines["train_BSS_distillation.py"]
    attack = ("input_adv = input.clone()", "(grad,) =", "input_adv = torch.clamp")
    assert {line_of(ATTACK_SOURCE, text) for text in attack} <= lines["attacks/attack_BSS.py"]
    assert "attacks/__init__.py" not in lines


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_adapter_finds_a_different_bss_step(
    parity, parity_bss: ModuleType, problem, tmp_path: Path, mutation: str
) -> None:
    source, old, new = MUTATIONS[mutation]
    assert old in source
    mutated = source.replace(old, new)
    if source is ATTACK_SOURCE:
        checkout = write_checkout(tmp_path, attack=mutated)
    else:
        checkout = write_checkout(tmp_path, script=mutated)
    result = compare(parity, parity_bss, checkout, problem)  # float32: its rounding (about 4e-7) is far below
    assert result["first_step_max_abs_grad_diff"] > 1e-3 and not result["within_target"]


def test_the_schedule_and_defaults_are_read_from_the_checkout(parity_bss: ModuleType, problem, tmp_path: Path) -> None:
    checkout = write_checkout(tmp_path)
    settings = {s.name: s for s in parity_bss.defaults_bss(checkout, parity_bss.bss_module(problem))}
    assert settings["temperature"].official == "3" and settings["temperature"].source == (
        f"train_BSS_distillation.py:{line_of(SCRIPT_SOURCE, 'temperature = 3')}"
    )
    assert settings["attack step_size (step_alpha)"].official == "0.3"
    assert settings["r_bss at epoch 60 of 80"].official == 0 and settings["r at epoch 1 of 80"].matches
    assert settings["clamp_range"].official == "-2.5, 2.5" and not settings["clamp_range"].matches  # ours: "image"
    assert all(s.matches for name, s in settings.items() if name != "clamp_range")
    # a schedule that differs is found
    (checkout / "train_BSS_distillation.py").write_text(textwrap.dedent(SCRIPT_SOURCE.replace("4 / 3", "3 / 2")))
    settings = {s.name: s for s in parity_bss.defaults_bss(checkout, parity_bss.bss_module(problem))}
    assert not settings["r_bss at epoch 40 of 80"].matches and settings["r at epoch 40 of 80"].matches


def test_the_injected_draw_follows_the_official_cumulative_rule(parity_bss: ModuleType) -> None:
    probabilities = torch.tensor([[0.0, 0.5, 0.3, 0.2], [0.1, 0.0, 0.6, 0.3], [0.0, 0.5, 0.3, 0.2]])
    draw = parity_bss.inverse_cdf(torch.tensor([0.6, 0.1, 0.99]))
    # row 0: 0.5 < 0.6 <= 0.8 -> class 2; row 1: 0.1 <= 0.6 -> class 2; row 2: 0.99 -> last nonzero, class 3
    assert draw(probabilities, 1).squeeze(1).tolist() == [2, 2, 3]
    with pytest.raises(ValueError, match="injected draws"):
        parity_bss.inverse_cdf(torch.tensor([0.5]))(probabilities, 1)
