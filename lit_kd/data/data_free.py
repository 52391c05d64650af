"""Data for data-free distillation: latent noise for training, a real dataset's test split for evaluation only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from lit_kd.data.base import InMemoryImageDataModule, LabelledImages, Split
from lit_kd.seeding import batch_seed


class LatentSeedSampler:
    """One seed per training batch, a pure function of ``(seed, epoch, batch, rank)``; resumable mid-epoch.

    Lightning calls :meth:`set_epoch` at every epoch (it looks for ``loader.sampler.set_epoch``), and a resumed run
    skips the batches an interrupted one already used (:meth:`skip_consumed`), so both see the same noise.

    Example:
        >>> sampler = LatentSeedSampler(num_batches=3, seed=0)
        >>> first = list(sampler)
        >>> sampler.skip_consumed(epoch=0, batches=2)
        >>> list(sampler) == first[2:], len(set(first))
        (True, 3)
    """

    def __init__(self, num_batches: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.num_batches, self.seed, self.rank, self.world_size = num_batches, seed, rank, world_size
        self.epoch = 0
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose seeds the next iteration yields."""
        self.epoch = epoch

    def skip_consumed(self, epoch: int, batches: int) -> None:
        """Skip the first ``batches`` seeds of ``epoch`` once: they were used before a checkpoint."""
        self._skip = (epoch, batches)

    def batch_seed(self, batch: int) -> int:
        """The seed of batch ``batch`` of the current epoch on this rank (the hashing of the image DataModules)."""
        return batch_seed(self.seed, self.epoch, batch, self.rank, self.world_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[int]:
        start = self._skip[1] if self._skip is not None and self._skip[0] == self.epoch else 0
        self._skip = None
        return (self.batch_seed(batch) for batch in range(start, self.num_batches))


class LatentNoiseLoader:
    """Batches of standard-normal latent vectors ``[batch_size, latent_dim]``, one per seed of its sampler."""

    def __init__(self, sampler: LatentSeedSampler, batch_size: int, latent_dim: int) -> None:
        self.sampler, self.batch_size, self.latent_dim = sampler, batch_size, latent_dim
        self.batch_sampler = None  # Lightning inspects ``sampler`` and ``batch_sampler`` like a DataLoader's

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Tensor]:
        for seed in self.sampler:
            generator = torch.Generator().manual_seed(seed)
            yield torch.randn(self.batch_size, self.latent_dim, generator=generator)


