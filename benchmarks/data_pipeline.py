"""Data pipeline throughput: lit-kd's in-memory DataModule against torchvision's per-sample PIL pipelines.

All pipelines produce the same thing, augmented (random crop 32 with padding 4, horizontal flip) and normalised
float batches of 128 CIFAR-10 training images, from the same real data:

* ``lit-kd``: ``CIFAR10DataModule`` (decoded ``uint8`` tensor in memory, batched crop/flip/normalise after the
  "device transfer", here on the CPU);
* ``torchvision in-memory``: images held as a ``uint8`` array, converted to PIL and transformed per sample
  (what ``torchvision.datasets.CIFAR10`` does), ``DataLoader`` with ``--workers`` workers;
* ``torchvision ImageFolder``: JPEG files decoded per sample every epoch, same transforms and workers.

Each pipeline is timed ``--repeats`` times, interleaved, and the best time counts (the machine is shared).

    python benchmarks/data_pipeline.py --data-dir ~/.cache/lit-kd [--batches 150] [--workers 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from common import markdown_table, write_results
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from lit_kd.data import CIFAR10DataModule

MEAN, STD = CIFAR10DataModule.mean, CIFAR10DataModule.std


def pil_transform() -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )


class InMemoryPILDataset(Dataset):
    """torchvision.datasets.CIFAR10's ``__getitem__``: array -> PIL image -> per-sample transforms."""

    def __init__(self, images: np.ndarray, targets: list[int]) -> None:
        self.images, self.targets, self.transform = images, targets, pil_transform()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.targets[index]


def time_batches(make_batches: Callable[[], Iterable], num_batches: int) -> float:
    """Images per second over ``num_batches`` batches (the first batch, which starts workers, is excluded)."""
    iterator = iter(make_batches())
    next(iterator)
    start = time.perf_counter()
    images = 0
    for _ in range(num_batches):
        batch, _ = next(iterator)
        images += len(batch)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar10/{train,test}")
    parser.add_argument("--batches", type=int, default=150, help="batches of 128 timed per pipeline")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipelines")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    uncached = CIFAR10DataModule(args.data_dir, use_cache=False)
    uncached.setup("fit")
    decode_seconds = time.perf_counter() - start
    cached = CIFAR10DataModule(args.data_dir, batch_size=128)
    cached.setup("fit")  # fills the cache if needed
    start = time.perf_counter()
    datamodule = CIFAR10DataModule(args.data_dir, batch_size=128)
    datamodule.setup("fit")
    cached_seconds = time.perf_counter() - start

    class TrainingFlag:  # on_after_batch_transfer augments only while the trainer is training
        training = True
        global_rank, world_size = 0, 1

    datamodule.trainer = TrainingFlag()  # type: ignore[assignment]

    def lit_kd_batches() -> Iterable:
        return (datamodule.on_after_batch_transfer(batch, 0) for batch in datamodule.train_dataloader())

    array = datamodule.train_set.images.permute(0, 2, 3, 1).numpy()
    targets = datamodule.train_set.targets.tolist()
    in_memory = InMemoryPILDataset(array, targets)
    folder = datasets.ImageFolder(str(args.data_dir / "cifar10" / "train"), transform=pil_transform())
    loader_options = dict(batch_size=128, shuffle=True, num_workers=args.workers, persistent_workers=False)
    pipelines = {
        "lit-kd in-memory, batched on device": lit_kd_batches,
        f"torchvision in-memory PIL, {args.workers} workers": lambda: DataLoader(in_memory, **loader_options),
        f"torchvision ImageFolder, {args.workers} workers": lambda: DataLoader(folder, **loader_options),
    }
    best = {name: 0.0 for name in pipelines}
    for _ in range(args.repeats):
        for name, make in pipelines.items():
            best[name] = max(best[name], time_batches(make, args.batches))
            print(f"{name}: {best[name]:.0f} img/s (best so far)", flush=True)

    ours = best["lit-kd in-memory, batched on device"]
    rows = [{"pipeline": name, "images_per_s": value, "lit-kd speed-up": ours / value} for name, value in best.items()]
    table = markdown_table(rows) + (
        f"\n\nStart-up: decoding all 60,000 JPEGs {decode_seconds:.1f} s; loading from the decoded cache "
        f"{cached_seconds:.1f} s ({decode_seconds / cached_seconds:.1f}x faster)."
    )
    payload = {
        "settings": vars(args) | {"data_dir": str(args.data_dir)},
        "rows": rows,
        "startup_seconds": {"decode": decode_seconds, "cached": cached_seconds},
    }
    write_results("data_pipeline", payload, table)


if __name__ == "__main__":
    main()
