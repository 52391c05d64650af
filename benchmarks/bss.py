"""BSS: the cost of a training step against Hinton KD, and a short CIFAR-10 comparison vanilla vs KD vs BSS.

(a) Step time: BSSDistillation and HintonKD (and the vanilla student) on the same networks, batch and real
    CIFAR-10 images, timed inside a Lightning ``Trainer`` (``on_train_batch_start`` to ``on_train_batch_end``:
    forward, attack, backward, optimiser step) in the first epoch of the BSS schedule, where the attack runs. The
    methods are interleaved ``--repeats`` times; each takes the median step of its fastest repeat; the figure is the
    ratio BSS / KD in this run (the machine is shared and noisy).
(b) Accuracy: vanilla (cross-entropy), Hinton KD (T=4, alpha=0.9) and BSS (official defaults), student ResNet-8,
    trained for the same epochs on the same seeded training subset with the same optimiser (SGD 0.1 Nesterov,
    weight decay 5e-4, cosine), for each seed; top-1 on the full CIFAR-10 test set.

    python benchmarks/bss.py --data-dir ~/.cache/lit-kd --teacher /tmp/lit-kd-bench/teacher_resnet20.ckpt \
        [--teacher-arch resnet20] [--student resnet8] [--subset-size 2000] [--epochs 3] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from common import StepTimer, load_average, markdown_table, quiet_benchmark, quiet_trainer, write_results

from lit_kd.callbacks import BoundarySampleMining
from lit_kd.data import CIFAR10DataModule
from lit_kd.methods import BSSDistillation, HintonKD, StudentModule, SupervisedModule, load_network_weights
from lit_kd.models import PretrainedNetwork, available_pretrained, create_model


def datamodule(args: argparse.Namespace) -> CIFAR10DataModule:
    return CIFAR10DataModule(
        args.data_dir, batch_size=args.batch_size, eval_batch_size=500, subset_size=args.subset_size
    )


def teacher_network(args: argparse.Namespace) -> torch.nn.Module:
    """A zoo network, or a pretrained one by name (``cifar10_resnet56``: its inputs are converted by the methods)."""
    if args.teacher_arch in available_pretrained():
        return PretrainedNetwork(args.teacher_arch)
    return create_model(args.teacher_arch, num_classes=10)


def build(method: str, args: argparse.Namespace) -> StudentModule:
    student = create_model(args.student, num_classes=10)
    if args.student_checkpoint is not None:  # e.g. a student part-way through training: more base samples qualify
        load_network_weights(student, args.student_checkpoint)
    if method == "vanilla":
        return SupervisedModule(student)
    teacher = teacher_network(args)
    method_class = {"kd": HintonKD, "bss": BSSDistillation}[method]
    return method_class(student, teacher, teacher_checkpoint=args.teacher)


def step_times(args: argparse.Namespace) -> tuple[list[dict], dict]:
    best: dict[str, float] = {}
    mining_stats: dict[str, float] = {}
    for _ in range(args.repeats):
        for method in ("vanilla", "kd", "bss"):
            pl.seed_everything(0, verbose=False)
            timer = StepTimer()
            callbacks: list[pl.Callback] = [timer]
            if method == "bss":  # a long schedule: the attack runs at full weight in the timed first epoch
                callbacks.append(BoundarySampleMining(num_epochs=80))
            run = quiet_trainer(max_epochs=1, max_steps=args.steps + 1, limit_val_batches=0, callbacks=callbacks)
            run.fit(build(method, args), datamodule(args))
            median = statistics.median(timer.times[1:])  # the first step warms up allocators
            best[method] = min(best.get(method, float("inf")), median)
            if method == "bss":
                batches, samples, _, steps, _ = callbacks[1]._totals.tolist()  # this epoch's sums
                mining_stats = {"boundary_samples": samples / batches, "mean_steps": steps / max(samples, 1)}
    rows = [
        {"method": method, "step (ms)": 1000 * seconds, "relative to KD": seconds / best["kd"]}
        for method, seconds in best.items()
    ]
    return rows, mining_stats


def accuracy(args: argparse.Namespace) -> tuple[list[dict], dict]:
    per_seed: dict[str, list[float]] = {"vanilla": [], "kd": [], "bss": []}
    train_seconds: dict[str, list[float]] = {"vanilla": [], "kd": [], "bss": []}
    for seed in args.seeds:
        for method in per_seed:
            pl.seed_everything(seed, verbose=False)
            module = build(method, args)
            run = quiet_trainer(max_epochs=args.epochs, limit_val_batches=0)
            data = datamodule(args)  # a fresh one per run: the same batches and augmentation for every method
            start = time.perf_counter()
            run.fit(module, data)
            train_seconds[method].append(time.perf_counter() - start)
            top1 = run.test(module, data, verbose=False)[0]["test/acc"]
            per_seed[method].append(100 * top1)
            print(f"seed {seed} {method}: {100 * top1:.2f}% ({train_seconds[method][-1]:.0f} s)", flush=True)
    rows = []
    for method, values in per_seed.items():
        row = {"method": method}
        row |= {f"seed {seed} top-1 (%)": value for seed, value in zip(args.seeds, values, strict=True)}
        row |= {"mean (%)": statistics.mean(values), "train time (s)": statistics.mean(train_seconds[method])}
        rows.append(row)
    return rows, {"top1": per_seed, "train_seconds": train_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="holds cifar10/{train,test} or the batches")
    parser.add_argument("--teacher", type=Path, required=True, help="checkpoint of the CIFAR-10 teacher")
    parser.add_argument("--teacher-arch", default="resnet20", help="a zoo name, or a pretrained one (cifar10_resnet56)")
    parser.add_argument("--student-checkpoint", type=Path, default=None, help="start the student from these weights")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--batch-size", type=int, default=256, help="the official BSS batch size")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat (after one warm-up step)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--subset-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--name", default="bss", help="results file name")
    args = parser.parse_args()
    quiet_benchmark(args.threads)

    teacher = teacher_network(args)
    load_network_weights(teacher, args.teacher)
    teacher_top1 = 100 * quiet_trainer().test(SupervisedModule(teacher), datamodule(args), verbose=False)[0]["test/acc"]
    load_before = load_average()
    timing_rows, mining_stats = step_times(args)
    load = {"before": load_before, "after": load_average()}  # 1-minute load average around the timed runs
    student_state = f"student from {args.student_checkpoint}" if args.student_checkpoint else "untrained student"
    tables = [
        f"Step time, {args.teacher_arch} -> {args.student} ({student_state})"
        f", batch {args.batch_size}, BSS attacking {mining_stats['boundary_samples']:.1f} base samples per batch "
        f"(those both networks classify correctly, at most 64) for {mining_stats['mean_steps']:.1f} steps on "
        f"average; load average {load['before']:.2f} before, {load['after']:.2f} after\n\n"
        + markdown_table(timing_rows)
    ]
    payload = {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "teacher_test_top1": teacher_top1,
        "step_time": timing_rows,
        "load_average": load,
        "mining_last_batch": mining_stats,
    }
    if not args.skip_accuracy:
        accuracy_rows, per_seed = accuracy(args)
        tables.append(
            f"CIFAR-10 test top-1, student {args.student}, teacher {args.teacher_arch} ({teacher_top1:.2f}%), "
            f"{args.epochs} epochs on {args.subset_size} training images, batch {args.batch_size}\n\n"
            + markdown_table(accuracy_rows)
        )
        payload |= {"accuracy": accuracy_rows, "per_seed": per_seed}
    write_results(args.name, payload, "\n\n".join(tables))


if __name__ == "__main__":
    main()