class DataFreeDataModule(InMemoryImageDataModule):
    """Training batches of latent noise for a generator; validation and test on a real dataset's *test* split only.

    For data-free distillation (DFAD): training never touches real images. The wrapped ``evaluation`` DataModule
    (e.g. :class:`~lit_kd.data.CIFAR10DataModule`) is set up for stage ``"test"`` only, which loads its test split
    and nothing else (``InMemoryImageDataModule.setup`` reads the training split for ``"fit"``/``"validate"``, to
    carve a validation set out of it); validation therefore runs on the test split, which is why ``evaluation``
    must have ``val_size=0`` and none of the options that shape the training split (``subset_size``, ...). Report
    validation numbers as test numbers. Number of classes, image size, normalisation and class names are the
    evaluation data's.

    Each training batch is ``torch.randn(batch_size, latent_dim)`` drawn from a seed that is a pure function of
    ``(seed, epoch, batch, rank)`` (different on every DDP rank), and the number of batches consumed is part of
    :meth:`state_dict`, so a run resumed from a mid-epoch checkpoint draws exactly the noise of an uninterrupted one.
    ``batches_per_epoch`` counts *training steps*: the default 300 is the 50 iterations of 5 student steps and one
    generator step that the official DFAD code (``DFAD_cifar.py``) calls an epoch.

    Args:
        evaluation: the real dataset, used for validation and test only.
        batch_size: latent vectors per training batch and process (official: 256).
        latent_dim: length of each latent vector; must match the generator's input (official: 256).
        batches_per_epoch: training steps per epoch (official: 50 x (5 + 1) = 300).
        seed: seed of the noise; ``None`` (default): the run's seed (``seed_everything``).

    Example:
        >>> from lit_kd.data import CIFAR10DataModule
        >>> data = DataFreeDataModule(CIFAR10DataModule("data"), batch_size=4, latent_dim=8, batches_per_epoch=2)
        >>> [tuple(latent.shape) for latent in data.train_dataloader()], data.num_classes, data.input_shape
        ([(4, 8), (4, 8)], 10, (3, 32, 32))
    """

    def __init__(
        self,
        evaluation: InMemoryImageDataModule,
        batch_size: int = 256,
        latent_dim: int = 256,
        batches_per_epoch: int = 300,
        seed: int | None = None,
    ) -> None:
        if not isinstance(evaluation, InMemoryImageDataModule):
            raise TypeError(f"evaluation must be an InMemoryImageDataModule, got {type(evaluation).__name__}")
        if evaluation.val_size:
            raise ValueError(
                f"evaluation.val_size must be 0 for data-free training, got {evaluation.val_size}: a validation set "
                "would be carved out of the real training images, which a data-free run never reads"
            )
        for name in ("subset_size", "train_fraction", "synthetic_dir"):  # options of the training split
            if getattr(evaluation, name, None) is not None:
                raise ValueError(
                    f"evaluation.{name} shapes the training split, which a data-free run never reads: set it to None"
                )
        if latent_dim < 1 or batches_per_epoch < 1:
            raise ValueError(f"latent_dim and batches_per_epoch must be >= 1, got {latent_dim}, {batches_per_epoch}")
        super().__init__(data_dir=evaluation.data_dir, batch_size=batch_size, seed=seed, use_cache=False)
        self.evaluation = evaluation
        self.latent_dim = latent_dim
        self.batches_per_epoch = batches_per_epoch
        self._seeds: LatentSeedSampler | None = None

    # The evaluation data's description stands in for the class attributes of an image DataModule.
    @property  # type: ignore[override]
    def num_classes(self) -> int:
        """Number of classes of the evaluation data."""
        return self.evaluation.num_classes

    @property  # type: ignore[override]
    def image_size(self) -> int:
        """Image size of the evaluation data (what the generator must produce)."""
        return self.evaluation.image_size

    @property  # type: ignore[override]
    def mean(self) -> tuple[float, float, float]:
        """Normalisation mean of the evaluation data (galleries use it to show generated images)."""
        return self.evaluation.mean

    @property  # type: ignore[override]
    def std(self) -> tuple[float, float, float]:
        """Normalisation standard deviation of the evaluation data."""
        return self.evaluation.std

    @property  # type: ignore[override]
    def task(self) -> str:
        """Task of the evaluation data (DFAD distils classifiers: methods refuse other tasks)."""
        return self.evaluation.task

    @property
    def classes(self) -> tuple[str, ...] | None:
        """Class names of the evaluation data, if it has them."""
        return getattr(self.evaluation, "classes", None)

    def prepare_data(self) -> None:
        """Let the evaluation data download what it needs (an official archive holds both splits; only test is read)."""
        self.evaluation.prepare_data()

    def load_split(self, split: Split) -> LabelledImages:
        """The evaluation data's test split; asking for ``"train"`` is a bug, and raises."""
        if split != "test":
            raise RuntimeError(f"{type(self).__name__} never reads real training images (asked for split {split!r})")
        return self.evaluation.load_split("test")

    def setup(self, stage: str | None = None) -> None:
        """Load the evaluation data's test split (only), which serves validation, test and prediction."""
        self.evaluation.trainer = self.trainer  # shards evaluation batches across DDP ranks
        self.evaluation.setup("predict" if stage == "predict" else "test")
        self.val_set, self.test_set = self.evaluation.val_set, self.evaluation.test_set
        self.predict_names, self.predict_targets = self.evaluation.predict_names, self.evaluation.predict_targets

    def train_dataloader(self) -> LatentNoiseLoader:  # type: ignore[override]
        """Latent noise, ``batches_per_epoch`` batches per epoch and rank."""
        rank, world_size = self._rank_and_world()
        self._seeds = LatentSeedSampler(self.batches_per_epoch, self.data_seed, rank, world_size)
        if self._resume_from is not None:
            self._seeds.skip_consumed(self._resume_from["epoch"], self._resume_from["batches"])
            self._resume_from = None
        return LatentNoiseLoader(self._seeds, self.batch_size, self.latent_dim)

    def val_dataloader(self) -> Any:
        """The evaluation data's test split, in a fixed order."""
        return self.evaluation.val_dataloader()

    def test_dataloader(self) -> Any:
        """The evaluation data's test split, in a fixed order."""
        return self.evaluation.test_dataloader()

    def predict_dataloader(self) -> Any:
        """The evaluation data's images to predict (its ``predict_files``, or its test split)."""
        return self.evaluation.predict_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count latent batches (for resuming); normalise evaluation batches as the evaluation data does."""
        if self.trainer is not None and self.trainer.training:
            epoch = self._seeds.epoch if self._seeds is not None else 0
            if self._consumed["epoch"] != epoch:
                self._consumed = {"epoch": epoch, "batches": 0}
            self._consumed["batches"] += 1
            return batch
        return self.evaluation.on_after_batch_transfer(batch, dataloader_idx)
