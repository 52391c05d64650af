"""DFAD benchmark: what a short data-free run teaches a student, and what its steps cost.

(a) Accuracy: a randomly initialised student (ResNet-8) on the full CIFAR-10 test set, then the *same* student after
    DFAD from our ResNet-20 teacher for a fixed budget (``--budget-minutes`` of training, at most
    ``--max-iterations`` iterations of 5 student + 1 generator steps), no real training image touched; the teacher's
    own test accuracy for reference, and the teacher's class entropy over generated images (mode collapse check).
(b) Step time: median time of DFAD student steps and generator steps (taken from the run above, after a warm-up
    iteration), images per second, and the ratio to a Hinton KD step on real images with the same networks and batch
    measured in this run (a student step = a KD step + generating the batch).

    OMP_NUM_THREADS=1 python benchmarks/dfad.py --data-dir ~/.cache/lit-kd \\
        --teacher /tmp/lit-kd-bench/teacher_resnet20.ckpt [--budget-minutes 10] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from common import StepTimer, markdown_table, quiet_benchmark, quiet_trainer, write_results

from lit_kd.callbacks import GeneratorUpdateSchedule
from lit_kd.callbacks.dfad_gallery import class_fractions, normalized_entropy
from lit_kd.data import CIFAR10DataModule, DataFreeDataModule
from lit_kd.methods import DataFreeAdversarialDistillation, HintonKD, SupervisedModule, load_network_weights
from lit_kd.models import DFADGenerator, create_model


class RecordDiscrepancy(pl.Callback):
    """The discrepancy logged at every step: ``(generator step?, L1)``."""

    def __init__(self) -> None:
        self.values: list[tuple[bool, float]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        generator_step = module.generator_schedule.is_generator_step(trainer.global_step - 1)
        key = "train/generator_l1" if generator_step else "train/student_l1"
        self.values.append((generator_step, float(trainer.callback_metrics[key])))


def test_top1(module: pl.LightningModule, datamodule: pl.LightningDataModule) -> float:
    return 100 * quiet_trainer().test(module, datamodule, verbose=False)[0]["test/acc"]


def evaluation_data(args: argparse.Namespace) -> CIFAR10DataModule:
    return CIFAR10DataModule(args.data_dir, batch_size=500)


def kd_step_time(args: argparse.Namespace, student: torch.nn.Module) -> float:
    """Median Hinton KD step on real CIFAR-10 images, same networks and batch size (the baseline)."""
    pl.seed_everything(0, verbose=False)
    module = HintonKD(copy.deepcopy(student), create_model(args.teacher_arch, 10), teacher_checkpoint=str(args.teacher))
    data = CIFAR10DataModule(args.data_dir, batch_size=args.batch_size, subset_size=args.batch_size * 40)
    timer = StepTimer()
    quiet_trainer(max_steps=args.kd_steps + 2, limit_val_batches=0, callbacks=[timer]).fit(module, data)
    return statistics.median(timer.times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="holds cifar10/{train,test} or the batches")
    parser.add_argument("--teacher", type=Path, required=True, help="checkpoint of the CIFAR-10 teacher")
    parser.add_argument("--teacher-arch", default="resnet20")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--batch-size", type=int, default=64, help="official: 256; smaller for one CPU thread")
    parser.add_argument("--generator-width", type=int, default=32, help="base_channels (official 64; CPU recipe 32)")
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="wall-clock training budget")
    parser.add_argument("--max-iterations", type=int, default=1000, help="cap on 5+1-step iterations")
    parser.add_argument("--kd-steps", type=int, default=10, help="timed Hinton KD steps (baseline)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    quiet_benchmark(args.threads)

    teacher = create_model(args.teacher_arch, num_classes=10)
    load_network_weights(teacher, str(args.teacher))
    teacher_top1 = test_top1(SupervisedModule(teacher), evaluation_data(args))
    pl.seed_everything(0, verbose=False)
    student = create_model(args.student, num_classes=10)
    random_top1 = test_top1(SupervisedModule(copy.deepcopy(student)), evaluation_data(args))
    print(f"teacher {teacher_top1:.2f}%, random student {random_top1:.2f}%", flush=True)

    kd_seconds = kd_step_time(args, student)
    pl.seed_everything(0, verbose=False)
    generator = DFADGenerator(latent_dim=256, base_channels=args.generator_width)
    module = DataFreeAdversarialDistillation(
        copy.deepcopy(student), create_model(args.teacher_arch, 10), generator, teacher_checkpoint=str(args.teacher)
    )
    data = DataFreeDataModule(evaluation_data(args), batch_size=args.batch_size, latent_dim=256)
    timer, discrepancy = StepTimer(), RecordDiscrepancy()
    run = quiet_trainer(
        max_steps=6 * args.max_iterations,
        max_epochs=-1,
        max_time={"seconds": round(60 * args.budget_minutes)},
        limit_val_batches=0,
        callbacks=[timer, discrepancy, GeneratorUpdateSchedule(student_steps=5, generator_steps=1)],
    )
    start = time.perf_counter()
    run.fit(module, data)
    train_seconds = time.perf_counter() - start
    dfad_top1 = test_top1(module, data)
    steps = run.global_step
    print(f"DFAD: {steps} steps in {train_seconds:.0f} s, student {dfad_top1:.2f}%", flush=True)

    generator.eval()
    with torch.no_grad():
        latent = torch.randn(1024, 256, generator=torch.Generator().manual_seed(1))
        entropy = normalized_entropy(class_fractions(module.teacher(generator(latent)).argmax(1), 10))
    kinds = [kind for kind, _ in discrepancy.values]
    student_times = [t for t, kind in zip(timer.times[6:], kinds[6:], strict=True) if not kind]
    generator_times = [t for t, kind in zip(timer.times[6:], kinds[6:], strict=True) if kind]
    student_step, generator_step = statistics.median(student_times), statistics.median(generator_times)
    iteration = 5 * student_step + generator_step
    first = [value for kind, value in discrepancy.values[:30] if not kind]
    last = [value for kind, value in discrepancy.values[-30:] if not kind]

    accuracy_rows = [
        {"student": f"{args.student}, random init", "test top-1 (%)": random_top1},
        {"student": f"{args.student}, DFAD {steps} steps ({steps // 6} it.)", "test top-1 (%)": dfad_top1},
        {"student": f"teacher {args.teacher_arch} (reference)", "test top-1 (%)": teacher_top1},
    ]
    timing_rows = [
        {"step": "DFAD student step", "ms": 1000 * student_step, "images/s": args.batch_size / student_step,
         "vs KD step": student_step / kd_seconds},
        {"step": "DFAD generator step", "ms": 1000 * generator_step, "images/s": args.batch_size / generator_step,
         "vs KD step": generator_step / kd_seconds},
        {"step": "DFAD step, mean over an iteration (5 + 1)", "ms": 1000 * iteration / 6,
         "images/s": 6 * args.batch_size / iteration, "vs KD step": iteration / 6 / kd_seconds},
        {"step": "Hinton KD step, real images (baseline)", "ms": 1000 * kd_seconds,
         "images/s": args.batch_size / kd_seconds, "vs KD step": 1.0},
    ]  # fmt: skip
    tables = [
        f"CIFAR-10 test top-1, DFAD {args.teacher_arch} -> {args.student}, batch {args.batch_size}, latent 256, "
        f"generator width {args.generator_width}, {train_seconds / 60:.1f} min of training on {args.threads} "
        f"thread(s); teacher class entropy over 1024 generated images {entropy:.2f} (1 = even, 0 = collapse); "
        f"student L1 {statistics.mean(first):.3f} (first steps) -> {statistics.mean(last):.3f} (last steps)\n\n"
        + markdown_table(accuracy_rows),
        f"Step time, batch {args.batch_size}, medians after the first iteration\n\n" + markdown_table(timing_rows),
    ]
    payload = {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "teacher_test_top1": teacher_top1,
        "random_student_test_top1": random_top1,
        "dfad_student_test_top1": dfad_top1,
        "dfad_steps": steps,
        "train_seconds": train_seconds,
        "teacher_class_entropy_generated": entropy,
        "student_l1_first_last": [statistics.mean(first), statistics.mean(last)],
        "step_time": timing_rows,
        "discrepancy": discrepancy.values,
    }
    write_results("dfad", payload, "\n\n".join(tables))


if __name__ == "__main__":
    main()
