"""Real accuracy at a short fixed budget on CIFAR-10: a vanilla student against a Hinton-KD student.

A ResNet-20 teacher is trained briefly (or reused from ``--teacher``), then a ResNet-8 student is trained twice
per seed with the same budget: cross-entropy only (vanilla) and Hinton KD from the teacher. Test accuracy is
measured on the full 10,000-image test set.

    python benchmarks/cifar10_accuracy.py --data-dir ~/.cache/lit-kd [--seeds 0 1] [--subset 10000] [--epochs 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning.pytorch as pl
from common import markdown_table, quiet_trainer, write_results

from lit_kd.data import CIFAR10DataModule
from lit_kd.methods import HintonKD, StudentModule, SupervisedModule
from lit_kd.models import create_model


def fit_and_test(module: StudentModule, args: argparse.Namespace, seed: int) -> tuple[float, float, pl.Trainer]:
    data = CIFAR10DataModule(args.data_dir, batch_size=128, eval_batch_size=500, subset_size=args.subset, seed=seed)
    trainer = quiet_trainer(max_epochs=args.epochs, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    accuracy = trainer.test(module, data, verbose=False)[0]["test/acc"]
    return accuracy, seconds, trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar10/ or cifar-10-batches-py/")
    parser.add_argument("--teacher", type=Path, default=None, help="reuse this ResNet-20 checkpoint as the teacher")
    parser.add_argument("--teacher-out", type=Path, default=None, help="also save the trained teacher here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--subset", type=int, default=10000, help="training images used (seeded subset)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    rows = []
    if args.teacher is None:
        pl.seed_everything(100)
        teacher_module = SupervisedModule(create_model("resnet20", num_classes=10))
        teacher_acc, teacher_seconds, trainer = fit_and_test(teacher_module, args, seed=100)
        args.teacher = args.teacher_out or Path("benchmarks/results/teacher_resnet20.ckpt")
        args.teacher.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(args.teacher)
        rows.append({"model": "teacher ResNet-20", "seed": 100, "test_acc": teacher_acc, "train_s": teacher_seconds})
        print(rows[-1], flush=True)
    for seed in args.seeds:
        for method in ("vanilla", "kd"):
            pl.seed_everything(seed)
            student = create_model("resnet8", num_classes=10)
            if method == "vanilla":
                module: StudentModule = SupervisedModule(student)
            else:
                module = HintonKD(
                    student, create_model("resnet20", num_classes=10), teacher_checkpoint=str(args.teacher)
                )
            accuracy, seconds, _ = fit_and_test(module, args, seed)
            rows.append({"model": f"ResNet-8 {method}", "seed": seed, "test_acc": accuracy, "train_s": seconds})
            print(rows[-1], flush=True)

    summary = []
    for method in ("vanilla", "kd"):
        accs = [r["test_acc"] for r in rows if r["model"] == f"ResNet-8 {method}"]
        summary.append(
            {
                "model": f"ResNet-8 {method}",
                "seeds": len(accs),
                "mean_test_acc": sum(accs) / len(accs),
                "min": min(accs),
                "max": max(accs),
            }
        )
    table = markdown_table(rows) + "\n\n" + markdown_table(summary)
    settings = {
        "subset": args.subset,
        "epochs": args.epochs,
        "batch_size": 128,
        "seeds": args.seeds,
        "teacher": str(args.teacher),
        "optimizer": "SGD 0.1 nesterov, wd 5e-4, cosine per step",
    }
    write_results("cifar10_accuracy", {"settings": settings, "runs": rows, "summary": summary}, table)


if __name__ == "__main__":
    main()
