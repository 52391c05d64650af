"""``lit-kd fit|validate|test|predict``: LightningCLI over every lit-kd method and DataModule.

:class:`LitKDCLI` is the Lightning part of the ``lit-kd`` command (:mod:`lit_kd.cli` dispatches to it and to the other
commands); the ``export`` and ``born-again`` commands build their runs with it. It imports no command.

Examples:
    lit-kd fit --config recipes/cifar10/kd_resnet56_resnet20.yaml
    lit-kd predict --config recipes/cifar10/kd_resnet56_resnet20.yaml --ckpt_path best.ckpt --data.predict_files photos/
    lit-kd fit --config recipes/cifar10/teacher_resnet56.yaml --data.data_dir ~/data --trainer.max_epochs 1
    lit-kd test --config recipes/cifar10/vanilla_resnet20.yaml --ckpt_path checkpoints/.../last.ckpt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn

from lit_kd.checkpointing import check_finite_weights, safe_load, use_atomic_checkpoints
from lit_kd.data.base import InMemoryImageDataModule
from lit_kd.errors import configuration_error
from lit_kd.loggers import LogConfigToLoggers

#: LightningCLI's subcommands.
SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: The usage line a parser error prints (argparse would print every option, about 50 lines, before the error).
SHORT_USAGE = "lit-kd {command} --config RECIPE [--section.option VALUE ...]"


class LitKDCLI(LightningCLI):
    """LightningCLI with lit-kd's defaults: any method as ``--model``, any DataModule as ``--data``, seed 0.

    The resolved configuration goes to ``config.yaml`` in the log directory and to every logger
    (:class:`~lit_kd.loggers.LogConfigToLoggers`), e.g. W&B with ``--trainer.logger WandbLogger``. Checkpoints are
    written atomically (:class:`~lit_kd.checkpointing.AtomicCheckpointIO`).
    """

    def __init__(self, args: ArgsType = None, run: bool = True) -> None:
        super().__init__(
            model_class=LightningModule,  # any lit-kd method, and stage-1 ConditionalGAN (no student)
            datamodule_class=InMemoryImageDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_callback=LogConfigToLoggers,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_kwargs={command: {"usage": SHORT_USAGE.format(command=command)} for command in SUBCOMMANDS},
            args=args,
            run=run,
        )

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` without taking any setting from it (the configuration decides every setting).

        LightningCLI merges a checkpoint's stored hyperparameters over the recipe and the command line. lit-kd does
        not: a file cannot switch settings on (trust, a teacher path to unpickle), an override such as
        ``--model.temperature`` is not silently lost, and a path stored on another machine can be corrected. The file
        is read without running code (:func:`~lit_kd.checkpointing.safe_load`) and must be a Lightning checkpoint
        with finite weights; resuming (``fit``) a checkpoint of another method is refused, and each setting that
        differs from the one the checkpoint was trained with is named in one warning (see
        :func:`resumed_setting_changes`).
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        checkpoint = safe_load(ckpt_path)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
            raise ValueError(
                f"ckpt_path: {ckpt_path} is not a Lightning checkpoint (it has no 'state_dict'); a network's weights "
                "alone are read by --model.teacher_checkpoint (a teacher) or a pretrained student"
            )
        check_finite_weights(checkpoint["state_dict"], f"ckpt_path: {ckpt_path}")
        if subcommand != "fit":
            return
        model = self.config[subcommand].get("model")
        configured = model.as_dict() if hasattr(model, "as_dict") else dict(model or {})
        stored = dict(checkpoint.get("hyper_parameters") or {})
        stored_class = stored.get("_class_path")
        if stored_class and configured.get("class_path") and stored_class != configured["class_path"]:
            raise ValueError(
                f"ckpt_path: {ckpt_path} was trained by {stored_class}, the configuration builds "
                f"{configured['class_path']}: resume with the run's own recipe"
            )
        changes = resumed_setting_changes(stored, configured.get("init_args") or {})
        if changes:
            rank_zero_warn(
                f"resuming {ckpt_path} with settings that differ from the ones it was trained with, so the run is no "
                f"longer an exact continuation: {'; '.join(changes)}"
            )

    def before_predict(self) -> None:
        """``lit-kd predict``: predictions go to ``<default_root_dir>/predictions.csv`` unless a writer is set."""
        from lit_kd.callbacks.predictions import PredictionWriter

        if not any(isinstance(callback, PredictionWriter) for callback in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionWriter(Path(self.trainer.default_root_dir) / "predictions.csv"))

    def instantiate_classes(self) -> None:
        """Build the configured classes; a lit-kd configuration error surfaces as itself, not wrapped by jsonargparse.

        jsonargparse reports an error raised while building ``--model`` as "Does not validate against any of the
        Union subtypes" followed by the whole namespace; the error lit-kd raised (:func:`configuration_error`) is
        re-raised instead, so ``except UntrustedCheckpointError`` and friends work from Python too.
        """
        try:
            super().instantiate_classes()
        except Exception as error:
            found = configuration_error(error)
            if found is None or found is error:
                raise
            raise found from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The configured trainer, saving checkpoints atomically (:class:`~lit_kd.checkpointing.AtomicCheckpointIO`)."""
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer


#: Stored settings that a resume may change without a word: trust (no longer a setting) and locations.
UNREPORTED_SETTINGS = ("trust_checkpoint",)
UNREPORTED_SUFFIXES = ("_checkpoint", "_checkpoints", "_dir")


def resumed_setting_changes(stored: dict[str, Any], configured: dict[str, Any]) -> list[str]:
    """The training settings of a resumed run that differ from its checkpoint's, as ``name=new (was old)``.

    What a resume keeps is the checkpoint's state: weights, optimiser and scheduler states, the loop position,
    callbacks' states. Every setting comes from the configuration (recipe and command line). A changed plain
    setting (a temperature, a loss weight, a rate) is reported; paths (``*_checkpoint``, ``*_checkpoints``,
    ``*_dir``) and the networks' and factories' configurations (not stored) are not.

    Example:
        >>> resumed_setting_changes({"temperature": 4.0, "teacher_checkpoint": "a.ckpt"},
        ...                         {"temperature": 2.0, "teacher_checkpoint": "b.ckpt"})
        ['temperature=2.0 (was 4.0)']
    """
    changes = []
    for name, was in stored.items():
        if name.startswith("_") or name in UNREPORTED_SETTINGS or name.endswith(UNREPORTED_SUFFIXES):
            continue
        if name not in configured or not _plain(was) or not _plain(configured[name]):
            continue
        if configured[name] != was:
            changes.append(f"{name}={configured[name]!r} (was {was!r})")
    return changes


def _plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_plain(item) for item in value)
    return value is None or isinstance(value, bool | int | float | str)
