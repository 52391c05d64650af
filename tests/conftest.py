"""Shared fixtures: tiny datasets generated on disk in the layouts the real ones use."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from lit_kd.data.cifar import CIFAR10_CLASSES
from tests.support.data import UTKFACE_AGES, UTKFACE_MALFORMED, class_image, write_class_folders, write_jpeg
from tests.support.paths import SHARED

os.environ.setdefault("WANDB_MODE", "disabled")
#: The pretrained CIFAR-10 teachers (../shared/weights beside the repository), when this machine has them.
SHARED_WEIGHTS = SHARED / "weights"
if SHARED_WEIGHTS.is_dir():
    os.environ.setdefault("LIT_KD_WEIGHTS", str(SHARED_WEIGHTS))
# The teacher's "auto" precision is bf16 on a CPU with native bf16; the tests compare teacher outputs with float32
# references (hand-computed losses, official ports, DDP ranks), so they keep float32 in this process and in every one
# it starts. tests/runtime/test_speed_options.py tests "auto" itself.
os.environ.setdefault("LIT_KD_TEACHER_PRECISION", "32")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one of several pytest-xdist workers (setup.cfg runs one per core): one thread each, here and in the processes
    # its tests start, so that the workers share the cores instead of oversubscribing them
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: unknown (and unused) without it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (setup.cfg): one worker per core this process may use (its CPU affinity and any cgroup CPU quota),
    not per core of the host, which a container may show in full; ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's own hook reads it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:  # cgroup v2: "<quota> <period>" or "max <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cores


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 image-folder export with 8 train and 4 test images per class: ``<root>/cifar10/{train,test}``."""
    root = tmp_path_factory.mktemp("cifar_data")
    write_class_folders(root / "cifar10" / "train", CIFAR10_CLASSES, per_class=8, size=32, seed=0)
    write_class_folders(root / "cifar10" / "test", CIFAR10_CLASSES, per_class=4, size=32, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_imagenet_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny-ImageNet in the official layout, 1 train image per class, 200 validation images."""
    root = tmp_path_factory.mktemp("tiny_data") / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(200)]
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    write_class_folders(root / "train", wnids, per_class=1, size=64, seed=2, inner_dir="images")
    generator = torch.Generator().manual_seed(3)
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for index, wnid in enumerate(wnids):
        write_jpeg(class_image(index, 64, generator), str(root / "val" / "images" / f"val_{index}.JPEG"))
        lines.append(f"val_{index}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root.parent


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private decoded-image cache for one test."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def utkface_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """UTKFace in the official naming, 64x64: the ages of :data:`UTKFACE_AGES` plus two malformed names."""
    root = tmp_path_factory.mktemp("utkface_data")
    folder = root / "UTKFace"
    folder.mkdir()
    generator = torch.Generator().manual_seed(4)
    for index, age in enumerate(UTKFACE_AGES):
        name = f"{age}_{index % 2}_{index % 5}_20170104{index:09d}.jpg.chip.jpg"
        write_jpeg(class_image(age, 64, generator), str(folder / name))
    for name in UTKFACE_MALFORMED:
        write_jpeg(class_image(0, 64, generator), str(folder / name))
    (folder / "README.txt").write_text("not an image: ignored\n")
    return root


@pytest.fixture
def wandb_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """wandb (skips without it) with its files under ``tmp_path``; the run is finished after the test.

    Returns a function setting ``WANDB_MODE`` (``disabled`` by default, set above).
    """
    wandb = pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)  # recipes write checkpoints/ and runs/, WandbLogger wandb/, relative to it
    for variable, folder in (("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"), ("WANDB_CONFIG_DIR", "conf")):
        monkeypatch.setenv(variable, str(tmp_path / "wandb_home" / folder))
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # no stdout/stderr wrapping inside pytest's capture
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield lambda mode: monkeypatch.setenv("WANDB_MODE", mode)
    wandb.finish()  # WandbLogger leaves the run open; the next test's logger would join it
    # wandb keeps the settings of its first run (WANDB_MODE included) and its service process (started in that
    # run's working directory, against which it resolves relative paths) until teardown
    wandb.teardown()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread inside the test (the parity tests compare runs whose reductions must not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
