"""What each speed option buys for a KD step on this machine: the frozen teacher, channels-last, torch.compile.

Hinton KD, ResNet-56 -> ResNet-20, CIFAR-shaped random data held in memory, batch 128, ``--threads`` threads. Each
variant trains ``--warmup + --steps`` steps in a real Lightning ``Trainer``; images/s come from the median whole
iteration (batch end to batch end: fetching, augmenting and the step). Variants are interleaved ``--repeats`` times
and the 1-minute load average is recorded before each measurement; a measurement that started with a load above
``threads + 0.5`` shared the CPU and is left out of the median when a clean one exists. Ratios are to the baseline
(the teacher run as it is, the pre-option behaviour) measured in the same run.

    python benchmarks/speed_options.py [--threads 2] [--repeats 3] [--steps 12] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import lightning.pytorch as pl
from common import IterationTimer, load_average, markdown_table, quiet_benchmark, quiet_trainer, write_results
from kd_step_time import RandomImages

from lit_kd.methods import HintonKD
from lit_kd.models import create_model

VARIANTS = {
    "baseline: teacher as is": dict(fast_teacher=False),
    "folded teacher (default)": dict(),
    "folded teacher + channels_last": dict(channels_last=True),
}
COMPILED = {
    "folded + compiled teacher": dict(compile_teacher=True),
    "folded + compiled teacher and student": dict(compile_teacher=True, compile_student=True),
}


def measure(options: dict, args: argparse.Namespace) -> tuple[float, float]:
    """Median seconds per iteration of one run, and the load average when it started."""
    pl.seed_everything(0)
    teacher = create_model(args.teacher, num_classes=10)
    module = HintonKD(create_model(args.student, num_classes=10), teacher, teacher_checkpoint=None, **options)
    timer = IterationTimer()
    load = load_average()
    trainer = quiet_trainer(max_steps=args.warmup + args.steps, limit_val_batches=0, callbacks=[timer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, RandomImages(batch_size=args.batch_size, use_cache=False))
    return statistics.median(timer.times[args.warmup - 1 :]), load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="resnet20")
    parser.add_argument("--teacher", default="resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (inductor; slow to warm up)")
    args = parser.parse_args()
    quiet_benchmark(args.threads)
    variants = {**VARIANTS, **(COMPILED if args.compile else {})}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, options in variants.items():
            runs[name].append(measure(options, args))
            print(
                f"repeat {repeat}: {name}: {args.batch_size / runs[name][-1][0]:.1f} images/s "
                f"(load {runs[name][-1][1]:.2f})",
                flush=True,
            )
    limit = args.threads + 0.5
    rows = []
    for name, measured in runs.items():
        clean = [seconds for seconds, load in measured if load <= limit] or [seconds for seconds, _ in measured]
        rows.append(
            {
                "variant": name,
                "images/s (median)": args.batch_size / statistics.median(clean),
                "images/s per repeat": ", ".join(f"{args.batch_size / s:.0f}" for s, _ in measured),
                "load at start": ", ".join(f"{load:.2f}" for _, load in measured),
                "clean repeats": len([1 for _, load in measured if load <= limit]),
            }
        )
    baseline = rows[0]["images/s (median)"]
    for row in rows:
        row["ratio to baseline"] = row["images/s (median)"] / baseline
    table = markdown_table(rows) + (
        f"\n\nHinton KD {args.teacher} -> {args.student}, batch {args.batch_size}, {args.threads} threads, "
        f"{args.steps} timed iterations after {args.warmup} warm-up, {args.repeats} interleaved repeats; a repeat is "
        f"clean when the 1-minute load average was at most {limit} when it started."
    )
    write_results("speed_options", {"settings": vars(args), "rows": rows}, table)


if __name__ == "__main__":
    main()
