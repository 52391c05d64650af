"""The notebooks run end to end (nbclient, the ``python3`` kernel) on tiny generated CIFAR-10 data.

Each notebook reads its data folder, work folder and budget from ``LIT_KD_NOTEBOOK_*`` environment variables
(its parameter cell); the kernel inherits them. A cell appended here (not stored in the notebook) prints the
kernel's interpreter, which must be this test's: jupyter_client starts the ``python3`` kernelspec with
``sys.executable`` in place of ``python``, so the kernel sees the same environment (lit_kd, torch) as pytest.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.paths import NOTEBOOKS

#: Tiny budgets: conftest's cifar_folder has 80 training and 40 test images; batches of 16 make 5 steps an epoch.
BUDGETS = {
    "quickstart.ipynb": {
        "teacher": "resnet14",
        "student": "resnet8",
        "teacher_epochs": 2,
        "student_epochs": 1,
        "subset_size": None,
        "batch_size": 16,
    },
    "custom_module.ipynb": {"teacher_epochs": 1, "student_epochs": 2, "subset_size": None, "batch_size": 16},
}


def execute(name: str, data_dir: Path, work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """Run notebook ``name`` on ``data_dir`` in ``work_dir``; return it with its outputs and the kernel's python."""
    monkeypatch.setenv("LIT_KD_NOTEBOOK_DATA", str(data_dir))
    monkeypatch.setenv("LIT_KD_NOTEBOOK_WORK", str(work_dir / "runs"))
    monkeypatch.setenv("LIT_KD_NOTEBOOK_BUDGET", json.dumps(BUDGETS[name]))
    monkeypatch.setenv("LIT_KD_CACHE", str(work_dir / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(work_dir / "matplotlib"))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    stored_cells = len(notebook.cells)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work_dir)}}
    ).execute()
    kernel_python = notebook.cells.pop().outputs[0]["text"].strip()
    assert len(notebook.cells) == stored_cells
    return notebook, kernel_python


def printed_json(notebook: Any) -> dict[str, Any]:
    """The JSON that the notebook's last cell prints."""
    # the kernel may send one print in several stream messages: join them
    text = "".join(output["text"] for output in notebook.cells[-1].outputs if output.get("name") == "stdout")
    return json.loads(text.strip().splitlines()[-1])


def test_notebooks_are_stored_without_outputs() -> None:
    names = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(BUDGETS)
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.outputs == [] and cell.execution_count is None for cell in code), f"{name} holds outputs"
        assert notebook.metadata.kernelspec.name == "python3"


def test_quickstart_trains_a_teacher_distils_it_and_plots(
    cifar_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook, kernel_python = execute("quickstart.ipynb", cifar_folder, tmp_path, monkeypatch)
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    results = printed_json(notebook)
    assert set(results) == {"teacher", "vanilla", "kd", "figure"}
    assert all(0 <= results[key] <= 1 for key in ("teacher", "vanilla", "kd"))
    assert Path(results["figure"]).stat().st_size > 0
    images = [
        output for cell in notebook.cells for output in cell.get("outputs", []) if "image/png" in output.get("data", {})
    ]
    assert len(images) == 1  # the comparison figure, shown inline
    # one CSV log per run, each with the validation accuracy of every epoch
    logs = {run: list((tmp_path / "runs" / run).glob("version_*/metrics.csv")) for run in ("teacher", "vanilla", "kd")}
    assert all(len(paths) == 1 for paths in logs.values())
    teacher_rows = [line for line in logs["teacher"][0].read_text().splitlines()[1:] if line]
    assert len(teacher_rows) >= BUDGETS["quickstart.ipynb"]["teacher_epochs"]
    assert (tmp_path / "runs" / "teacher.ckpt").is_file()


def test_custom_module_subclass_trains_with_its_own_optimiser_and_a_frozen_teacher(
    cifar_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook, kernel_python = execute("custom_module.ipynb", cifar_folder, tmp_path, monkeypatch)
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    results = printed_json(notebook)
    assert 0 <= results["teacher_acc"] <= 1 and 0 <= results["student_acc"] <= 1
    assert results["teacher_unchanged"] is True and results["student_moved"] is True
    assert results["optimizer"] == "AdamW"
    assert results["logit_l2"] > 0
    budget = BUDGETS["custom_module.ipynb"]
    assert results["steps_checked"] == budget["student_epochs"] * 80 // budget["batch_size"]
    assert (tmp_path / "runs" / "checkpoints" / "last.ckpt").is_file()
    assert 0 <= results["at_student_acc"] <= 1 and results["at_term"] > 0  # a torchvision student, by module path
