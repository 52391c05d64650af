"""The ``lit-kd`` command: LightningCLI over every lit-kd method and DataModule.

Examples:
    lit-kd fit --config recipes/cifar10/kd_resnet56_resnet20.yaml
    lit-kd fit --config recipes/cifar10/teacher_resnet56.yaml --data.data_dir ~/data --trainer.max_epochs 1
    lit-kd test --config recipes/cifar10/vanilla_resnet20.yaml --ckpt_path checkpoints/.../last.ckpt
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import ArgsType, LightningCLI

from lit_kd.checkpointing import use_atomic_checkpoints
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

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The configured trainer, saving checkpoints atomically (:class:`~lit_kd.checkpointing.AtomicCheckpointIO`)."""
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer


def main(args: ArgsType = None) -> None:
    """Entry point of ``lit-kd`` and ``python -m lit_kd``."""
    LitKDCLI(args=args)


if __name__ == "__main__":
    main()
