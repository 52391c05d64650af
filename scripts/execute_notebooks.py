"""Execute the notebooks in place, so that they are committed with their outputs, and strip volatile metadata.

Each notebook runs top to bottom in the ``python3`` kernel (nbclient) with ``notebooks/`` as its working folder, on
the data folder given here (its ``LIT_KD_NOTEBOOK_DATA``) and the pretrained weights (``LIT_KD_WEIGHTS``), at the
budget written in its parameter cell. Afterwards what changes from one execution to the next without the results
changing is removed, so that a diff shows only what a reader sees: the per-cell timing that nbclient records, the
kernel's version details, widget state. The outputs (text, tables, figures) stay. Run it after changing a notebook:

    tar xzf ../shared/data/cifar10-jpg.tar.gz -C /tmp/data   # the folder then holds cifar10/{train,test}
    python scripts/execute_notebooks.py --data-dir /tmp/data --weights-dir ../shared/weights

``tests/test_notebooks.py`` checks that the stored notebooks carry their outputs and no volatile metadata, and runs
each one again on tiny generated data.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def strip_volatile_metadata(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what varies between executions of the same notebook: cell timings, the kernel's version, widget state."""
    notebook.metadata = nbformat.from_dict(
        {"kernelspec": notebook.metadata["kernelspec"], "language_info": {"name": "python"}}
    )
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
    return notebook


def execute(path: Path, timeout: int) -> float:
    """Run the notebook at ``path`` in place (working folder: its own); returns the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.perf_counter() - start
    nbformat.validate(notebook)
    nbformat.write(strip_volatile_metadata(notebook), path)
    return seconds


def main() -> None:
    """Execute the named notebooks (default: all) with the data and weights folders given."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding cifar10/ or cifar-10-batches-py/")
    parser.add_argument("--weights-dir", default=os.environ.get("LIT_KD_WEIGHTS"), help="the pretrained CIFAR ResNets")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a cell may run")
    parser.add_argument("names", nargs="*", help="notebook file names (default: every notebook)")
    args = parser.parse_args()
    os.environ["LIT_KD_NOTEBOOK_DATA"] = str(Path(args.data_dir).resolve())
    if args.weights_dir:
        os.environ["LIT_KD_WEIGHTS"] = str(Path(args.weights_dir).resolve())
    for name in ("LIT_KD_NOTEBOOK_WORK", "LIT_KD_NOTEBOOK_BUDGET"):
        os.environ.pop(name, None)  # the notebooks' own defaults: their work folder and budget
    paths = [NOTEBOOKS / name for name in args.names] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: executing ...", flush=True)
        print(f"{path.name}: {execute(path, args.timeout):.0f} s", flush=True)


if __name__ == "__main__":
    main()
