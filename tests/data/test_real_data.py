"""The DataModules on the real archives in ../shared/data (slow: decoding takes a minute; `pytest -m slow`)."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest
import torch

from lit_kd.data import CIFAR10DataModule, TinyImageNetDataModule
from tests.support.paths import SHARED

SHARED_DATA = SHARED / "data"
pytestmark = pytest.mark.slow


def extract(archive_name: str, destination: Path) -> Path:
    archive = SHARED_DATA / archive_name
    if not archive.is_file():
        pytest.skip(f"{archive} is not on this machine")
    sums = dict(line.split()[::-1] for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines() if line)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == sums[archive_name], f"{archive} fails its checksum"
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return destination


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real")


def test_real_cifar10_export(data_root: Path) -> None:
    dm = CIFAR10DataModule(extract("cifar10-jpg.tar.gz", data_root), cache_dir=data_root / "cache")
    dm.setup("fit")
    assert dm.train_set.images.shape == (50000, 3, 32, 32)
    assert dm.test_set.images.shape == (10000, 3, 32, 32)
    assert torch.equal(dm.train_set.targets.bincount(), torch.full((10,), 5000))
    assert torch.equal(dm.test_set.targets.bincount(), torch.full((10,), 1000))
    mean = dm.train_set.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor(dm.mean), atol=0.01)  # the JPEG export keeps the official statistics


def test_real_tiny_imagenet_subset(data_root: Path) -> None:
    dm = TinyImageNetDataModule(extract("tiny-imagenet-200-sub.tar.gz", data_root), cache_dir=data_root / "cache")
    dm.setup("fit")
    assert dm.train_set.images.shape == (20000, 3, 64, 64)  # 100 images per class in this subset
    assert torch.equal(dm.train_set.targets.bincount(), torch.full((200,), 100))
    assert torch.equal(dm.test_set.targets.bincount(), torch.full((200,), 50))
