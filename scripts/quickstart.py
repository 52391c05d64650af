"""The main job, short: distil a pretrained ResNet-56 into a ResNet-8 on CIFAR-10, against the ResNet-8 alone.

Both students train with the same recipe settings, seed, data and budget (``--subset`` class-balanced training
images for ``--epochs`` epochs); the only difference is the teacher. Each is tested on the full 10,000-image test
split with its last weights (no checkpoint is chosen on test data), and one table is printed. Run by
``scripts/quickstart.sh`` (README command 1); ``python scripts/quickstart.py --help`` lists the options.

It prints its steps as it goes (decoding the images, testing the teacher, training each student) and one line per
training epoch (:class:`lit_kd.callbacks.EpochProgress`), flushed, so the progress shows when the output is piped or
logged.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl

REPOSITORY = Path(__file__).resolve().parents[1]
STEPS = 4


def say(text: str) -> None:
    """Print one line at once (flushed: the output may be a pipe)."""
    print(text, flush=True)


def decode_images(data_dir: str) -> None:
    """Decode both splits once, so that every run after this one reads them from the decoded-image cache."""
    from lit_kd.data import CIFAR10DataModule

    data = CIFAR10DataModule(data_dir)
    cached_before = set(data.cache_dir.glob("*.pt")) if data.cache_dir is not None else set()
    start = time.perf_counter()
    count = sum(len(data.load_split(split).targets) for split in ("train", "test"))
    seconds = time.perf_counter() - start
    if (Path(data_dir) / "cifar-10-batches-py").is_dir():
        how = "read from the official batches"
    elif data.cache_dir is not None and set(data.cache_dir.glob("*.pt")) == cached_before:
        how = f"read from the decoded-image cache ({data.cache_dir})"
    else:
        how = f"decoded from JPEG (cached for the next runs in {data.cache_dir})"
    say(f"  {count:,} images {how}: {seconds:.1f} s")


def fit_and_test(recipe: str, common: list[str]) -> tuple[float, float]:
    """Fit ``recipe`` with the shared overrides, then test its last weights; returns (test accuracy, seconds)."""
    from lit_kd.lightning_cli import LitKDCLI

    cli = LitKDCLI(args=["--config", str(REPOSITORY / "recipes" / "cifar10" / recipe), *common], run=False)
    from lit_kd.callbacks import EpochProgress

    cli.trainer.callbacks.append(EpochProgress())
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    (metrics,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    say(f"  test accuracy {100 * metrics['test/acc']:.2f}% (last weights); training took {seconds:.0f} s")
    return metrics["test/acc"], seconds


def teacher_accuracy(data_dir: str) -> float:
    """The pretrained teacher's test accuracy on this data (its own input normalisation is converted)."""
    from lit_kd.data import CIFAR10DataModule
    from lit_kd.methods import SupervisedModule
    from lit_kd.models import PretrainedNetwork

    start = time.perf_counter()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    module = SupervisedModule(PretrainedNetwork("cifar10_resnet56"))
    (metrics,) = trainer.test(module, CIFAR10DataModule(data_dir, eval_batch_size=500), verbose=False)
    say(f"  {100 * metrics['test/acc']:.2f}% test accuracy: {time.perf_counter() - start:.0f} s")
    return metrics["test/acc"]


def main() -> None:
    """Decode the images, test the teacher, train and test both students, print the table."""
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
    budget = f"{args.subset} images, {args.epochs} epochs"
    start = time.perf_counter()
    say(f"[1/{STEPS}] Decoding the CIFAR-10 images in {args.data_dir}")
    decode_images(args.data_dir)
    say(f"[2/{STEPS}] Testing the teacher, the pretrained ResNet-56, on the test split")
    teacher = teacher_accuracy(args.data_dir)
    say(f"[3/{STEPS}] Training the ResNet-8 alone (cross-entropy): {budget}")
    vanilla = fit_and_test("vanilla_resnet8.yaml", common)
    say(f"[4/{STEPS}] Distilling the ResNet-56 into the ResNet-8 (Hinton KD): {budget}")
    distilled = fit_and_test("kd_pretrained_resnet56_resnet8.yaml", common)
    rows = [
        ("ResNet-8 alone (cross-entropy)", *vanilla),
        ("ResNet-8 distilled from ResNet-56 (Hinton KD)", *distilled),
    ]
    say("")
    say(f"CIFAR-10, {args.subset} training images, {args.epochs} epochs, seed {args.seed}; test split, last weights")
    say(f"teacher: pretrained ResNet-56, {100 * teacher:.2f}% on this test split")
    say("| student | test accuracy | training time |")
    say("|---|---|---|")
    for name, accuracy, seconds in rows:
        say(f"| {name} | {100 * accuracy:.2f}% | {seconds:.0f} s |")
    say(f"KD gain: {100 * (distilled[0] - vanilla[0]):+.2f} points; whole job {time.perf_counter() - start:.0f} s")
    say("(On the JPEG export of CIFAR-10 absolute accuracies are not comparable with published CIFAR-10 tables.)")


if __name__ == "__main__":
    main()
