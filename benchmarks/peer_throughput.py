"""lit-kd against torchdistill on the same pair, batch and machine: training images/s, interleaved, with ratios.

Hinton KD and attention transfer (the like-for-like feature method), ResNet-56 -> ResNet-20 on the CIFAR-10 JPEG
images, batch 128, ``--threads`` compute threads. Each side runs as its own process, one measurement at a time,
alternating lit-kd / torchdistill for ``--repeats`` rounds:

* lit-kd: this project's environment (``sys.executable``): ``HintonKD`` / ``AttentionTransfer`` with their defaults
  (the teacher's folded inference copy, channels-last), ``CIFAR10DataModule`` (images decoded once into memory,
  augmented in batches), a ``Trainer`` on the CPU. Images/s from the median whole iteration (batch end to batch end).
* torchdistill 1.1.5: its own models, ``ImageFolder`` pipeline with 2 DataLoader workers and training box, run by
  ``benchmarks/peer_torchdistill.py`` in a separate environment (``--peer-python``; torchdistill is not a lit-kd
  dependency: ``python3 -m venv /work/peer_venv && /work/peer_venv/bin/pip install torch==2.14.1
  torchvision==0.29.1 torchdistill==1.1.5``). Its teacher is put in eval mode (``--teacher-eval``), as lit-kd's is;
  torchdistill's example leaves it in training mode.

Teachers have random weights on both sides (a network costs the same per image whatever its weights). A measurement
is clean when the 1-minute load average was below 1.5 when it started and other processes used at most 10% of the
machine's CPU time while it ran (``/proc/stat`` less the measuring process's own time); only clean measurements enter
the medians when a side has any.

With ``--memoised`` a fourth side runs Hinton KD with ``teacher_memo`` (lit-kd's memoised teacher outputs), filled by
one untimed run of the same batches first: the step of a sweep's later runs, whose teacher targets are all stored.

    python benchmarks/peer_throughput.py --data-dir /work/peer_data/cifar10 --peer-python /work/peer_venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import busy_seconds  # noqa: E402  (benchmarks/ is not a package)


def lit_kd_side(args: argparse.Namespace) -> dict:
    """One lit-kd measurement in this process (called with ``--side lit-kd``)."""
    import lightning.pytorch as pl
    from common import IterationTimer, load_average, quiet_benchmark, quiet_trainer

    from lit_kd.data import CIFAR10DataModule
    from lit_kd.methods import AttentionTransfer, HintonKD
    from lit_kd.models import create_model

    quiet_benchmark(args.threads)
    warnings.simplefilter("ignore")
    pl.seed_everything(args.seed)
    data = CIFAR10DataModule(args.data_dir, batch_size=args.batch_size)
    data.setup("fit")  # decoded (or read from the cache) before timing, like torchdistill's untimed setup
    student, teacher = create_model("resnet20", num_classes=10), create_model("resnet56", num_classes=10)
    options: dict = {"compile_student": True, "compile_teacher": True} if args.compiled else {}
    if args.memo:
        options["teacher_memo"] = args.memo
    if args.method == "kd":
        module = HintonKD(student, teacher, teacher_checkpoint=None, **options)
    else:
        module = AttentionTransfer(student, teacher, beta=1000.0, teacher_checkpoint=None, **options)
    timer = IterationTimer()
    load = load_average()
    trainer = quiet_trainer(
        accelerator="cpu", max_steps=args.warmup + args.steps, limit_val_batches=0, callbacks=[timer]
    )
    trainer.fit(module, data)
    times = timer.times[args.warmup - 1 :]
    return {
        "images_per_s": args.batch_size / statistics.median(times),
        "iteration_times_s": times,
        "loadavg_before": load,
    }


def measure(side: str, method: str, args: argparse.Namespace) -> dict:
    """Run one measurement of ``side`` in a subprocess and return its record."""
    common = [
        "--method",
        method,
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--data-dir",
        str(args.data_dir),
    ]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "record.json"
        if side.startswith("lit-kd"):
            compiled = ["--compiled"] if side == "lit-kd compiled" else []
            compiled += ["--memo", str(args.memo_file)] if side == "lit-kd memoised" else []
            command = [sys.executable, str(HERE / "peer_throughput.py"), "--side", "lit-kd", *common, *compiled]
            command += ["--json-out", str(out)]
        else:
            command = [
                args.peer_python,
                str(HERE / "peer_torchdistill.py"),
                *common,
                "--teacher-eval",
                "--json-out",
                str(out),
            ]
        wait_for_quiet(args.quiet_load, args.quiet_wait)
        busy, children, start = busy_seconds(), children_seconds(), time.perf_counter()
        subprocess.run(command, check=True, cwd=HERE, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        others = max(0.0, busy_seconds() - busy - (children_seconds() - children)) / (elapsed * (os.cpu_count() or 1))
        return {**json.loads(out.read_text()), "others_cpu_share": others}


def wait_for_quiet(limit: float, timeout: float) -> None:
    """Wait (at most ``timeout`` seconds) until the 1-minute load average is below ``limit``.

    Back-to-back measurements raise the load themselves: it decays with a one-minute time constant once they stop.
    """
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        time.sleep(5)


def children_seconds() -> float:
    """CPU seconds of this process's finished children (and their own children, e.g. DataLoader workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with train/ and test/ class folders")
    parser.add_argument("--peer-python", default="/work/peer_venv/bin/python", help="interpreter with torchdistill")
    parser.add_argument("--methods", nargs="+", default=["kd", "at"], choices=["kd", "at"])
    parser.add_argument("--method", default="kd", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["lit-kd"], help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compiled", action="store_true", help="also measure lit-kd with torch.compile on both networks"
    )
    parser.add_argument("--memoised", action="store_true", help="also measure Hinton KD with the teacher memo filled")
    parser.add_argument("--memo", help=argparse.SUPPRESS)
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for a load average below this")
    parser.add_argument("--quiet-wait", type=float, default=180, help="... for at most this many seconds")
    args = parser.parse_args()
    if args.side == "lit-kd":
        args.json_out.write_text(json.dumps(lit_kd_side(args)))
        return

    from common import markdown_table, write_results

    limit = 1.5

    def load_of(record: dict) -> float:
        value = record["loadavg_before"]
        return value[0] if isinstance(value, list) else value

    def is_clean(record: dict) -> bool:
        return load_of(record) < limit and record.get("others_cpu_share", 0.0) <= 0.10

    sides = ("lit-kd", "torchdistill", *(("lit-kd compiled",) if args.compiled else ()))
    sides += ("lit-kd memoised",) if args.memoised else ()
    records: dict[str, dict[str, list[dict]]] = {method: {side: [] for side in sides} for method in args.methods}
    args.memo_file = Path(tempfile.mkdtemp(prefix="peer_memo_")) / "memo.safetensors"
    if args.memoised and "kd" in args.methods:
        measure("lit-kd memoised", "kd", args)  # untimed: fills the memo with these batches' teacher outputs
    for repeat in range(args.repeats):
        for method in args.methods:
            for side in sides:
                if side == "lit-kd memoised" and method != "kd":
                    continue
                record = measure(side, method, args)
                records[method][side].append(record)
                print(
                    f"repeat {repeat}: {method} {side}: {record['images_per_s']:.1f} images/s "
                    f"(load {load_of(record):.2f}, others {100 * record['others_cpu_share']:.0f}% of the CPU)",
                    flush=True,
                )

    rows = []
    for method, measured_sides in records.items():
        medians = {}
        for side, measured in measured_sides.items():
            if not measured:
                continue
            clean = [r["images_per_s"] for r in measured if is_clean(r)]
            medians[side] = statistics.median(clean or [r["images_per_s"] for r in measured])
            rows.append(
                {
                    "method": method,
                    "side": side,
                    "images/s (median)": medians[side],
                    "per repeat": ", ".join(f"{r['images_per_s']:.0f}" for r in measured),
                    "load at start": ", ".join(f"{load_of(r):.2f}" for r in measured),
                    "others' CPU %": ", ".join(
                        f"{100 * r.get('others_cpu_share', float('nan')):.0f}" for r in measured
                    ),
                    "clean": sum(is_clean(r) for r in measured),
                }
            )
        for side in sides:
            if side != "torchdistill" and side in medians:
                ratio = medians[side] / medians["torchdistill"]
                paired = [
                    ours["images_per_s"] / theirs["images_per_s"]
                    for ours, theirs in zip(measured_sides[side], measured_sides["torchdistill"], strict=True)
                ]
                rows.append(
                    {
                        "method": method,
                        "side": f"ratio {side} / torchdistill (of medians; per repeat, its median)",
                        "images/s (median)": ratio,
                        "per repeat": ", ".join(f"{value:.2f}" for value in paired),
                        "load at start": f"median {statistics.median(paired):.3f}",
                        "others' CPU %": "",
                        "clean": "",
                    }
                )
    table = markdown_table(rows) + (
        f"\n\nResNet-56 -> ResNet-20, batch {args.batch_size}, {args.threads} compute threads (torchdistill: plus 2 "
        f"DataLoader workers), {args.steps} timed iterations after {args.warmup} warm-up, {args.repeats} interleaved "
        f"repeats; clean = the 1-minute load average was below {limit} when the measurement started and other "
        "processes used at most 10% of the CPU during it (medians of the clean repeats where a side has any). The "
        "compiled side's warm-up includes compiling (not timed). The memoised side reads every teacher target from "
        "a memo filled by one untimed run of the same batches."
    )
    write_results(
        "peer_throughput",
        {"settings": {k: str(v) for k, v in vars(args).items()}, "records": records, "rows": rows},
        table,
    )


if __name__ == "__main__":
    main()
