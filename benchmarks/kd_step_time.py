"""Overhead of the KD training step: one HintonKD step against its parts measured alone.

Target: a KD step costs at most 10% more than (student training step) + (teacher forward without gradients),
each measured alone on the same batch size. Steps are timed inside a real Lightning ``Trainer`` (from
``on_train_batch_start`` to ``on_train_batch_end``: forward, backward, optimiser step, logging), and the teacher
forward in a plain loop under ``torch.no_grad()``. The three measurements are interleaved ``--repeats`` times and
each takes the median step of its best repeat, because the machine is shared.

    python benchmarks/kd_step_time.py [--student resnet20] [--teacher resnet56] [--batch-size 64] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning.pytorch as pl
import torch
from common import StepTimer, markdown_table, quiet_trainer, write_results

from lit_kd.data import InMemoryImageDataModule, LabelledImages
from lit_kd.methods import HintonKD, StudentModule, SupervisedModule
from lit_kd.models import create_model


class RandomImages(InMemoryImageDataModule):
    """Random CIFAR-shaped data: the step time does not depend on the pixels."""

    num_classes, image_size = 10, 32
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def load_split(self, split: str) -> LabelledImages:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (2048, 3, 32, 32), dtype=torch.uint8, generator=generator)
        return LabelledImages(images, torch.randint(0, 10, (2048,), generator=generator))


def trainer_step_seconds(module: StudentModule, args: argparse.Namespace) -> float:
    timer = StepTimer()
    trainer = quiet_trainer(max_steps=args.steps + 2, limit_val_batches=0, callbacks=[timer])
    trainer.fit(module, RandomImages(batch_size=args.batch_size, use_cache=False))
    return statistics.median(timer.times[2:])  # the first steps warm up allocators


def teacher_forward_seconds(teacher: torch.nn.Module, args: argparse.Namespace) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher = teacher.to(device).eval()
    images = torch.randn(args.batch_size, 3, 32, 32, device=device)
    times = []
    with torch.no_grad():
        for _ in range(args.steps + 2):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            teacher(images)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="resnet20")
    parser.add_argument("--teacher", default="resnet56")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pl.seed_everything(0)

    best = {"kd": float("inf"), "student": float("inf"), "teacher": float("inf")}
    for _ in range(args.repeats):
        teacher = create_model(args.teacher, num_classes=10)
        kd = HintonKD(create_model(args.student, num_classes=10), teacher, teacher_checkpoint=None)
        best["kd"] = min(best["kd"], trainer_step_seconds(kd, args))
        best["student"] = min(
            best["student"], trainer_step_seconds(SupervisedModule(create_model(args.student, num_classes=10)), args)
        )
        best["teacher"] = min(
            best["teacher"], teacher_forward_seconds(create_model(args.teacher, num_classes=10), args)
        )
        print({k: round(v * 1000, 1) for k, v in best.items()}, "ms (best so far)", flush=True)

    parts = best["student"] + best["teacher"]
    rows = [
        {"measurement": f"{args.student} training step alone", "ms": best["student"] * 1000},
        {"measurement": f"{args.teacher} forward alone (no_grad)", "ms": best["teacher"] * 1000},
        {"measurement": "sum of the parts", "ms": parts * 1000},
        {"measurement": f"HintonKD step ({args.teacher} -> {args.student})", "ms": best["kd"] * 1000},
    ]
    ratio = best["kd"] / parts
    table = markdown_table(rows) + f"\n\nKD step / sum of parts = {ratio:.3f} (target <= 1.10)"
    write_results("kd_step_time", {"settings": vars(args), "rows": rows, "ratio": ratio}, table)


if __name__ == "__main__":
    main()
