"""Helpers shared by the benchmark scripts: machine description, result files, markdown tables."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_kd.cli import SIGTERM_EXIT_STATUS

RESULTS_DIR = Path(__file__).parent / "results"


class StepTimer(pl.Callback):
    """Wall time of each training step, from ``on_train_batch_start`` to ``on_train_batch_end``."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.times.append(time.perf_counter() - self._start)


class IterationTimer(pl.Callback):
    """Wall time of whole training iterations, from one ``on_train_batch_end`` to the next.

    Unlike :class:`StepTimer` it includes fetching the batch, moving and augmenting it: what a user's images/s is.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now


def cpuinfo(field: str, path: Path = Path("/proc/cpuinfo")) -> str:
    """The first value of ``field`` in Linux's ``/proc/cpuinfo`` (``"model name"``, ``"flags"``), empty where it is not
    readable: float32 results depend on the CPU's kernels, so benchmarks record which CPU ran them."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    fields = (line.partition(":") for line in text.splitlines())
    return next((value.strip() for name, _, value in fields if name.strip() == field), "")


def load_average() -> float:
    """The 1-minute load average (how many processes wanted the CPU), to flag measurements that shared it."""
    return os.getloadavg()[0]


def busy_seconds() -> float:
    """CPU seconds every process of this machine has used since boot (``/proc/stat``: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds this process has used (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def quiet_trainer(**kwargs: Any) -> pl.Trainer:
    """A ``Trainer`` for benchmarks: one device, no logger, checkpoints, progress bar, summary or sanity check."""
    defaults: dict[str, Any] = dict(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def environment() -> dict[str, Any]:
    """Where and with what a benchmark ran: commit, versions, CPU/GPU, threads."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpuinfo("model name"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Render rows (dicts with the same keys) as a markdown table."""
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [f"{value:.4g}" if isinstance(value, float) else str(value) for value in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], table: str) -> Path:
    """Write ``benchmarks/results/<name>.json`` and ``<name>.md`` and print the table."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"environment": environment(), **payload}
    json_path = RESULTS_DIR / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(table + "\n")
    print(table)
    print(f"written: {json_path}")
    return json_path


def quiet_benchmark(threads: int) -> None:
    """Use ``threads`` torch threads (the machine may be shared) and silence Lightning's warnings that do not apply
    to in-memory benchmark data (no DataLoader workers, pytree deprecation, GAN modules without validation)."""
    torch.set_num_threads(threads)
    for message in (".*does not have many workers.*", ".*LeafSpec.*", ".*val_dataloader.*validation_step.*"):
        warnings.filterwarnings("ignore", message)


def run_stoppable(main: Callable[[], None]) -> None:
    """Run a resumable benchmark's ``main``. Stopped by SIGTERM during a fit, Lightning raises ``SIGTERMException``, a
    ``SystemExit`` of status 0, after lit-kd's checkpoint callback saved ``last.ckpt`` at the step reached: exit with
    143 instead, as ``lit-kd fit`` does, so that a queue or a scheduler tells a stopped run from a finished one.
    Running the same command again resumes it."""
    try:
        main()
    except SIGTERMException:
        print(f"{Path(sys.argv[0]).name}: stopped by SIGTERM; run the same command to resume", file=sys.stderr)
        raise SystemExit(SIGTERM_EXIT_STATUS) from None
