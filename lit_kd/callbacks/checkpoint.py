"""Checkpoints whose ``last.ckpt`` always holds the last weights, one run per folder, and a saved stop on SIGTERM."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

#: The file that marks a checkpoint folder as in use by a running ``fit`` (it holds that process's id).
LOCK_NAME = ".lit-kd-run.lock"
#: Partial checkpoint files of :class:`~lit_kd.checkpointing.AtomicCheckpointIO` older than this many seconds whose
#: process is gone are removed when a run starts in their folder.
STALE_PARTIAL_SECONDS = 60.0


class ResumableCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with three guarantees the recipes rely on.

    1. **``last.ckpt`` is the last weights.** Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint is
       written at the same step, so with ``monitor`` set it stays at the best epoch. Here it is written at every
       point where Lightning considers saving (each validation, or each epoch with ``save_on_train_epoch_end``), at
       the end of training, and when the run is stopped by SIGTERM or Ctrl-C, so it always resumes from where the run
       stopped (to the last validation after ``kill -9``).
    2. **One run per folder.** A ``fit`` that does not resume (no ``--ckpt_path``) refuses a ``dirpath`` that holds
       checkpoints of an earlier run, unless ``overwrite=True``, instead of writing ``best-v1.ckpt`` beside the old
       ``best.ckpt``; and a ``fit`` refuses a folder that another live process is writing to (a lock file holds its
       process id; a lock left by a killed run is taken over). A resumed run continues in its own folder.
    3. **No litter.** Partial files left by a run killed while saving are removed when the next run starts there.

    Args:
        overwrite: a fresh run may replace an earlier run's checkpoints in ``dirpath``.
        enable_version_counter: Lightning's option, off here: ``best.ckpt`` stays the name of the best checkpoint.
        *args: Lightning's ``ModelCheckpoint`` arguments.
        **kwargs: Lightning's ``ModelCheckpoint`` arguments.
    """

    def __init__(
        self, *args: Any, overwrite: bool = False, enable_version_counter: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        self.overwrite = overwrite
        self._last_written_step: int | None = None
        self._lock: Path | None = None

    # --------------------------------------------------------------------------------------- one run per folder
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Clean stale partial files, take the folder's lock and refuse an earlier run's folder (after any restore).

        Rank 0 decides (the folder is its to write) and every rank raises the same error, so DDP stops together.
        """
        if trainer.fast_dev_run or self.dirpath is None or "://" in str(self.dirpath):
            return
        resuming = trainer.ckpt_path is not None
        refusal = self._claim_folder(Path(self.dirpath), resuming) if trainer.is_global_zero else None
        refusal = trainer.strategy.broadcast(refusal, src=0)
        if refusal is not None:
            raise ValueError(refusal)

    def _claim_folder(self, folder: Path, resuming: bool) -> str | None:
        """Take ``folder`` for this run; the reason it cannot be taken, or ``None``."""
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(folder)
        lock = folder / LOCK_NAME
        owner = _lock_owner(lock)
        if owner is not None and owner != os.getpid() and _process_alive(owner):
            return (
                f"checkpoint folder {folder} is in use by another running process (pid {owner}, {lock}): two runs "
                "would overwrite each other's last.ckpt; choose another dirpath"
            )
        earlier = sorted(path.name for path in folder.glob("*.ckpt"))
        if earlier and not resuming and not self.overwrite:
            return (
                f"checkpoint folder {folder} holds an earlier run's checkpoints ({', '.join(earlier[:4])}): resume "
                f"it with --ckpt_path {folder / 'last.ckpt'}, or set ResumableCheckpoint's overwrite: true, or choose "
                "another dirpath"
            )
        lock.write_text(str(os.getpid()))
        self._lock = lock
        return None

    def _release_lock(self) -> None:
        if self._lock is not None and _lock_owner(self._lock) == os.getpid():
            self._lock.unlink(missing_ok=True)
        self._lock = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Release the folder's lock."""
        if stage == "fit":
            self._release_lock()

    # ------------------------------------------------------------------------------------------- last weights
    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_step = trainer.global_step

    def _save_last_if_behind(self, trainer: Trainer) -> None:
        if self.save_last and self._last_written_step != trainer.global_step and not trainer.sanity_checking:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Lightning's saves, then ``last.ckpt`` if it does not hold this step yet (``save_on_train_epoch_end``)."""
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_last(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Lightning's saves, then ``last.ckpt`` if it does not hold this step yet."""
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_last(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``last.ckpt`` holds the final weights (a run may end between validations, e.g. at ``max_steps``)."""
        if not trainer.fast_dev_run:
            self._save_last_if_behind(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """On SIGTERM or Ctrl-C, save ``last.ckpt`` at the step reached, so the run resumes from there."""
        super().on_exception(trainer, pl_module, exception)
        stopped = isinstance(exception, SIGTERMException | KeyboardInterrupt)
        if stopped and trainer.state.fn == "fit" and not trainer.fast_dev_run:
            self._save_last_if_behind(trainer)
            step = trainer.global_step
            rank_zero_info(f"stopped by {type(exception).__name__} at global step {step}: last.ckpt saved")
        self._release_lock()

    def _should_skip_last(self, trainer: Trainer) -> bool:
        return bool(trainer.fast_dev_run) or trainer.state.fn != "fit" or trainer.sanity_checking

    def state_dict(self) -> dict[str, Any]:
        """Lightning's state and the step ``last.ckpt`` was last written at."""
        return {**super().state_dict(), "last_written_step": self._last_written_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore Lightning's state and the step of the last ``last.ckpt``."""
        super().load_state_dict(state_dict)
        self._last_written_step = state_dict.get("last_written_step")


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(folder: Path) -> None:
    """Remove ``.<name>.<pid>.partial`` files whose writer is gone and that are older than a minute."""
    now = time.time()
    for partial in folder.glob(".*.partial"):
        try:
            pid = int(partial.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        try:
            old = now - partial.stat().st_mtime > STALE_PARTIAL_SECONDS
        except FileNotFoundError:
            continue
        if old and not _process_alive(pid):
            partial.unlink(missing_ok=True)
