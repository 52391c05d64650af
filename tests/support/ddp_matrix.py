"""Run by ``torchrun --nproc_per_node=2`` from ``tests/test_method_matrix.py``: every method, 3 DDP steps, weights
per rank.

Usage: ``torchrun --nproc_per_node=2 tests/support/ddp_matrix.py <output dir> cifar10=<folder> utkface=<folder>``,
with the repository root on ``PYTHONPATH``. Writes ``<name>.initial.pt`` (rank 0) and ``<name>.rank<r>.pt`` for every
case of ``tests.support.method_cases.METHOD_CASES``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

from tests.support.method_cases import METHOD_CASES, trained_weights
from tests.support.training import tiny_trainer


def main(out_dir: Path, data_folders: dict[str, Path]) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    work_dir = out_dir / f"work{os.environ['RANK']}"  # teacher files: one folder per process, no write races
    work_dir.mkdir()
    for name, build in METHOD_CASES.items():
        pl.seed_everything(0)
        case = build(work_dir)
        initial = trained_weights(case.module)
        # strategy="ddp" with torchrun's environment: Lightning joins the launched processes instead of spawning;
        # find_unused_parameters stays False, so a method that leaves a parameter out of a backward pass fails here.
        trainer = tiny_trainer(
            out_dir, strategy="ddp", devices=2, limit_train_batches=3, limit_val_batches=1, callbacks=case.callbacks
        )
        trainer.fit(case.module, case.data(data_folders, 8))
        if trainer.global_rank == 0:
            torch.save(initial, out_dir / f"{name}.initial.pt")
        torch.save(trained_weights(case.module), out_dir / f"{name}.rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), {name: Path(folder) for name, folder in (arg.split("=", 1) for arg in sys.argv[2:])})
