"""Errors a user meets stop with one line that names the problem (issue 27, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_kd.born_again import main as born_again_main
from lit_kd.methods import SupervisedModule
from lit_kd.synthesis import main as synthesis_main
from tests.support.networks import TinyNet
from tests.support.training import tiny_cifar, tiny_trainer


def one_line(capsys: pytest.CaptureFixture, program: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{program}: error: "), lines[-5:]
    assert lines[1] == "(set LIT_KD_TRACEBACK=1 for the full traceback)"
    return lines[0]


def test_born_again_driver_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        born_again_main(["--config", str(tmp_path / "missing.yaml"), "--output_dir", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert "missing.yaml" in one_line(capsys, "lit-kd born-again")


def test_synthesis_driver_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    teacher = tmp_path / "teacher.pt"
    torch.save(TinyNet().state_dict(), teacher)
    args = [
        "--gan_checkpoint", str(tmp_path / "no_gan.ckpt"),
        "--teacher", "lit_kd.models.CifarResNet", "--teacher.depth", "8",
        "--teacher_checkpoint", str(teacher),
        "--data", "lit_kd.data.CIFAR10DataModule", "--data.data_dir", str(tmp_path),
        "--output_dir", str(tmp_path / "synthetic"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        synthesis_main(args)
    assert stopped.value.code == 2
    assert "no_gan.ckpt does not exist" in one_line(capsys, "lit-kd synthesize")


@pytest.mark.parametrize("rate", [float("nan"), float("inf")])
def test_a_nan_or_infinite_learning_rate_stops_before_the_first_update(
    rate: float, tmp_path: Path, cifar_folder: Path
) -> None:
    """torch's SGD refuses a negative rate but takes NaN; the run used to make one NaN update, then blame the rate."""
    network = TinyNet()
    before = {key: value.clone() for key, value in network.state_dict().items()}
    module = SupervisedModule(network, optimizer=lambda parameters: torch.optim.SGD(parameters, lr=rate))
    with pytest.raises(ValueError, match=rf"optimiser 0 \(SGD\), parameter group 0 has learning rate {rate}"):
        tiny_trainer(tmp_path, limit_train_batches=2).fit(module, tiny_cifar(cifar_folder))
    assert all(torch.equal(value, before[key]) for key, value in network.state_dict().items())
