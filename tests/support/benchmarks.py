"""A benchmark script imported for a test: results under the test's folder, a fixed zoo teacher for the pretrained."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
import torch

from lit_kd.models import create_model
from tests.support.paths import BENCHMARKS


def fixed_teacher() -> torch.nn.Module:
    """The same ResNet-14 every time (as the pretrained teacher is), whatever the global random state."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model("resnet14", 10)


def benchmark_script(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/<name>.py`` writing its results under ``tmp_path/results``, its runs' teacher :func:`fixed_teacher`
    (for scripts built on ``gains.Runner``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    module = importlib.import_module(name)
    monkeypatch.setattr(module, "write_results", common.write_results)
    monkeypatch.setattr(module.Runner, "teacher", lambda self, name="cifar10_resnet56": fixed_teacher())
    return module
