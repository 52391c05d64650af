"""Pretrained networks by name: the file format, the architecture, checksums, normalisation and accuracy."""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_kd.lightning_cli import LitKDCLI
from lit_kd.methods import HintonKD
from lit_kd.models import PretrainedNetwork, available_pretrained
from lit_kd.models.pretrained import PRETRAINED_WEIGHTS, CifarResNet
from tests.support.networks import TinyNet
from tests.support.paths import RECIPES, SHARED
from tests.support.training import tiny_cifar, tiny_trainer

WEIGHTS = Path(os.environ.get("LIT_KD_WEIGHTS", SHARED / "weights"))
needs_weights = pytest.mark.skipif(
    not (WEIGHTS / PRETRAINED_WEIGHTS["cifar10_resnet20"].file_name).is_file(), reason=f"no weights in {WEIGHTS}"
)


# An independent port of akamaster/pytorch_resnet_cifar10 resnet.py (commit d5489e8, lines 45-117): the
# architecture the pretrained files were trained with, under its own parameter names.
class AkamasterBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if stride != 1 or in_planes != planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)
        return F.relu(out + shortcut)


class AkamasterResNet(nn.Module):
    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in, layers = 16, []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            strides = [stride] + [1] * (blocks - 1)
            layers.append(
                nn.Sequential(
                    *[AkamasterBlock(planes_in if i == 0 else planes, planes, s) for i, s in enumerate(strides)]
                )
            )
            planes_in = planes
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


def randomised(network: nn.Module) -> nn.Module:
    """Random weights and BN statistics, so that a wrong mapping cannot go unnoticed."""
    generator = torch.Generator().manual_seed(0)
    for tensor in network.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.25)
    return network.eval()


def test_akamaster_file_format_maps_onto_the_zoo_network(tmp_path: Path) -> None:
    """A file in the pretrained files' format (DataParallel keys, a numpy scalar beside) loads with weights_only and
    gives the original architecture's outputs."""
    original = randomised(AkamasterResNet(blocks=3))
    path = tmp_path / "resnet20-test.th"
    state = nn.DataParallel(original).state_dict()
    torch.save({"best_prec1": np.float64(91.73), "state_dict": state}, path)
    spec = replace(
        PRETRAINED_WEIGHTS["cifar10_resnet20"],
        file_name=path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    network = CifarResNet(num_classes=10, **spec.architecture)
    network.load_state_dict(spec.state_dict(tmp_path))
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(images), original(images), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in original.parameters())


def test_missing_file_error_names_file_checksum_and_url(tmp_path: Path) -> None:
    spec = PRETRAINED_WEIGHTS["cifar10_resnet56"]
    with pytest.raises(FileNotFoundError) as error:
        PretrainedNetwork("cifar10_resnet56", weights_dir=str(tmp_path))
    message = str(error.value)
    assert str(tmp_path / spec.file_name) in message and spec.sha256 in message and spec.url in message
    assert "LIT_KD_WEIGHTS" in message


def test_mismatching_file_is_refused(tmp_path: Path) -> None:
    spec = PRETRAINED_WEIGHTS["cifar10_resnet32"]
    torch.save(AkamasterResNet(5).state_dict(), tmp_path / spec.file_name)
    with pytest.raises(ValueError, match=f"has SHA-256 [0-9a-f]{{64}}, expected {spec.sha256}"):
        PretrainedNetwork("cifar10_resnet32", weights_dir=str(tmp_path))


@needs_weights
@pytest.mark.parametrize(
    ("name", "parameters"),
    [("cifar10_resnet20", 0.27), ("cifar10_resnet32", 0.46), ("cifar10_resnet44", 0.66), ("cifar10_resnet56", 0.85)],
)
def test_the_four_pretrained_files_load_by_name(name: str, parameters: float) -> None:
    network = PretrainedNetwork(name, weights_dir=str(WEIGHTS))
    assert round(sum(p.numel() for p in network.parameters()) / 1e6, 2) == parameters
    assert network.input_mean == (0.485, 0.456, 0.406) and network.weights_name == name
    assert [f.shape[1] for f in network.forward_features(torch.zeros(1, 3, 32, 32)).features] == [16, 16, 32, 64]


