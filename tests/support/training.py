"""Running tiny trainings: a quiet CPU trainer, the generated CIFAR-10 DataModule, ``lit-kd fit`` arguments, and
callbacks and loggers that record or interrupt a run (importable by ddp_spawn workers and CLI subprocesses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger

from lit_kd.data import CIFAR10DataModule
from tests.support.paths import RECIPES


def tiny_trainer(root: Path, **kwargs: Any) -> pl.Trainer:
    """A CPU trainer without logger, progress bar or model summary."""
    defaults: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
        max_epochs=1,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def tiny_cifar(root: Path, **kwargs: Any) -> CIFAR10DataModule:
    defaults: dict[str, Any] = dict(batch_size=16, use_cache=False)
    defaults.update(kwargs)
    return CIFAR10DataModule(root, **defaults)


class RecordImages(Logger):
    """A logger with ``log_image``, like W&B's: keeps ``(key, image size, caption)`` of every image it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, tuple[int, int], str]] = []

    name = "record"
    version = 0

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
        self.images.append((key, images[0].size, kwargs["caption"][0]))


def fit_args(recipe: str, data_dir: Path, *options: str, **settings: Any) -> list[str]:
    """``lit-kd fit`` arguments for ``recipes/<recipe>`` on ``data_dir``.

    ``options`` are passed as they are (``"--trainer.callbacks+=ModelCheckpoint"``); each keyword ``a__b=v`` becomes
    ``--a.b v`` (``trainer__max_epochs=1``).
    """
    args = ["fit", "--config", str(RECIPES / recipe), "--data.data_dir", str(data_dir), *options]
    for key, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += [f"--{key.replace('__', '.')}", text]
    return args


class SigtermAtStep(pl.Callback):
    """Sends this process a real SIGTERM after training step ``step`` (a scheduler's pre-emption, ``kill <pid>``)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
