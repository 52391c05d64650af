"""Optimiser defaults: the usual CIFAR SGD, a learning-rate override, and cosine annealing over the whole run."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LRSchedulerCallable
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR


def default_optimizer(parameters: Any) -> Optimizer:
    """SGD, lr 0.1, momentum 0.9 (Nesterov), weight decay 5e-4: the usual CIFAR ResNet/WRN recipe."""
    return SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


def override_learning_rate(optimizer: Optimizer, rate: float | None) -> Optimizer:
    """Put ``rate`` on every parameter group at the optimiser's default rate (groups with a rate of their own keep it).

    ``None`` changes nothing. Call it before a scheduler is built: the scheduler records the starting rates.

    Example:
        >>> from torch import nn
        >>> from torch.optim import SGD
        >>> a, b = nn.Linear(1, 1), nn.Linear(1, 1)
        >>> optimizer = SGD([{"params": a.parameters()}, {"params": b.parameters(), "lr": 0.5}], lr=0.1)
        >>> [group["lr"] for group in override_learning_rate(optimizer, 0.01).param_groups]
        [0.01, 0.5]
    """
    if rate is not None:
        for group in optimizer.param_groups:
            if group["lr"] == optimizer.defaults["lr"]:
                group["lr"] = rate
        optimizer.defaults["lr"] = rate
    return optimizer


def with_lr_schedule(optimizer: Optimizer, factory: LRSchedulerCallable | None, trainer: Trainer) -> dict[str, Any]:
    """``optimizer``'s Lightning config with ``factory``'s scheduler; without one, cosine annealing to 0 per step.

    The default anneals over all the run's optimiser steps (``trainer.estimated_stepping_batches``). This is our
    default, the schedule of most current CIFAR distillation code (e.g. a cosine over the epochs); a paper's own
    schedule is given as ``lr_scheduler`` in its recipe.
    """
    if factory is not None:
        return {"optimizer": optimizer, "lr_scheduler": factory(optimizer)}
    scheduler = CosineAnnealingLR(optimizer, T_max=max(int(trainer.estimated_stepping_batches), 1))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