@needs_weights
def test_pretrained_teacher_by_name_in_yaml(
    tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIT_KD_WEIGHTS", str(WEIGHTS))
    monkeypatch.chdir(tmp_path)
    cli = LitKDCLI(
        args=[
            "--config",
            str(RECIPES / "cifar10" / "kd_resnet56_resnet20.yaml"),
            "--data.data_dir",
            str(cifar_folder),
            "--model.teacher",
            "lit_kd.models.PretrainedNetwork",
            "--model.teacher.name",
            "cifar10_resnet20",
            "--model.teacher_checkpoint",
            "null",
        ],
        run=False,
    )
    reference = PretrainedNetwork("cifar10_resnet20", weights_dir=str(WEIGHTS))
    for key, value in reference.state_dict().items():
        assert torch.equal(cli.model.teacher.state_dict()[key], value), key


class DeclaresImageNetStatistics(TinyNet):
    input_mean = (0.485, 0.456, 0.406)
    input_std = (0.229, 0.224, 0.225)


def test_networks_declaring_their_normalisation_get_converted_inputs(tmp_path: Path, cifar_folder: Path) -> None:
    """Any teacher (and student) that declares input_mean/std sees the data in its own normalisation."""
    torch.manual_seed(0)
    teacher, student = DeclaresImageNetStatistics(width=16).eval(), DeclaresImageNetStatistics()
    module = HintonKD(student, teacher)
    data = tiny_cifar(cifar_folder, batch_size=8)
    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(module, data)
    images = data.test_set.images[:8]
    batch, _ = data.on_after_batch_transfer((images, data.test_set.targets[:8]), 0)  # CIFAR-normalised, as fed
    mean = torch.tensor(DeclaresImageNetStatistics.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(DeclaresImageNetStatistics.input_std).view(1, 3, 1, 1)
    by_hand = (images.float() / 255 - mean) / std
    plain = TinyNet(width=16)
    plain.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(module.teacher_logits(batch), plain.eval()(by_hand), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(module.teacher_logits(batch), plain(batch), atol=1e-3)
    module.setup("fit")  # a second setup does not convert twice
    with torch.no_grad():
        torch.testing.assert_close(module.teacher_logits(batch), plain(by_hand), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@needs_weights
def test_pretrained_top1_on_the_real_test_split_matches_the_weights_readme(tmp_path: Path) -> None:
    """The README's measured column (cifar10-jpg test split, Pillow decode, ImageNet normalisation), within 0.3."""
    readme = {
        "cifar10_resnet20": 81.03,
        "cifar10_resnet32": 82.56,
        "cifar10_resnet44": 82.67,
        "cifar10_resnet56": 83.20,
    }
    archive = SHARED / "data" / "cifar10-jpg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is not on this machine")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    from lit_kd.data import CIFAR10DataModule

    data = CIFAR10DataModule(tmp_path, cache_dir=tmp_path / "cache")
    data.setup("test")
    images, targets = data.test_set
    for name in available_pretrained():
        network = PretrainedNetwork(name, weights_dir=str(WEIGHTS)).eval()
        mean, std = torch.tensor(network.input_mean).view(1, 3, 1, 1), torch.tensor(network.input_std).view(1, 3, 1, 1)
        correct = 0
        with torch.inference_mode():
            for start in range(0, len(targets), 1000):
                batch = (images[start : start + 1000].float() / 255 - mean) / std
                correct += (network(batch).argmax(1) == targets[start : start + 1000]).sum().item()
        assert abs(100 * correct / len(targets) - readme[name]) <= 0.3, name
