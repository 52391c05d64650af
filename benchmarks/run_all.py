"""Run every method's benchmark and write one results table (``benchmarks/results/all.md`` and ``all.json``).

Each benchmark is its own script (``benchmarks/<name>.py``) that writes ``benchmarks/results/<name>.json`` and
``.md``; this script runs them one after the other in subprocesses (one failure does not stop the others) and then
gathers every result file into one report that records the machine, the commit and each benchmark's own command.

Examples:
    python benchmarks/run_all.py --data-dir ~/.cache/lit-kd --teacher /tmp/lit-kd-bench/teacher_resnet20.ckpt
    python benchmarks/run_all.py --only data_pipeline kd_step_time --data-dir ~/.cache/lit-kd
    python benchmarks/run_all.py --collect-only          # no runs: rebuild all.md/all.json from the result files
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS_DIR, environment

BENCHMARKS_DIR = Path(__file__).parent

#: Benchmark name -> its arguments; ``{data}``, ``{teacher}``, ``{utkface_teacher}``, ``{adapted_teacher}`` come
#: from this script's options. Budgets are each script's own defaults (the ones behind the closing notes' figures).
BENCHMARKS: dict[str, list[str]] = {
    "data_pipeline": ["--data-dir", "{data}"],
    "kd_step_time": [],
    "cifar10_accuracy": ["--data-dir", "{data}", "--teacher", "{teacher}"],
    "bss": ["--data-dir", "{data}", "--teacher", "{teacher}"],
    "online": ["--data-dir", "{data}"],
    "ensemble": ["--data_dir", "{data}"],
    "dfad": ["--data-dir", "{data}", "--teacher", "{teacher}"],
    "cgan_kd": ["--data-dir", "{data}", "--teacher", "{teacher}", "--utkface-teacher", "{utkface_teacher}"],
    "speed_options": ["--compile"],
    "peer_throughput": ["--data-dir", "{data}/cifar10", "--compiled"],
    "gains": ["--data-dir", "{data}", "--teacher-checkpoint", "{adapted_teacher}"],
}


def run_benchmark(name: str, arguments: list[str], threads: int) -> dict[str, object]:
    """Run ``benchmarks/<name>.py`` with ``arguments``; returns its exit status, wall time and log file."""
    script = BENCHMARKS_DIR / f"{name}.py"
    if not script.exists():
        return {"status": "missing", "seconds": 0.0, "log": None}
    log = RESULTS_DIR / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    environment_variables = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with log.open("w") as output:
        completed = subprocess.run(
            [sys.executable, str(script), *arguments],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment_variables,
            cwd=BENCHMARKS_DIR.parent,
        )
    status = "ok" if completed.returncode == 0 else f"failed (exit {completed.returncode}, see {log})"
    return {"status": status, "seconds": time.perf_counter() - start, "log": str(log)}


def collect(names: list[str], runs: dict[str, dict[str, object]]) -> tuple[str, dict[str, object]]:
    """One markdown report and one JSON payload from the result files of ``names``."""
    sections, payloads = [], {}
    for name in names:
        json_path, md_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
        payload = json.loads(json_path.read_text()) if json_path.exists() else None
        run = runs.get(name)
        heading = f"## {name}"
        if run is not None:
            heading += f" (this run: {run['status']}, {run['seconds']:.0f} s)"
        if payload is None:
            sections.append(f"{heading}\n\nno results yet: run `python benchmarks/{name}.py --help`")
            continue
        payloads[name] = payload
        recorded = payload.get("environment", {})
        command = recorded.get("command") or payload.get("command", "not recorded")
        where = f"commit {recorded.get('commit', 'not recorded')}, {recorded.get('processor', 'machine not recorded')}"
        table = md_path.read_text().strip() if md_path.exists() else str(payload.get("table", "(no table)"))
        sections.append(f"{heading}\n\n`{command}` ({where})\n\n{table}")
    return "\n\n".join(sections), payloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path("~/.cache/lit-kd").expanduser()), help="holds cifar10/ etc.")
    parser.add_argument("--teacher", default="/tmp/lit-kd-bench/teacher_resnet20.ckpt", help="CIFAR-10 teacher")
    parser.add_argument(
        "--utkface-teacher", default="/tmp/lit-kd-bench/utkface_teacher.ckpt", help="UTKFace age teacher (ResNet-8)"
    )
    parser.add_argument(
        "--adapted-teacher",
        default="checkpoints/cifar10/adapt_pretrained_resnet56/last.ckpt",
        help="the pretrained ResNet-56 adapted to the data (recipes/cifar10/adapt_pretrained_resnet56.yaml)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these (the report still gathers all)"
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each benchmark")
    parser.add_argument("--collect-only", action="store_true", help="run nothing, only gather the result files")
    args = parser.parse_args()

    names = args.only or list(BENCHMARKS)
    runs: dict[str, dict[str, object]] = {}
    if not args.collect_only:
        for name in names:
            values = dict(
                data=args.data_dir,
                teacher=args.teacher,
                utkface_teacher=args.utkface_teacher,
                adapted_teacher=args.adapted_teacher,
            )
            arguments = [argument.format(**values) for argument in BENCHMARKS[name]]
            print(f"running {name} ...", flush=True)
            runs[name] = run_benchmark(name, arguments, args.threads)
            print(f"  {runs[name]['status']} in {runs[name]['seconds']:.0f} s", flush=True)

    report, payloads = collect(list(BENCHMARKS), runs)  # the report always covers every benchmark
    machine = environment()
    header = (
        f"# lit-kd benchmarks\n\nGathered at commit {machine['commit']} on {machine['processor']} "
        f"({machine['cpu_count']} CPUs, GPU: {machine['cuda']}), torch {machine['torch']}, "
        f"lightning {machine['lightning']}. Each section names the command and commit of its own run."
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "all.md").write_text(f"{header}\n\n{report}\n")
    all_json = {"environment": machine, "runs": runs, "results": payloads}
    (RESULTS_DIR / "all.json").write_text(json.dumps(all_json, indent=2) + "\n")
    print(f"written: {RESULTS_DIR / 'all.md'} and all.json")
    if any(run["status"] != "ok" for run in runs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
