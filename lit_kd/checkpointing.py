"""Checkpoint files that are either the old one or the new one, never half of the new one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Trainer


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint to a temporary file beside the target, flushes it to disk, then renames it over the target.

    A rename within one folder is atomic, so a run killed while saving (``kill -9``, a pre-empted node, a full disk)
    leaves ``last.ckpt`` as the previous complete checkpoint, which ``--ckpt_path`` can resume from. Lightning's own
    ``TorchCheckpointIO`` writes through a temporary file in the system temp folder and moves it, which is a copy,
    not a rename, whenever that folder is on another file system. Remote paths (``s3://``, ...) are left to
    Lightning's implementation.

    The ``lit-kd`` command installs it on every trainer whose strategy uses the default checkpoint I/O; in your own
    code pass ``Trainer(plugins=[AtomicCheckpointIO()])``.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> AtomicCheckpointIO().save_checkpoint({"step": 1}, f"{folder}/last.ckpt")
        >>> torch.load(f"{folder}/last.ckpt")
        {'step': 1}
        >>> sorted(os.listdir(folder))
        ['last.ckpt']
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (local paths)."""
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def use_atomic_checkpoints(trainer: Trainer) -> None:
    """Give ``trainer`` :class:`AtomicCheckpointIO` unless its strategy was configured with another checkpoint I/O."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
