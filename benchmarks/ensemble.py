"""Single model vs ensemble vs ensemble distillation vs self-distillation on CIFAR-10, at a small scale.

The central comparison of Allen-Zhu & Li (2020), "Towards Understanding Ensemble, Knowledge Distillation and
Self-Distillation in Deep Learning": K networks of one architecture that differ by their random initialisation
are trained (``SeedEnsembleModule``, all K in one run); their mean-logit ensemble is distilled into a fresh network
of the same architecture (``EnsembleDistillation``, soft targets only); and a fresh network is distilled from
member 0 alone (``SelfDistillation``, born-again). Every network gets the same number of epochs. Accuracies are
top-1 on the 10,000 CIFAR-10 test images, all measured in this run.

    nice -n 5 python benchmarks/ensemble.py --data_dir ~/.cache/lit-kd --subset_size 3000 --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from common import quiet_trainer, write_results

from lit_kd.data import CIFAR10DataModule
from lit_kd.methods import EnsembleDistillation, SeedEnsembleModule, SelfDistillation, SupervisedModule
from lit_kd.models import create_model


def make_trainer(args: argparse.Namespace, root: Path) -> pl.Trainer:
    """CPU trainer without per-epoch validation (everything is evaluated once, on the test split, at the end)."""
    return quiet_trainer(accelerator="cpu", max_epochs=args.epochs, limit_val_batches=0, default_root_dir=root)


def fit_and_validate(
    module: pl.LightningModule, args: argparse.Namespace, root: Path, evaluate: pl.LightningModule | None = None
) -> tuple[dict, float]:
    """Fit for ``args.epochs`` epochs, then evaluate (``evaluate``, default ``module``) on the test split."""
    data = CIFAR10DataModule(
        args.data_dir, batch_size=args.batch_size, eval_batch_size=500, subset_size=args.subset_size, seed=0
    )
    start = time.perf_counter()
    make_trainer(args, root).fit(module, data)
    seconds = time.perf_counter() - start
    evaluator = quiet_trainer(accelerator="cpu")
    (metrics,) = evaluator.validate(evaluate or module, data, verbose=False)  # val_size=0: the test split
    metrics = {name: float(value) for name, value in metrics.items()}
    print(f"[{type(module).__name__}] trained in {seconds:.0f} s: {metrics}", flush=True)
    return metrics, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="~/.cache/lit-kd", help="folder holding cifar10/{train,test}")
    parser.add_argument("--arch", default="resnet8", help="zoo architecture of every network")
    parser.add_argument("--members", type=int, default=3, help="ensemble size K")
    parser.add_argument("--subset_size", type=int, default=3000, help="training images (seeded subset)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for every network")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription when shared)")
    parser.add_argument("--work_dir", default="/tmp/lit-kd-ensemble-bench", help="member checkpoints go here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    def network() -> torch.nn.Module:
        return create_model(args.arch, num_classes=10)

    pl.seed_everything(0)
    seeds = SeedEnsembleModule([network() for _ in range(args.members)])
    seed_metrics, seed_seconds = fit_and_validate(seeds, args, work_dir / "seeds")
    member_paths = []
    for index, member in enumerate(seeds.student.members):
        member_paths.append(str(work_dir / f"member{index}.pt"))
        torch.save(member.state_dict(), member_paths[-1])
    member_accs = [seed_metrics[f"val/member{index}_acc"] for index in range(args.members)]

    pl.seed_everything(1)
    ensemble_kd = EnsembleDistillation(network(), [network() for _ in range(args.members)], member_paths)
    ensemble_kd_metrics, ensemble_kd_seconds = fit_and_validate(
        ensemble_kd, args, work_dir / "ensemble_kd", evaluate=SupervisedModule(ensemble_kd.student)
    )

    pl.seed_everything(1)
    self_kd = SelfDistillation(network(), network(), teacher_checkpoint=member_paths[0])
    self_kd_metrics, self_kd_seconds = fit_and_validate(self_kd, args, work_dir / "self_kd")

    single = member_accs[0]
    rows = [
        ("single model (member 0)", single, f"{args.members} members: " + ", ".join(f"{a:.4f}" for a in member_accs)),
        (f"ensemble of {args.members}", seed_metrics["val/ensemble_acc"], "mean logits of the members"),
        ("ensemble distillation", ensemble_kd_metrics["val/acc"], f"student taught by the {args.members}-ensemble"),
        ("self-distillation", self_kd_metrics["val/acc"], "student taught by member 0 (born-again)"),
    ]
    lines = [
        f"CIFAR-10 test top-1, {args.arch}, {args.subset_size} training images, {args.epochs} epochs each",
        "",
        "| network | test acc | vs single model | note |",
        "| --- | --- | --- | --- |",
        *(f"| {name} | {accuracy:.4f} | {accuracy - single:+.4f} | {note} |" for name, accuracy, note in rows),
    ]
    payload = {
        "settings": vars(args),
        "test_accuracy": {name: accuracy for name, accuracy, _ in rows},
        "member_test_accuracy": member_accs,
        "member_mean_and_stdev": [statistics.mean(member_accs), statistics.pstdev(member_accs)],
        "train_seconds": {"seeds": seed_seconds, "ensemble_kd": ensemble_kd_seconds, "self_kd": self_kd_seconds},
    }
    write_results("ensemble", payload, "\n".join(lines))


if __name__ == "__main__":
    main()
