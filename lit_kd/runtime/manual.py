"""The runtime of manual optimisation: several optimisers stepped by the module itself, correct under DDP and AMP.

Lightning's manual optimisation leaves to the module what automatic optimisation does for it. These are the pieces
every such lit-kd module (BSS, DFAD, AFD, the cGAN) shares: rank 0's buffers on every rank, one ``GradScaler`` per
optimiser under 16-mixed, parameters kept in DDP's graph with zero weight, idle gradients dropped before a step, a
step that does not count as a training step, schedulers stepped by hand, and the "k steps of one, then one of the
other" schedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn


def broadcast_buffers(module: LightningModule) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) of ``module`` to every rank.

    DDP does this before each forward pass, except under Lightning's manual optimisation, which turns DDP's
    bookkeeping off (``require_backward_grad_sync``) and with it the buffer broadcast: ranks would then drift apart,
    each with the statistics of its own shard. Manual-optimisation modules call this from their batch-start,
    validation-start and train-end hooks (:class:`StudentModule` does). Buffers of layers whose parameters are all
    frozen (a teacher's BatchNorm) cannot drift and are skipped. Does nothing on a single process.
    """
    if module._trainer is None or module.trainer.world_size < 2 or not torch.distributed.is_initialized():
        return
    for layer in module.modules():
        parameters = list(layer.parameters(recurse=False))
        if parameters and not any(parameter.requires_grad for parameter in parameters):
            continue
        for buffer in layer.buffers(recurse=False):
            torch.distributed.broadcast(buffer, src=0)


SCALERS_KEY = "lit_kd_gradient_scalers"


@contextlib.contextmanager
def optimizer_scaler(module: LightningModule, index: int) -> Iterator[None]:
    """Inside, the backward pass and the step of optimiser ``index`` use that optimiser's own ``GradScaler``.

    Under ``16-mixed`` precision Lightning keeps one ``GradScaler``; a manual-optimisation module that steps several
    optimisers on losses of different sizes (a generator and a discriminator, a student and a generator) is better
    served by one scaler each, so that an overflow in one does not shrink the scale of the others. Optimiser 0 uses
    Lightning's scaler (saved with the precision plugin's state); the others get their own, made like it, saved in the
    checkpoint under :data:`SCALERS_KEY` (:func:`save_scalers`). Without a scaler (32-bit, bf16) this does nothing.
    """
    plugin = module.trainer.precision_plugin if module._trainer is not None else None
    main = getattr(plugin, "scaler", None)
    if main is None or index == 0:
        yield
        return
    scalers = module.__dict__.setdefault("_scalers", {})
    if index not in scalers:
        scalers[index] = torch.amp.GradScaler(
            device=main._device,
            init_scale=main._init_scale,
            growth_factor=main._growth_factor,
            backoff_factor=main._backoff_factor,
            growth_interval=main._growth_interval,
        )
        pending = module.__dict__.get("_pending_scaler_states", {})
        if index in pending:
            scalers[index].load_state_dict(pending.pop(index))
    plugin.scaler = scalers[index]
    try:
        yield
    finally:
        plugin.scaler = main


def save_scalers(module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Store the per-optimiser scalers of :func:`optimizer_scaler` in ``checkpoint``."""
    scalers = module.__dict__.get("_scalers")
    if scalers:
        checkpoint[SCALERS_KEY] = {index: scaler.state_dict() for index, scaler in scalers.items()}


def load_scalers(module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Restore the scalers saved by :func:`save_scalers` (applied when each is first used)."""
    module.__dict__["_pending_scaler_states"] = dict(checkpoint.get(SCALERS_KEY, {}))
    module.__dict__["_scalers"] = {}


def zero_gradient_term(*modules: nn.Module | None) -> Tensor:
    """``0 * (sum of every trainable parameter)``: puts the parameters in the graph with zero gradients, as DDP needs.

    Under DDP (without ``find_unused_parameters``) every trainable parameter must receive a gradient in every
    backward pass; a loss that does not use some of them adds this term. ``None`` entries are skipped.

    Example:
        >>> from torch import nn
        >>> layer = nn.Linear(2, 1)
        >>> zero_gradient_term(layer).backward()
        >>> layer.weight.grad.tolist(), layer.bias.grad.tolist()
        ([[0.0, 0.0]], [0.0])
    """
    sums = [p.sum() for module in modules if module is not None for p in module.parameters() if p.requires_grad]
    return torch.stack(sums).sum() * 0.0 if sums else torch.zeros(())


def drop_gradients(modules: Iterable[nn.Module | None]) -> None:
    """Set the gradients of ``modules``' parameters to ``None``: the next optimiser step skips them entirely.

    A zero gradient is not enough: SGD's weight decay and momentum, or Adam's moments, would still move them.
    """
    for module in modules:
        if module is not None:
            for parameter in module.parameters():
                parameter.grad = None


def step_on(module: LightningModule, optimizer: Any, index: int, loss: Tensor, idle: Iterable[nn.Module]) -> None:
    """Backward ``loss`` and step ``optimizer`` (Lightning-wrapped, number ``index``) alone: ``idle`` does not move.

    The backward pass and the step use optimiser ``index``'s own scaler under 16-mixed (:func:`optimizer_scaler`);
    the gradients of ``idle`` (parts in the graph only for DDP, or the other player of an adversarial game) are
    dropped before the step (:func:`drop_gradients`).
    """
    optimizer.zero_grad()
    with optimizer_scaler(module, index):
        module.manual_backward(loss)
        drop_gradients(idle)
        optimizer.step()


def uncounted_step(module: LightningModule, optimizer: Any) -> None:
    """Step the optimiser behind a Lightning-wrapped one, through the AMP scaler if there is one.

    Lightning counts every wrapped ``optimizer.step()`` of manual optimisation as a global step. A module that
    steps several optimisers on one batch steps all but one this way, so ``global_step`` counts batches and
    ``max_steps``, the cosine schedule and every step-keyed schedule keep their meaning.
    """
    scaler = getattr(module.trainer.precision_plugin, "scaler", None)
    if scaler is None:
        optimizer.optimizer.step()
    else:
        scaler.step(optimizer.optimizer)
        scaler.update()


def step_schedulers(module: LightningModule, interval: str) -> None:
    """Step the LR schedulers whose interval is ``interval`` (``"step"`` or ``"epoch"``), as Lightning would."""
    for config in module.trainer.lr_scheduler_configs:
        counter = module.trainer.global_step if interval == "step" else module.current_epoch + 1
        if config.interval == interval and counter % config.frequency == 0:
            config.scheduler.step()


def in_second_phase(step: int, first_steps: int, second_steps: int = 1) -> bool:
    """Whether ``step`` is in the second phase of cycles of ``first_steps`` steps of one kind, then ``second_steps``.

    Example (cGAN-KD's 4 discriminator steps per generator step; DFAD's 5 student steps per generator step):
        >>> [in_second_phase(step, 4) for step in range(6)]
        [False, False, False, False, True, False]
    """
    return step % (first_steps + second_steps) >= first_steps
