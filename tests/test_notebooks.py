"""The notebooks are stored executed, and run end to end (nbclient, the ``python3`` kernel) on tiny generated data.

The stored notebooks carry the outputs of a run on the real CIFAR-10 data (``scripts/execute_notebooks.py``): every
code cell executed, their figures and tables present, and none of the metadata that changes between executions.
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
    # no pretrained weights (LIT_KD_WEIGHTS unset): the notebooks train their ResNet-20 teacher on the tiny data
    "bss.ipynb": {
        "teacher_epochs": 6,
        "student_epochs": 4,
        "subset_size": None,
        "batch_size": 16,
        "gallery_columns": 4,
    },
    "dfad.ipynb": {
        "teacher_epochs": 1,
        "subset_size": None,
        "batch_size": 16,
        "epochs": 2,
        "batches_per_epoch": 12,
        "dfad_batch_size": 8,
        "images_shown": 4,
    },
}
#: What each stored notebook must show a reader: its inline figures and its Markdown tables.
SHOWN = {
    "quickstart.ipynb": {"figures": 1, "tables": 1},
    "custom_module.ipynb": {"figures": 0, "tables": 0},
    "bss.ipynb": {"figures": 1, "tables": 2},
    "dfad.ipynb": {"figures": 2, "tables": 1},
}


def execute(name: str, data_dir: Path, work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """Run notebook ``name`` on ``data_dir`` in ``work_dir``; return it with its outputs and the kernel's python."""
    monkeypatch.setenv("LIT_KD_NOTEBOOK_DATA", str(data_dir))
    monkeypatch.setenv("LIT_KD_NOTEBOOK_WORK", str(work_dir / "runs"))
    monkeypatch.setenv("LIT_KD_NOTEBOOK_BUDGET", json.dumps(BUDGETS[name]))
    monkeypatch.setenv("LIT_KD_CACHE", str(work_dir / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(work_dir / "matplotlib"))
    monkeypatch.delenv("LIT_KD_WEIGHTS", raising=False)
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


def outputs(notebook: Any, kind: str) -> list[Any]:
    """Every output of the notebook's code cells that holds ``kind`` data (``image/png``, ``text/markdown``)."""
    return [output for cell in notebook.cells for output in cell.get("outputs", []) if kind in output.get("data", {})]


def test_notebooks_are_stored_executed_with_their_figures_and_no_volatile_metadata() -> None:
    names = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(BUDGETS) == sorted(SHOWN)
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        counts = [cell.execution_count for cell in code]
        assert counts == list(range(1, len(code) + 1)), f"{name}: not executed top to bottom in one run: {counts}"
        errors = [output for cell in code for output in cell.outputs if output.output_type == "error"]
        assert not errors, f"{name} stored an error: {errors[0].get('ename')}"
        assert len(outputs(notebook, "image/png")) == SHOWN[name]["figures"], name
        assert len(outputs(notebook, "text/markdown")) == SHOWN[name]["tables"], name
        results = printed_json(notebook)  # the numbers of the real-data run
        assert results, name
        assert dict(notebook.metadata) == {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        }, f"{name}: volatile notebook metadata (run scripts/execute_notebooks.py)"
        assert not any("execution" in cell.metadata for cell in code), f"{name}: cell timings stored"
        stderr = [output.text for cell in code for output in cell.outputs if output.get("name") == "stderr"]
        assert not any("it/s]" in text for text in stderr), f"{name}: a progress bar is stored"


def test_stored_quickstart_shows_a_trained_teacher_and_both_students() -> None:
    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    results = printed_json(notebook)
    assert min(results["teacher"], results["vanilla"], results["kd"]) > 0.35  # real data (tiny data: near chance)


def test_quickstart_trains_a_teacher_distils_it_and_plots(
    cifar_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook, kernel_python = execute("quickstart.ipynb", cifar_folder, tmp_path, monkeypatch)
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    results = printed_json(notebook)
    assert set(results) == {"teacher", "vanilla", "kd", "figure"}
    assert all(0 <= results[key] <= 1 for key in ("teacher", "vanilla", "kd"))
    assert Path(results["figure"]).stat().st_size > 0
    assert len(outputs(notebook, "image/png")) == 1  # the comparison figure, shown inline
    assert len(outputs(notebook, "text/markdown")) == 1  # the results table
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
    assert 0 <= results["at_student_acc"] <= 1 and results["at_term"] > 0
    # a torchvision student and the user's teacher, no layer named: the last module before each change of
    # resolution (torchvision ResNet-18: 32 -> 16 -> 8 -> 4 -> 2 -> 1; SmallCNN: 32 -> 16 -> 8), deepest three paired
    assert results["at_student_layers"] == ["layer2", "layer3", "layer4"]
    assert results["at_teacher_layers"] == ["features.0.2", "features.1.2", "features.1"]


def test_bss_notebook_shows_boundary_samples_with_both_networks_predictions(
    cifar_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook, _ = execute("bss.ipynb", cifar_folder, tmp_path, monkeypatch)
    results = printed_json(notebook)
    assert all(0 <= results[key] <= 1 for key in ("teacher", "vanilla", "bss"))
    assert results["gallery_samples"] >= 1 and Path(results["figure"]).stat().st_size > 0
    assert results["epochs_logged"] == BUDGETS["bss.ipynb"]["student_epochs"]
    assert len(outputs(notebook, "image/png")) == 1 and len(outputs(notebook, "text/markdown")) == 2
    gallery = next(cell for cell in notebook.cells if "T: teacher, S: student" in cell.source)
    assert "the student agrees with the teacher on" in "".join(output.get("text", "") for output in gallery.outputs)


def test_dfad_notebook_shows_the_generated_images_of_every_epoch(
    cifar_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook, _ = execute("dfad.ipynb", cifar_folder, tmp_path, monkeypatch)
    results = printed_json(notebook)
    assert all(0 <= results[key] <= 1 for key in ("teacher", "dfad", "untrained"))
    assert results["epochs_shown"] == BUDGETS["dfad.ipynb"]["epochs"] == len(results["entropies"])
    assert all(0 <= value <= 1 for value in results["entropies"])
    assert all(Path(path).stat().st_size > 0 for path in results["figures"])
    assert len(outputs(notebook, "image/png")) == 2 and len(outputs(notebook, "text/markdown")) == 1
