"""The main job, short: distil a pretrained ResNet-56 into a ResNet-8 on CIFAR-10, against the ResNet-8 alone.

Both students train with the same recipe settings, seed, data and budget (``--subset`` class-balanced training
images for ``--epochs`` epochs); the only difference is the teacher. Each is tested on the full 10,000-image test
split with its last weights (no checkpoint is chosen on test data), and one table is printed. Run by
``scripts/quickstart.sh`` (README command 1); ``python scripts/quickstart.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def fit_and_test(recipe: str, common: list[str]) -> tuple[float, float]:
    """Fit ``recipe`` with the shared overrides, then test its last weights; returns (test accuracy, seconds)."""
    from lit_kd.lightning_cli import LitKDCLI

    cli = LitKDCLI(args=["--config", str(REPOSITORY / "recipes" / "cifar10" / recipe), *common], run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    (metrics,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return metrics["test/acc"], seconds


def teacher_accuracy(data_dir: str) -> float:
    """The pretrained teacher's test accuracy on this data (its own input normalisation is converted)."""
    import lightning.pytorch as pl

    from lit_kd.data import CIFAR10DataModule
    from lit_kd.methods import SupervisedModule
    from lit_kd.models import PretrainedNetwork

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    module = SupervisedModule(PretrainedNetwork("cifar10_resnet56"))
    (metrics,) = trainer.test(module, CIFAR10DataModule(data_dir, eval_batch_size=500), verbose=False)
    return metrics["test/acc"]


def main() -> None:
    """Train both students, test them, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="folder holding cifar10/ or cifar-10-batches-py/")
    parser.add_argument("--subset", type=int, default=10000, help="training images (class-balanced, seeded)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    common = [
        "--data.data_dir",
        args.data_dir,
        "--data.subset_size",
        str(args.subset),
        "--data.eval_batch_size",
        "500",
        "--trainer.max_epochs",
        str(args.epochs),
        "--seed_everything",
        str(args.seed),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
    ]
    start = time.perf_counter()
    teacher = teacher_accuracy(args.data_dir)
    vanilla = fit_and_test("vanilla_resnet8.yaml", common)
    distilled = fit_and_test("kd_pretrained_resnet56_resnet8.yaml", common)
    rows = [
        ("ResNet-8 alone (cross-entropy)", *vanilla),
        ("ResNet-8 distilled from ResNet-56 (Hinton KD)", *distilled),
    ]
    print()
    print(f"CIFAR-10, {args.subset} training images, {args.epochs} epochs, seed {args.seed}; test split, last weights")
    print(f"teacher: pretrained ResNet-56, {100 * teacher:.2f}% on this test split")
    print("| student | test accuracy | training time |")
    print("|---|---|---|")
    for name, accuracy, seconds in rows:
        print(f"| {name} | {100 * accuracy:.2f}% | {seconds:.0f} s |")
    print(f"KD gain: {100 * (distilled[0] - vanilla[0]):+.2f} points; whole job {time.perf_counter() - start:.0f} s")
    print("(On the JPEG export of CIFAR-10 absolute accuracies are not comparable with published CIFAR-10 tables.)")


if __name__ == "__main__":
    main()
