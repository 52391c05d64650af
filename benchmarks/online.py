"""Online distillation benchmark: DML and AFD against training the same networks separately.

1. Step time: median training-step time of DML and AFD divided by the sum of the median step times of each network
   trained alone (SupervisedModule), all measured in this run on the same batches.
2. Accuracy: a short real-CIFAR-10 run per seed (independent vs DML vs AFD), test top-1 of every network.

Example:
    python benchmarks/online.py --data-dir ~/.cache/lit-kd --subset-size 2000 --epochs 2 --seeds 0 1 --threads 1 \\
        --test-size 2000 --timing-rounds 1 --timing-steps 5
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import lightning.pytorch as pl
import torch
from common import StepTimer, quiet_trainer, write_results

from lit_kd.data import CIFAR10DataModule
from lit_kd.data.base import LabelledImages
from lit_kd.methods import DeepMutualLearning, OnlineAdversarialFeatureKD, SupervisedModule
from lit_kd.models import create_model


def build(method: str, names: list[str]) -> list[pl.LightningModule]:
    """The modules that train ``names`` with ``method`` (one per network for ``independent``)."""
    networks = [create_model(name, num_classes=10) for name in names]
    if method == "independent":
        return [SupervisedModule(network) for network in networks]
    if method == "dml":
        return [DeepMutualLearning(networks)]
    return [OnlineAdversarialFeatureKD(networks)]


def test_accuracies(module: pl.LightningModule, datamodule: CIFAR10DataModule, test_size: int | None) -> list[float]:
    """Top-1 of each network on the test split, or on a seeded random ``test_size`` subset of it (the image-folder
    test split is ordered by class, so its first batches would cover only a few classes)."""
    datamodule.setup("test")
    if test_size is not None and datamodule.test_set is not None:
        keep = torch.randperm(len(datamodule.test_set.targets), generator=torch.Generator().manual_seed(0))[:test_size]
        datamodule.test_set = LabelledImages(datamodule.test_set.images[keep], datamodule.test_set.targets[keep])
    metrics = quiet_trainer(accelerator="cpu").test(module, datamodule, verbose=False)[0]
    if isinstance(module, SupervisedModule):
        return [metrics["test/acc"]]
    return [metrics[f"test/net{index}/acc"] for index in range(module.num_networks)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default="~/.cache/lit-kd", help="folder holding CIFAR-10 (cifar10/ image folders)"
    )
    parser.add_argument("--networks", nargs="+", default=["resnet8", "resnet14"])
    parser.add_argument("--subset-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--timing-steps", type=int, default=20, help="timed steps per method (after 3 warm-up)")
    parser.add_argument("--timing-rounds", type=int, default=3, help="rounds of timing, methods interleaved")
    parser.add_argument("--test-size", type=int, default=None, help="test on a seeded random subset (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = ["independent", "dml", "afd"]

    def datamodule(seed: int) -> CIFAR10DataModule:
        return CIFAR10DataModule(
            args.data_dir, batch_size=args.batch_size, eval_batch_size=500, subset_size=args.subset_size, seed=seed
        )

    # 1. step time: methods interleaved over rounds, so that a load change on the machine hits all of them alike
    step_samples: dict[str, list[list[float]]] = {method: [] for method in methods}
    for _ in range(args.timing_rounds):
        for method in methods:
            pl.seed_everything(0)
            for index, module in enumerate(build(method, args.networks)):
                timer = StepTimer()
                trainer = quiet_trainer(
                    accelerator="cpu", max_steps=args.timing_steps + 3, limit_val_batches=0, callbacks=[timer]
                )
                trainer.fit(module, datamodule(0))
                if len(step_samples[method]) <= index:
                    step_samples[method].append([])
                step_samples[method][index] += timer.times[3:]
    step_times = {method: sum(statistics.median(times) for times in step_samples[method]) for method in methods}
    ratios = {method: step_times[method] / step_times["independent"] for method in methods}

    # 2. accuracy
    accuracy: dict[str, dict[int, list[float]]] = {method: {} for method in methods}
    for seed in args.seeds:
        for method in methods:
            pl.seed_everything(seed)
            results: list[float] = []
            for module in build(method, args.networks):
                data = datamodule(seed)
                quiet_trainer(accelerator="cpu", max_epochs=args.epochs, limit_val_batches=0).fit(module, data)
                results += test_accuracies(module, data, args.test_size)
            accuracy[method][seed] = results
            print(f"seed {seed} {method}: {results}", flush=True)

    header = (
        "| method | step time (ms) | ratio to separate | "
        + " | ".join(f"{n} top-1 (mean over seeds)" for n in args.networks)
        + " |"
    )
    lines = [header, "|" + " --- |" * (3 + len(args.networks))]
    for method in methods:
        means = [statistics.mean(accuracy[method][s][i] for s in args.seeds) * 100 for i in range(len(args.networks))]
        per_seed = [
            ", ".join(f"{accuracy[method][s][i] * 100:.2f}" for s in args.seeds) for i in range(len(args.networks))
        ]
        cells = [f"{m:.2f} ({p})" for m, p in zip(means, per_seed, strict=True)]
        lines.append(
            f"| {method} | {step_times[method] * 1000:.1f} | {ratios[method]:.2f} | " + " | ".join(cells) + " |"
        )
    table = "\n".join(lines)
    payload = {
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
        "step_time_s": step_times,
        "step_time_ratio_to_separate": ratios,
        "test_top1_per_seed": {m: {str(s): v for s, v in r.items()} for m, r in accuracy.items()},
    }
    write_results("online", payload, table)


if __name__ == "__main__":
    main()
