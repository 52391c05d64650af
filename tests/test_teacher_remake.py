"""benchmarks/teacher_remake.py on tiny generated data: hashes, accuracies and pairwise differences of teachers."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from tests.support.benchmarks import fixed_teacher
from tests.support.paths import BENCHMARKS


def test_teachers_that_differ_in_one_weight_are_compared_by_hash_predictions_and_weights(
    tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    common = importlib.import_module("common")
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    remake = importlib.import_module("teacher_remake")
    monkeypatch.setattr(remake, "write_results", common.write_results)
    monkeypatch.setattr(remake, "PretrainedNetwork", lambda name, weights_dir: fixed_teacher())
    # by hand: the network's test logits; class 3's logit raised past the top logit on about half the images
    network = fixed_teacher().eval()
    data = remake.CIFAR10DataModule(cifar_folder, batch_size=128, eval_batch_size=500)
    data.setup("test")
    images, labels = map(torch.cat, zip(*data.test_dataloader(), strict=True))
    with torch.no_grad():  # outside a trainer the DataModule only normalises
        logits = network(data.on_after_batch_transfer((images, labels), 0)[0])
    shift = (logits.max(1).values - logits[:, 3]).median().item() + 1e-3
    shifted = logits.clone()
    shifted[:, 3] += shift
    agreement = 100 * (logits.argmax(1) == shifted.argmax(1)).float().mean().item()
    assert 0 < agreement < 100

    same, other = fixed_teacher().state_dict(), fixed_teacher().state_dict()
    other["classifier.bias"][3] += shift
    for name, weights in (("a", same), ("b", same), ("c", other)):
        torch.save(weights, tmp_path / f"{name}.pt")
    teachers = [f"{name}={tmp_path / name}.pt" for name in "abc"]
    argv = ["teacher_remake.py", "--data-dir", str(cifar_folder), "--weights-dir", str(tmp_path), "--teacher"]
    monkeypatch.setattr(sys, "argv", [*argv, *teachers])
    remake.main()

    results = json.loads((tmp_path / "results" / "teacher_remake.json").read_text())
    a, b, c = results["teachers"]
    assert a["weights hash"] == b["weights hash"] != c["weights hash"]
    assert results["test_images"] == 40  # 4 test images per class
    pairs = {pair["pair"]: pair for pair in results["pairs"]}
    assert pairs["a / b"] == {
        "pair": "a / b",
        "top-1 agreement %": 100.0,
        "max probability diff": 0.0,
        "max weight diff": 0.0,
    }
    assert pairs["a / c"]["max weight diff"] == pytest.approx(shift)
    assert pairs["a / c"]["top-1 agreement %"] == round(agreement, 2)
    assert pairs["a / c"]["max probability diff"] == pytest.approx(
        (logits.softmax(1) - shifted.softmax(1)).abs().max().item(), abs=1e-6
    )
    assert c["test accuracy %"] == round(100 * (shifted.argmax(1) == labels).float().mean().item(), 2)
    assert a["test accuracy %"] == round(100 * (logits.argmax(1) == labels).float().mean().item(), 2)
