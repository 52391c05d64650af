"""A batch loader for datasets held in memory as tensors.

One indexing operation per batch instead of one ``__getitem__`` per sample plus collation; the order is a pure
function of ``(seed, epoch)``, split across DDP ranks, and can skip the batches already consumed when a run
resumes from a mid-epoch checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


class ShardedBatchSampler:
    """Yields batches of indices for one rank: shuffled per epoch from a seed, resumable mid-epoch.

    Every rank computes the same permutation from ``seed + epoch`` and takes every ``world_size``-th index
    starting at ``rank``. With ``even_shards`` (training) the permutation is padded by wrapping around so that
    all ranks run the same number of steps, as ``DistributedSampler`` does; without it (evaluation) no sample is
    repeated, so ranks may get one batch more or less.

    Args:
        num_samples: size of the dataset.
        batch_size: indices per batch (per rank).
        shuffle: draw a new permutation each epoch; otherwise iterate in order.
        drop_last: drop the last incomplete batch.
        even_shards: pad the permutation so that every rank gets the same number of indices.
        seed: base of the per-epoch permutation seed.
        rank: this process' rank.
        world_size: number of processes sharing the data.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        even_shards: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.even_shards = even_shards
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches) to skip once, set on resume

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses (Lightning calls this every epoch)."""
        self.epoch = epoch

    def skip_consumed(self, epoch: int, batches: int) -> None:
        """Skip the first ``batches`` batches of ``epoch`` once: they were consumed before a checkpoint."""
        self._skip = (epoch, batches)

    def _shard(self) -> Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        if self.even_shards and self.world_size > 1:
            total = -(-self.num_samples // self.world_size) * self.world_size
            order = torch.cat([order, order[: total - self.num_samples]])
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.even_shards and self.world_size > 1:
            shard_size = -(-self.num_samples // self.world_size)
        else:
            shard_size = len(range(self.rank, self.num_samples, self.world_size))
        if self.drop_last:
            return shard_size // self.batch_size
        return -(-shard_size // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        shard = self._shard()
        start = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            start = self._skip[1]
        self._skip = None
        for batch_index in range(start, len(self)):
            yield shard[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]


class InMemoryLoader:
    """Iterates over ``(images, targets)`` batches of tensors held in memory, in the order of its sampler.

    With ``return_indices`` the batches are ``(images, targets, indices)``: each sample's index into ``images``
    (the sampler's indices, so under DDP every rank's are indices into the whole set), as methods with a memory
    bank per training sample need (:class:`~lit_kd.methods.ContrastiveRepresentationDistillation`).

    Lightning treats it like a ``DataLoader``: it calls ``sampler.set_epoch`` at each epoch and ``len()`` for
    progress bars; it does not replace the sampler under DDP because the sampler already shards by rank.
    """

    def __init__(
        self, images: Tensor, targets: Tensor, sampler: ShardedBatchSampler, return_indices: bool = False
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"images ({len(images)}) and targets ({len(targets)}) differ in length")
        self.images = images
        self.targets = targets
        self.sampler = sampler
        self.return_indices = return_indices
        self.batch_sampler = None  # Lightning inspects ``sampler`` and ``batch_sampler`` like a DataLoader's

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        for indices in self.sampler:
            if self.return_indices:
                yield self.images[indices], self.targets[indices], indices
            else:
                yield self.images[indices], self.targets[indices]
