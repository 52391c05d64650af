"""Guards that stop a run before it goes wrong: bad learning rates, a NaN loss, a tuner that cannot work."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import LearningRateFinder
from torch import Tensor
from torch.optim import Optimizer


def check_learning_rates(optimizers: list[Optimizer], owner: str) -> None:
    """Refuse a negative or non-finite learning rate in any parameter group, before the first update.

    Raises:
        ValueError: naming ``owner``, the optimiser (index and class), the group and the rate.
    """
    for index, optimizer in enumerate(optimizers):
        for group_index, group in enumerate(optimizer.param_groups):
            rate = group.get("lr")
            if isinstance(rate, Tensor):
                rate = float(rate)
            if isinstance(rate, float | int) and not (rate >= 0 and rate < float("inf")):
                raise ValueError(
                    f"{owner}: optimiser {index} ({type(optimizer).__name__}), parameter group {group_index} has "
                    f"learning rate {rate}: it must be a finite number >= 0"
                )


def stop_on_non_finite_loss(module: LightningModule, loss: Tensor) -> None:
    """Raise ``FloatingPointError`` naming the method, step and batch if ``loss`` is NaN or infinite.

    Called from ``on_before_backward``, which every backward pass goes through (automatic and manual optimisation
    alike), so no optimiser step is taken with the bad loss. Under DDP the ranks agree first (one boolean
    all-reduce), so all of them stop together instead of waiting on each other.
    """
    finite = bool(torch.isfinite(loss.detach()).all())
    if module._trainer is not None:
        finite = module.trainer.strategy.reduce_boolean_decision(finite, all=True)
    if not finite:
        raise FloatingPointError(
            f"{type(module).__name__}: the training loss is not finite (NaN or inf; this rank's value: "
            f"{loss.detach().float().cpu().tolist()}) at global step {module.global_step} (epoch "
            f"{module.current_epoch}, batch {getattr(module, '_batch_idx', '?')}); training stopped before the "
            "weights were updated with it. Lower the learning rate, check the data, or clip gradients."
        )


def refuse_lr_find(module: LightningModule) -> None:
    """Refuse ``Tuner.lr_find`` under manual optimisation, with a message saying why and what to do instead.

    Its search reads the loss each ``training_step`` returns and drives one optimiser, while these methods step
    several optimisers themselves (or one in several steps) and return nothing.
    """
    if module.automatic_optimization or module._trainer is None:
        return
    if any(isinstance(callback, LearningRateFinder) for callback in module.trainer.callbacks):
        raise RuntimeError(
            f"{type(module).__name__} optimises with manual optimisation (several optimisers, several steps per "
            "batch), which Tuner.lr_find cannot search: set the learning rates in its optimiser arguments instead"
        )
