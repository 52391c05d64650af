"""The ``lit-kd`` command: LightningCLI over every lit-kd method and DataModule.

Examples:
    lit-kd fit --config recipes/cifar10/kd_resnet56_resnet20.yaml
    lit-kd fit --config recipes/cifar10/teacher_resnet56.yaml --data.data_dir ~/data --trainer.max_epochs 1
    lit-kd test --config recipes/cifar10/vanilla_resnet20.yaml --ckpt_path checkpoints/.../last.ckpt
"""

from __future__ import annotations

from lightning.pytorch.cli import ArgsType, LightningCLI

from lit_kd.data.base import InMemoryImageDataModule
from lit_kd.methods.base import StudentModule


class LitKDCLI(LightningCLI):
    """LightningCLI with lit-kd's defaults: any method as ``--model``, any DataModule as ``--data``, seed 0."""

    def __init__(self, args: ArgsType = None, run: bool = True) -> None:
        super().__init__(
            model_class=StudentModule,
            datamodule_class=InMemoryImageDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )


def main(args: ArgsType = None) -> None:
    """Entry point of ``lit-kd`` and ``python -m lit_kd``."""
    LitKDCLI(args=args)


if __name__ == "__main__":
    main()
