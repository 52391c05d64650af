"""benchmarks/parity_dfad.py's adapter against a hand-written DFAD loop: it finds equality, and it finds a mismatch.

The reference here is DFAD's two-stage loop as the paper states it (Fang et al., 2019, "Data-Free Adversarial
Distillation": k = 5 imitation steps of the student on the mean absolute error between its logits and the teacher's,
then one generation step of the generator on minus that error) and a generator of the layers the paper's CIFAR
generator has, written in this test (no official code, no checkout, no network). They are saved as the files of a
stand-in "checkout" and driven through the same adapter the benchmark runs against the official code: imported by
path, ``torch.randn`` handed lit-kd's latents, the loss read from what the loop logs.
"""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
import torch

from tests.support.paths import BENCHMARKS

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN_SOURCE = '''
"""DFAD's loop as the paper states it, written for this test: {loss} between the student's and the teacher's logits."""
import torch
import torch.nn.functional as F

vp = None  # the harness's loss log (the official code logs through a visdom plotter here)


def discrepancy(student_logits, teacher_logits):
    return F.{loss}(student_logits, teacher_logits)


def train(args, teacher, student, generator, device, optimizer, epoch):
    optimizer_s, optimizer_g = optimizer
    for i in range(args.epoch_itrs):
        for _ in range(5):  # imitation: the student learns the teacher on images of a fixed generator
            images = generator(torch.randn((args.batch_size, args.nz, 1, 1)).to(device)).detach()
            loss_s = discrepancy(student(images), teacher(images).detach())
            optimizer_s.zero_grad()
            loss_s.backward()
            optimizer_s.step()
        images = generator(torch.randn((args.batch_size, args.nz, 1, 1)).to(device))  # generation: hard samples
        loss_g = -discrepancy(student(images), teacher(images))
        optimizer_g.zero_grad()
        loss_g.backward()
        optimizer_g.step()
        vp.add_scalar("Loss_S", i, loss_s.item())
        vp.add_scalar("Loss_G", i, loss_g.item())
'''

GENERATOR_SOURCE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class GeneratorA(nn.Module):
    """Latent -> linear to 2ngf maps of size/4 -> BN -> (x2, conv, BN, LeakyReLU) twice -> conv, tanh, plain BN."""

    def __init__(self, nz=100, ngf=64, nc=1, img_size=32):
        super().__init__()
        self.size = img_size // 4
        self.linear = nn.Linear(nz, 2 * ngf * self.size**2)
        self.norm0 = nn.BatchNorm2d(2 * ngf)
        self.conv1, self.norm1 = nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1), nn.BatchNorm2d(2 * ngf)
        self.conv2, self.norm2 = nn.Conv2d(2 * ngf, ngf, 3, padding=1), nn.BatchNorm2d(ngf)
        self.conv3, self.norm3 = nn.Conv2d(ngf, nc, 3, padding=1), nn.BatchNorm2d(nc, affine=False)

    def forward(self, z):
        x = self.norm0(self.linear(z.flatten(1)).view(len(z), -1, self.size, self.size))
        x = F.leaky_relu(self.norm1(self.conv1(F.interpolate(x, scale_factor=2))), 0.2)
        x = F.leaky_relu(self.norm2(self.conv2(F.interpolate(x, scale_factor=2))), 0.2)
        return self.norm3(torch.tanh(self.conv3(x)))
