"""What the teacher memo saves a sweep: KD runs with the teacher recomputed, memoised, and the student-only floor.

A sweep trains several KD students against one teacher on one data stream (the same images, order and
augmentation draws: ``data.seed`` pinned, run seeds that differ only in the student's initialisation, as a sweep over
temperatures, weights or methods does). Three interleaved arms, ``--runs`` runs each, in the order recomputed,
memoised, floor for run 1, then for run 2, ...:

* recomputed: :class:`~lit_kd.methods.HintonKD` with the frozen teacher run on every batch (lit-kd's default);
* memoised: the same runs with ``teacher_memo`` (one file for the whole sweep, empty at the start): the first run
  computes and stores each (sample, view) entry, later runs read them;
* floor: :class:`~lit_kd.methods.SupervisedModule`, the same student and data with no teacher.

For each run: fit seconds, the 1-minute load average at its start, the share of the machine's CPU time that other
processes used during it (from ``/proc/stat``: a run with more than 10% is marked shared, and not clean), the memo's
hits and misses, and whether the memoised student's final weights equal the recomputed one's (max abs difference).
Written to ``benchmarks/results/teacher_memo.{json,md}``.

    python benchmarks/teacher_memo.py --data-dir /tmp/data --weights-dir ../shared/weights
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from common import (
    busy_seconds,
    load_average,
    markdown_table,
    own_seconds,
    quiet_benchmark,
    quiet_trainer,
    write_results,
)

from lit_kd.data import CIFAR10DataModule
from lit_kd.methods import HintonKD, SupervisedModule
from lit_kd.models import PretrainedNetwork, create_model


def fit(args: argparse.Namespace, arm: str, run: int, memo: Path) -> dict[str, Any]:
    """One run of ``arm``; its time, load, other processes' CPU share, memo counts and final student weights."""
    pl.seed_everything(run)  # the student's initialisation; the data stream is pinned by data.seed
    student = create_model("resnet8", num_classes=10)
    if arm == "floor":
        module: Any = SupervisedModule(student)
    else:
        teacher = PretrainedNetwork("cifar10_resnet56", weights_dir=args.weights_dir)
        module = HintonKD(student, teacher, teacher_memo=str(memo) if arm == "memoised" else None)
    data = CIFAR10DataModule(
        args.data_dir, batch_size=128, subset_size=args.subset, seed=0, cache_dir=args.cache_dir, val_size=0
    )
    trainer = quiet_trainer(max_epochs=args.epochs, limit_val_batches=0)
    load, busy, own, start = load_average(), busy_seconds(), own_seconds(), time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    others = max(0.0, (busy_seconds() - busy) - (own_seconds() - own)) / (seconds * (os.cpu_count() or 1))
    memo_state = getattr(module, "teacher_memo", None)
    return {
        "arm": arm,
        "run": run,
        "seconds": round(seconds, 1),
        "load_at_start": round(load, 2),
        "others_cpu_share": round(others, 3),
        "clean": others <= 0.10,
        "hits": memo_state.hits if memo_state is not None else None,
        "misses": memo_state.misses if memo_state is not None else None,
        "weights": torch.cat([p.detach().flatten() for p in module.student.parameters()]),
    }


def summary(rows: list[dict[str, Any]], arm: str) -> dict[str, Any]:
    """Total seconds of an arm and its mean seconds per run after the first."""
    times = [row["seconds"] for row in rows if row["arm"] == arm]
    after_first = round(statistics.mean(times[1:]), 1) if len(times) > 1 else float("nan")
    return {"arm": arm, "total s": round(sum(times), 1), "per run after the first s": after_first}


def main() -> None:
    """Run the three arms interleaved, write the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding cifar10/ (the image-folder export)")
    parser.add_argument("--weights-dir", default=None, help="folder of the pretrained ResNet-56 (else $LIT_KD_WEIGHTS)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="teacher_memo", help="results file name")
    args = parser.parse_args()
    quiet_benchmark(args.threads)
    memo = Path(tempfile.mkdtemp(prefix="teacher_memo_")) / "memo.safetensors"
    rows = []
    for run in range(args.runs):
        for arm in ("recomputed", "memoised", "floor"):
            rows.append(fit(args, arm, run, memo))
            print({key: value for key, value in rows[-1].items() if key != "weights"}, flush=True)
    for row in rows:
        row["max abs weight diff vs recomputed"] = None
        if row["arm"] == "memoised":
            reference = next(r for r in rows if r["arm"] == "recomputed" and r["run"] == row["run"])
            row["max abs weight diff vs recomputed"] = float((row["weights"] - reference["weights"]).abs().max())
    for row in rows:
        del row["weights"]
    summaries = [summary(rows, arm) for arm in ("recomputed", "memoised", "floor")]
    recomputed, memoised, floor = (entry["per run after the first s"] for entry in summaries)
    teacher_share = (memoised - floor) / (recomputed - floor) if recomputed > floor else float("nan")
    note = (
        f"\n\nResNet-56 (pretrained) -> ResNet-8, Hinton KD, {args.subset} CIFAR-10 training images, {args.epochs} "
        f"epochs, batch 128, {args.runs} runs per arm interleaved, {args.threads} threads; one data stream (data seed "
        f"0), run seed = student initialisation. After the first run the memoised arm pays "
        f"{100 * teacher_share:.0f}% of the recomputed teacher's cost above the student-only floor. clean = other "
        "processes used at most 10% of the machine's CPU time during the run."
    )
    table = markdown_table(rows) + "\n\n" + markdown_table(summaries) + note
    write_results(args.name, {"args": vars(args), "rows": rows, "summaries": summaries}, table)


if __name__ == "__main__":
    main()
