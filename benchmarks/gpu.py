"""Images/s and peak GPU memory of every method's CIFAR-10 recipe, with and without each speed option; the data path.

One command on a GPU machine (it also runs on the CPU, ``--device cpu``, as a smoke test)::

    python benchmarks/gpu.py --data-dir <folder with cifar10/> [--steps 30] [--methods kd bss ...]

For each recipe and option set (``32-true``; ``16-mixed`` AMP; ``channels_last``; ``torch.compile`` of the trained
networks and the teacher; all three), the recipe's own method, networks and batch size train ``--warmup`` +
``--steps`` steps on the real images (teachers with random weights: the cost does not depend on them) with no
validation (logs and checkpoints go to a temporary folder); images/s come from the median whole iteration, memory from
``torch.cuda.max_memory_allocated``. The data-path table compares lit-kd's in-memory loader (batched augmentation on
the GPU) with torchvision's ``ImageFolder`` + ``DataLoader`` (per-image PIL transforms in ``--workers`` processes,
pinned memory) on the same images, moving each batch to the GPU, without a network. Writes
``benchmarks/results/gpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import IterationTimer, markdown_table, quiet_benchmark, write_results

from lit_kd.lightning_cli import LitKDCLI

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "cifar10"
METHODS = {
    "vanilla": "vanilla_resnet20.yaml",
    "kd": "kd_resnet56_resnet20.yaml",
    "bss": "bss_resnet56_resnet20.yaml",
    "fitnets": "fitnets_resnet56_resnet20.yaml",
    "at": "at_resnet56_resnet20.yaml",
    "ama": "ama_resnet56_resnet20.yaml",
    "ensemble": "ensemble3_resnet20.yaml",
    "born_again": "born_again_resnet20.yaml",
    "seeds": "seeds_resnet20.yaml",
    "dml": "dml_resnet32_wrn_40_4.yaml",
    "afd": "afd_resnet32_wrn_40_4.yaml",
    "dfad": "dfad_resnet34_resnet18.yaml",
}
OPTION_SETS = {
    "32-true": {"precision": "32-true", "channels_last": "false", "compile": "false"},
    "16-mixed (AMP)": {"precision": "16-mixed", "channels_last": "false", "compile": "false"},
    "channels_last": {"precision": "32-true", "channels_last": "true", "compile": "false"},
    "compile": {"precision": "32-true", "channels_last": "false", "compile": "true"},
    "AMP + channels_last + compile": {"precision": "16-mixed", "channels_last": "true", "compile": "true"},
}


def recipe_run(method: str, options: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    """Train ``method``'s recipe briefly with ``options``; images/s and peak memory (GiB)."""
    recipe = RECIPES / METHODS[method]
    data_key = "--data.evaluation.data_dir" if method == "dfad" else "--data.data_dir"
    overrides = [
        "--config",
        str(recipe),
        data_key,
        str(args.data_dir),
        "--trainer.accelerator",
        args.device,
        "--trainer.devices",
        "1",
        "--trainer.max_epochs",
        "-1",
        "--trainer.max_steps",
        str(args.warmup + args.steps),
        "--trainer.limit_val_batches",
        "0",
        "--trainer.logger",
        "true",  # the recipes' LearningRateMonitor needs one (TensorBoard, in the work folder)
        "--trainer.default_root_dir",
        args.work_dir,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.precision",
        options["precision"],
        "--model.init_args.channels_last",
        options["channels_last"],
        "--model.init_args.compile_student",
        options["compile"],
    ]
    text = recipe.read_text()
    if "teacher:" in text or "teachers:" in text:
        overrides += ["--model.init_args.teacher_checkpoint", "null"]
        if "compile" in options and "teacher:" in text:
            overrides += ["--model.init_args.compile_teacher", options["compile"]]
    if "teachers:" in text:
        overrides += ["--model.init_args.teacher_checkpoints", "null"]
    cli = LitKDCLI(args=overrides, run=False)
    timer = IterationTimer()
    cli.trainer.callbacks.append(timer)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    batch = cli.datamodule.batch_size
    seconds = statistics.median(timer.times[args.warmup - 1 :])
    memory = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
    return {"images/s": batch / seconds, "peak memory (GiB)": memory}