'''

STEPS, BATCH_SIZE = 2, 4


@pytest.fixture
def parity_dfad(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("parity_dfad")


def write_checkout(root: Path, loss: str) -> Path:
    """A stand-in checkout: the loop in DFAD_cifar.py, the generator in network/gan.py (whose __init__ must not run)."""
    (root / "network").mkdir(parents=True)
    (root / "network" / "__init__.py").write_text("raise RuntimeError('the package __init__ must not run')\n")
    (root / "network" / "gan.py").write_text(textwrap.dedent(GENERATOR_SOURCE))
    (root / "DFAD_cifar.py").write_text(textwrap.dedent(TRAIN_SOURCE).replace("{loss}", loss))
    return root


def compare(parity_dfad, root: Path, **settings):
    """The benchmark's comparison on a tiny generator: lit-kd's DFAD, fitted by a Trainer, against ``root``'s loop."""
    start = parity_dfad.make_start(BATCH_SIZE, seed=0, latent_dim=8, base_channels=4)
    return parity_dfad.compare(root, start, STEPS, BATCH_SIZE, 0, **settings), start


def test_the_adapter_finds_an_equal_loop_equal(parity_dfad, tmp_path: Path) -> None:
    root = write_checkout(tmp_path / "paper", "l1_loss")
    (result, lit, official), start = compare(parity_dfad, root, **parity_dfad.ROUNDING_OPTIONS_OFF)
    assert result["within_target"] and result["max_abs_weight_diff"] <= parity_dfad.TARGET
    assert result["first_step_max_abs_grad_diff"] < 1e-6 and result["max_abs_loss_diff"] < 1e-5
    # both networks are compared, weights and BN statistics, and each side stepped the same tensors
    names = set(lit.run.weights)
    assert {name.split(".")[0] for name in names} == {"student", "generator"}
    assert len(names) == len(list(start.problem.student.parameters())) + len(list(start.generator.parameters()))
    assert any(name.startswith("generator.") for name in lit.run.buffers)
    assert result["optimized_tensors"]["lit_kd"] == result["optimized_tensors"]["official"] == len(names)
    # the official side drew every latent batch lit-kd trained on: 6 per step
    assert len(lit.latents) == 6 * STEPS
    # both networks moved (steps that did nothing would also be "equal"); Adam moves each generator weight <= lr a step
    initial = {f"student.{n}": p.detach() for n, p in start.problem.student.named_parameters()}
    initial |= {f"generator.{n}": p.detach() for n, p in start.generator.named_parameters()}
    for network in ("student", "generator"):
        moved = max(float((lit.run.weights[n] - initial[n]).abs().max()) for n in names if n.startswith(network))
        assert moved > 10 * parity_dfad.TARGET + result["max_abs_weight_diff"], network
    # the losses are the logged ones: student L1 (positive), generator -L1
    assert all(value > 0 for value in lit.run.losses[::2]) and all(value < 0 for value in lit.run.losses[1::2])
    # the loop's and the generator's lines ran; the package __init__ did not
    lines = result["official_lines"]
    assert set(range(15, 28)) <= lines["DFAD_cifar.py"] and {13, 14} <= lines["network/gan.py"]
    assert "network/__init__.py" not in lines


def test_the_adapter_finds_a_different_loss(parity_dfad, tmp_path: Path) -> None:
    root = write_checkout(tmp_path / "mse", "mse_loss")
    (result, _, _), _ = compare(parity_dfad, root, **parity_dfad.ROUNDING_OPTIONS_OFF)
    assert not result["within_target"] and result["max_abs_weight_diff"] > 100 * parity_dfad.TARGET
    assert result["first_update_max_abs_grad_diff"]["student"] > 1e-4
    assert abs(result["first_loss_lit_kd"] - result["first_loss_official"]) > 1e-3


def test_float64_agrees_with_lit_kd_defaults_on_and_separates_a_different_loss(parity_dfad, tmp_path: Path) -> None:
    def weight_diff(loss: str) -> float:
        with parity_dfad.default_dtype(torch.float64):
            (result, lit, _), _ = compare(parity_dfad, write_checkout(tmp_path / loss, loss))  # lit-kd's defaults
            assert lit.latents[0].dtype == torch.float64
            return result["max_abs_weight_diff"]

    assert weight_diff("l1_loss") <= 1e-8 < weight_diff("smooth_l1_loss")
    assert torch.get_default_dtype() == torch.float32


def test_injected_noise_hands_out_the_latents_in_order_and_refuses_others(parity_dfad) -> None:
    latents = [torch.randn(4, 8), torch.randn(4, 8)]
    noise = parity_dfad.InjectedNoise(latents)
    assert torch.equal(noise.randn((4, 8, 1, 1)).flatten(1), latents[0]) and noise.drawn == 1
    assert noise.zeros is torch.zeros  # the rest of torch is torch
    with pytest.raises(RuntimeError, match="drew"):
        noise.randn(3, 8)
    noise.randn(4, 8)
    with pytest.raises(RuntimeError, match="more than the 2"):
        noise.randn(4, 8)


def test_official_defaults_are_read_from_the_checkout(parity_dfad, tmp_path: Path) -> None:
    root = write_checkout(tmp_path / "paper", "l1_loss")
    (root / "DFAD_cifar.py").write_text(
        "parser.add_argument('--lr_S', type=float, default=0.1, metavar='LR')\n"
        "parser.add_argument('--lr_G', type=float, default=1e-2)\n"
        "        for k in range(5):\n"
        "            loss_S = F.l1_loss(s_logit, t_logit.detach())\n"
    )
    settings = {s.name: s for s in parity_dfad.defaults_dfad(root)}
    assert settings["student lr (--lr_S)"].matches and settings["student lr (--lr_S)"].source == "DFAD_cifar.py:1"
    assert not settings["generator lr (--lr_G)"].matches  # 1e-2 here, lit-kd's 1e-3
    assert settings["student_steps"].matches and settings["student loss"].matches
    assert settings["batch_size"].official is None and not settings["batch_size"].matches  # not in this file
