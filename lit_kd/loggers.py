"""The resolved ``lit-kd`` configuration for every logger (TensorBoard, CSV, W&B), not only ``config.yaml``.

LightningCLI's :class:`~lightning.pytorch.cli.SaveConfigCallback` writes the resolved configuration to
``config.yaml`` in the log directory; its ``save_config`` hook (called once per run, on rank 0, after that file is
written) is Lightning's place for saving it elsewhere. :class:`LogConfigToLoggers` uses the hook to give the same
configuration to every logger as hyperparameters, so that a W&B run's config shows ``model.class_path``,
``model.init_args.temperature``, ``data.init_args.batch_size``, ... and can be filtered and compared on them.

Nothing here imports W&B: the default loggers (TensorBoard, or CSV without TensorBoard) work without it.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.cli import SaveConfigCallback


def config_as_dict(parser: ArgumentParser, config: Namespace) -> dict[str, Any]:
    """The configuration ``config`` of ``parser`` as the nested dict of plain values that ``config.yaml`` holds.

    It goes through ``parser.dump`` (what ``config.yaml`` is written with), so paths, class paths and defaults
    appear exactly as in that file, ``None`` values included.

    Example:
        >>> from jsonargparse import ArgumentParser
        >>> parser = ArgumentParser()
        >>> _ = parser.add_argument("--model.temperature", type=float, default=4.0)
        >>> _ = parser.add_argument("--ckpt_path", type=str, default=None)
        >>> config_as_dict(parser, parser.parse_args([]))
        {'model': {'temperature': 4.0}, 'ckpt_path': None}
    """
    return yaml.safe_load(parser.dump(config, skip_none=False))


class LogConfigToLoggers(SaveConfigCallback):
    """LightningCLI's ``SaveConfigCallback`` (``config.yaml`` in the log directory) that also logs the config.

    Every logger of the trainer gets the resolved configuration (:func:`config_as_dict`) through
    ``log_hyperparams``: W&B stores it as the run's config (nested: ``model.class_path``, ...), TensorBoard and
    CSV add it to their ``hparams.yaml`` (TensorBoard also to its HParams tab, flattened). Lightning then logs
    the module's own hyperparameters next to it, as usual. Loggers are skipped under ``fast_dev_run``, which
    replaces them by a no-op logger.

    Pass it as ``LightningCLI(save_config_callback=LogConfigToLoggers)``; the ``save_config_kwargs`` of
    ``SaveConfigCallback`` apply unchanged. This is Lightning's documented extension point
    (``SaveConfigCallback.save_config``); logging the config is our choice.
    """

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Log the resolved configuration to every logger (rank 0 only, once per run: Lightning's contract)."""
        if not trainer.loggers:
            return
        config = config_as_dict(self.parser, self.config)
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
