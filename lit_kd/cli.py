"""The ``lit-kd`` command: LightningCLI over every lit-kd method and DataModule.

Examples:
    lit-kd fit --config recipes/cifar10/kd_resnet56_resnet20.yaml
    lit-kd predict --config recipes/cifar10/kd_resnet56_resnet20.yaml --ckpt_path best.ckpt --data.predict_files photos/
    lit-kd export --config recipes/cifar10/kd_resnet56_resnet20.yaml --ckpt_path best.ckpt --output_dir exported/
    lit-kd fit --config recipes/cifar10/teacher_resnet56.yaml --data.data_dir ~/data --trainer.max_epochs 1
    lit-kd test --config recipes/cifar10/vanilla_resnet20.yaml --ckpt_path checkpoints/.../last.ckpt
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningCLI

from lit_kd.checkpointing import safe_load, use_atomic_checkpoints
from lit_kd.data.base import InMemoryImageDataModule
from lit_kd.loggers import LogConfigToLoggers


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
            args=args,
            run=run,
        )

    def _parse_ckpt_path(self) -> None:
        """Read ``--ckpt_path`` with :func:`~lit_kd.checkpointing.safe_load` first, so that a refused file is named.

        LightningCLI reads the checkpoint's hyperparameters with ``torch.load(weights_only=True)`` too (safe), but its
        error does not say which file was refused.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            safe_load(ckpt_path, how_to_trust=None)
        super()._parse_ckpt_path()

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


#: Set to ``1`` to see the full traceback of a configuration or data error instead of its one-line message.
TRACEBACK_ENVIRONMENT_VARIABLE = "LIT_KD_TRACEBACK"
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, pickle.UnpicklingError)
_PACKAGE_DIR = Path(__file__).resolve().parent


def configuration_error(error: BaseException) -> BaseException | None:
    """The innermost configuration or data error lit-kd raised in ``error``'s chain (``None`` if there is none).

    LightningCLI and jsonargparse wrap an error raised while a class is built (a teacher checkpoint that does not
    fit, an unknown layer name) in their own, with the whole namespace; the original is the chain's cause. Errors
    count when their type is a bad value, type, missing file or refused pickle and lit-kd's own code raised them.
    """
    found, seen, current = None, set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        if (
            isinstance(current, _USER_ERRORS)
            and frames
            and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)
        ):
            found = current
        suppressed = current.__suppress_context__ and current.__cause__ is None
        current = current.__cause__ if current.__cause__ is not None else (None if suppressed else current.__context__)
    return found


def main(args: ArgsType = None) -> None:
    """Entry point of ``lit-kd`` and ``python -m lit_kd``.

    A configuration or data error (:func:`configuration_error`) is printed as one line, ``lit-kd: error: ...``, and
    the command exits with status 2; ``LIT_KD_TRACEBACK=1`` shows the full traceback instead.
    """
    arguments = sys.argv[1:] if args is None else list(args)
    try:
        if arguments and arguments[0] == "export":
            from lit_kd.export import main as export_main

            export_main(arguments[1:])
        else:
            LitKDCLI(args=args)
    except Exception as error:
        found = configuration_error(error)
        if found is None or os.environ.get(TRACEBACK_ENVIRONMENT_VARIABLE, "") not in ("", "0"):
            raise
        print(
            f"lit-kd: error: {found}\n(set {TRACEBACK_ENVIRONMENT_VARIABLE}=1 for the full traceback)", file=sys.stderr
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
