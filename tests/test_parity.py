"""benchmarks/parity.py's machinery against a hand-written Hinton KD: it finds equality, and it finds a mismatch.

The reference here is a plain KL-divergence formula written in this test (no official code, no checkout, no network),
saved as a file of a stand-in "checkout" and imported by path, as the benchmark imports the official code.
"""

from __future__ import annotations

import importlib
import math
import textwrap
from pathlib import Path

import pytest
import torch

from lit_kd.methods import HintonKD
from tests.support.paths import BENCHMARKS

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE_SOURCE = '''
import torch


def hinton_loss(student_logits, teacher_logits, targets, temperature, alpha):
    """(1 - alpha) CE + alpha T^2 KL(p_t || p_s), written out from the definitions."""
    log_p_student = torch.log_softmax(student_logits / temperature, dim=1)
    p_teacher = torch.softmax(teacher_logits / temperature, dim=1)
    kl = (p_teacher * (torch.log(p_teacher) - log_p_student)).sum(dim=1).mean()
    log_p = torch.log_softmax(student_logits, dim=1)
    cross_entropy = -log_p[torch.arange(len(targets)), targets].mean()
    return (1 - alpha) * cross_entropy + alpha * temperature**2 * kl
'''


@pytest.fixture
def parity(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("parity")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A stand-in checkout holding the hand-written reference, in a package whose __init__.py must not run."""
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "__init__.py").write_text("raise RuntimeError('the package __init__ must not run')\n")
    (tmp_path / "reference" / "kd.py").write_text("from .formula import hinton_loss  # noqa: F401\n")
    (tmp_path / "reference" / "formula.py").write_text(textwrap.dedent(REFERENCE_SOURCE))
    return tmp_path


def reference_side(parity, checkout: Path, problem, temperature: float, alpha: float = 0.9):
    """The hand-written reference as the benchmark drives official code: imported by path, fed the same networks."""
    kd = parity.import_official(checkout, "reference/kd.py")
    student, teacher = problem.student_copy(), problem.teacher_copy()

    def loss(step, batch):
        with torch.no_grad():
            teacher_logits = teacher(batch.images)
        return kd.hinton_loss(student(batch.images), teacher_logits, batch.targets, temperature, alpha)

    parameters, buffers = parity.named_student(student)
    return parity.Side(loss, list(student.parameters()), parameters, buffers)


def test_the_harness_finds_an_equal_computation_equal(parity, checkout: Path) -> None:
    problem = parity.make_problem(steps=20, batch_size=8, num_samples=200)
    module = parity.build_module(HintonKD, problem)  # T = 4, alpha = 0.9
    result = parity.compare(
        parity.lit_side(module), reference_side(parity, checkout, problem, 4.0), problem, 20, trace_root=checkout
    )
    assert result["within_target"] and result["max_abs_weight_diff"] <= parity.TARGET
    assert result["compared_tensors"] == len(list(problem.student.parameters()))
    assert math.isclose(result["first_loss_lit_kd"], result["first_loss_official"], rel_tol=1e-5)
    assert result["first_step_max_abs_grad_diff"] < 1e-6
    # the weights moved (20 steps that did nothing would also be "equal")
    start = {name: p.detach() for name, p in problem.student.named_parameters()}
    moved = max(float((p.detach() - start[name]).abs().max()) for name, p in module.student.named_parameters())
    assert moved > 100 * parity.TARGET
    # the reference's lines that ran were traced: the formula's body, not the package's __init__ or module level
    formula_lines = result["official_lines"]["reference/formula.py"]
    assert set(range(7, 13)) <= formula_lines and 2 not in formula_lines
    assert "reference/__init__.py" not in result["official_lines"]


def test_the_harness_finds_a_different_temperature(parity, checkout: Path) -> None:
    problem = parity.make_problem(steps=20, batch_size=8, num_samples=200)
    module = parity.build_module(HintonKD, problem)
    result = parity.compare(parity.lit_side(module), reference_side(parity, checkout, problem, 2.0), problem, 20)
    assert not result["within_target"] and result["max_abs_weight_diff"] > parity.TARGET
    assert result["first_step_max_abs_grad_diff"] > 1e-4
    assert abs(result["first_loss_lit_kd"] - result["first_loss_official"]) > 1e-3


def test_float64_separates_rounding_from_a_different_computation(parity, checkout: Path) -> None:
    def weight_diff(temperature: float) -> float:
        with parity.default_dtype(torch.float64):
            problem = parity.make_problem(steps=5, batch_size=8, num_samples=200)
            assert problem.batches[0].images.dtype == torch.float64
            module = parity.build_module(HintonKD, problem)
            side = reference_side(parity, checkout, problem, temperature)
            return parity.compare(parity.lit_side(module), side, problem, 5)["max_abs_weight_diff"]

    assert weight_diff(4.0) <= parity.FLOAT64_TARGET < weight_diff(4.5)
    assert torch.get_default_dtype() == torch.float32


def test_sides_must_compare_the_same_tensors(parity) -> None:
    with pytest.raises(ValueError, match="only one has"):
        parity.max_difference({"a": torch.zeros(1)}, {"b": torch.zeros(1)})
    assert parity.max_difference(
        {"a": torch.zeros(2), "b": torch.ones(1)}, {"a": torch.ones(2), "b": torch.ones(1)}
    ) == (
        1.0,
        "a",
    )


def test_missing_references_are_recorded_not_run(parity) -> None:
    rows = [parity.run_method(method, {}, lambda: pytest.fail("nothing should run"), 20) for method in parity.METHODS]
    assert {row["status"] for row in rows} == {"reference not given"}
    own_scripts = {reference for reference, _ in parity.OWN_SCRIPTS.values()}
    assert {method.reference for method in parity.METHODS} | own_scripts == set(parity.REFERENCES)
    for _, script in parity.OWN_SCRIPTS.values():  # every script main() dispatches to gives rows the same way
        assert callable(importlib.import_module(script).parity_rows)
    with pytest.raises(SystemExit, match="NAME=DIR"):
        parity.parse_references(["NotARepository=."])


def test_official_defaults_are_read_from_the_checkout(parity, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("x = 1\nparser.add_argument('--kd_T', type=float, default=4)\n")
    assert parity.find_value(tmp_path, "train.py", rf"'--kd_T', type=float, default={parity.NUMBER}") == (
        "4",
        "train.py:2",
    )
    assert parity.find_value(tmp_path, "missing.py", "x")[0] is None
    assert parity.Setting("T", 4.0, "4", "train.py:2").matches
    assert not parity.Setting("T", 4.0, "2", "train.py:2").matches
    assert parity.line_ranges({3, 4, 5, 7, 20}) == "3-7,20"


def test_every_method_of_the_converged_table_has_a_step_parity_row_or_says_why_not(parity) -> None:
    """parity.md must cover every method of gains.py's table: a row of its own, or a stated reason."""
    gains = importlib.import_module("gains")
    parity_row = {  # gains.py's result key (before any "/network") -> parity.py's row
        "Hinton KD": "Hinton KD",
        "BSS": "BSS",
        "FitNets": "FitNets",
        "AT": "AT (RepDistiller)",
        "DKD": "DKD",
        "DIST": "DIST",
        "KD + LS": "KD + logit standardisation",
        "CRD": "CRD",
        "AMA": "AMA",
        "ensemble distillation": "ensemble distillation",
        gains.SELF_DISTILLATION: "self-distillation (born-again)",
        gains.SELF_DISTILLATION_SAME_INIT: "self-distillation (born-again)",
        "DML": "DML",
        "DML, 3 networks": "DML",
        "AFD (alternating updates)": "AFD",
        "AFD (joint update)": "AFD",
        "AFD, cycle of 3": "AFD",
        "DFAD (no real training image)": "DFAD",
        "cGAN-KD, 10% labels, real + synthetic": "cGAN-KD",
    }
    compared = {method.name for method in parity.METHODS} | set(parity.OWN_SCRIPTS)
    table_methods = {key.split("/")[0] for _, key, _ in gains.TABLE_ROWS}
    assert table_methods == set(parity_row)  # a new row of the table needs its place here
    missing = {row for row in table_methods if parity_row[row] not in compared | set(parity.WITHOUT_STEP_PARITY)}
    assert not missing
    assert not compared & set(parity.WITHOUT_STEP_PARITY)  # a method with a row needs no reason
    not_given = [
        parity.run_method(method, {}, lambda: pytest.fail("nothing should run"), 1) for method in parity.METHODS
    ]
    setup = {"steps": 1, "student": "resnet8", "teacher": "resnet14", "batch_size": 1}
    report = parity.report(not_given, {"setup": setup, "load_average": {"start": 0.0, "end": 0.0}, "references": {}})
    for method, reason in parity.WITHOUT_STEP_PARITY.items():
        assert f"| {method} | {reason} |" in report