def data_path_rows(args: argparse.Namespace) -> list[dict[str, object]]:
    """lit-kd's loader against torchvision ImageFolder + DataLoader, batches moved (and augmented) on the device."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    from lit_kd.data import CIFAR10DataModule

    device = torch.device(args.device)
    rows = []
    data = CIFAR10DataModule(args.data_dir, batch_size=args.data_batch_size)
    data.setup("fit")

    class Training:  # what on_after_batch_transfer asks of a trainer: augment as in training
        training, world_size, global_rank, overfit_batches = True, 1, 0, 0

    data.trainer = Training()
    loader = data.train_dataloader()

    def time_batches(batches, transfer) -> float:
        start, count = None, 0
        for index, batch in enumerate(batches):
            transfer(batch)
            if index == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            elif index > 2:
                count += len(batch[0])
            if index >= args.data_batches + 2:
                break
        if device.type == "cuda":
            torch.cuda.synchronize()
        return count / (time.perf_counter() - start)

    lit_kd = time_batches(loader, lambda b: data.on_after_batch_transfer((b[0].to(device), b[1].to(device)), 0))
    rows.append({"pipeline": "lit-kd in-memory loader, batched crop/flip/normalise on the device", "images/s": lit_kd})
    normalise = transforms.Normalize(CIFAR10DataModule.mean, CIFAR10DataModule.std)
    folder = ImageFolder(
        Path(args.data_dir) / "cifar10" / "train",
        transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalise]
        ),
    )
    for workers in args.workers:
        batches = torch.utils.data.DataLoader(
            folder,
            batch_size=args.data_batch_size,
            shuffle=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )
        rate = time_batches(batches, lambda b: (b[0].to(device, non_blocking=True), b[1].to(device)))
        rows.append({"pipeline": f"torchvision ImageFolder + DataLoader, {workers} workers", "images/s": rate})
    for row in rows:
        row["ratio to lit-kd"] = row["images/s"] / lit_kd
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=lambda p: Path(p).resolve(), required=True, help="folder with cifar10/")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--options", nargs="+", default=list(OPTION_SETS), choices=list(OPTION_SETS))
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation happens here)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--data-batches", type=int, default=50)
    parser.add_argument("--data-batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    args.work_dir = tempfile.mkdtemp(prefix="lit-kd-gpu-bench-")
    os.chdir(args.work_dir)  # the recipes' checkpoints/ go there
    quiet_benchmark(args.threads)
    warnings.filterwarnings("ignore")
    rows = []
    for method in args.methods:
        for name in args.options:
            options = OPTION_SETS[name]
            if args.device == "cpu" and options["precision"] == "16-mixed":
                continue  # fp16 AMP is a GPU option (Lightning turns it into bf16 on the CPU)
            result = recipe_run(method, options, args)
            rows.append({"recipe": METHODS[method], "options": name, **result})
            print(rows[-1], flush=True)
    for row in rows:
        base = next(r for r in rows if r["recipe"] == row["recipe"] and r["options"] == "32-true")
        row["speed-up"] = row["images/s"] / base["images/s"]
    data_rows = data_path_rows(args)
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    table = (
        f"Recipes on {device}: {args.steps} timed steps after {args.warmup} warm-up (compilation untimed)\n\n"
        + markdown_table(rows)
        + "\n\nData path (no network)\n\n"
        + markdown_table(data_rows)
    )
    write_results("gpu" if args.device == "cuda" else "gpu_smoke_cpu", {"rows": rows, "data": data_rows}, table)


if __name__ == "__main__":
    main()
