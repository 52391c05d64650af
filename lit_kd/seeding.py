"""Per-batch seeds: random draws that are a pure function of ``(seed, epoch, batch, rank)``, so a resume is exact.

One hash serves the image DataModules' augmentation, the data-free noise batches and every module's own draws
(:func:`reseed_for_batch`): a run resumed in the middle of an epoch draws for batch ``b`` what the uninterrupted run
drew for it, on every rank, whatever happened before.
"""

from __future__ import annotations

import torch

#: The prime the hash multiplies by between its fields (any large prime keeps nearby tuples apart).
_PRIME = 1_000_003


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0, world_size: int = 1) -> int:
    """A 63-bit seed for batch ``batch`` of ``epoch`` on ``rank`` of ``world_size`` processes; distinct across ranks.

    Example:
        >>> batch_seed(0, 0, 1) != batch_seed(0, 1, 0)
        True
        >>> batch_seed(7, 2, 3, rank=0, world_size=2) + 1 == batch_seed(7, 2, 3, rank=1, world_size=2)
        True
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    return (((seed * _PRIME + epoch) * _PRIME + batch) * world_size + rank) % (2**63)


def reseed_for_batch(seed: int, epoch: int, batch: int, rank: int = 0, world_size: int = 1) -> None:
    """Reseed torch's global generator with :func:`batch_seed` (a module's own draws: noise, attacks, crops)."""
    torch.manual_seed(batch_seed(seed, epoch, batch, rank, world_size))
