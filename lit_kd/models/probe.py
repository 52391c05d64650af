"""Running a network on a dummy batch without changing it: evaluation mode, no gradient, every mode restored."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def evaluation_mode(*modules: nn.Module) -> Iterator[None]:
    """Inside, ``modules`` are in evaluation mode; after, every submodule has the mode it had before.

    Restoring each submodule's own flag (not ``module.train(was_training)``) keeps a frozen part in evaluation mode
    inside a network that is training (a teacher inside a LightningModule, a frozen backbone), and no BatchNorm
    statistic moves during a probe.

    Example:
        >>> from torch import nn
        >>> network = nn.Sequential(nn.BatchNorm1d(2), nn.BatchNorm1d(2).eval())
        >>> with evaluation_mode(network):
        ...     network.training, network[0].training
        (False, False)
        >>> network.training, network[0].training, network[1].training
        (True, True, False)
    """
    modes = [(module, module.training) for root in modules for module in root.modules()]
    for root in modules:
        root.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def first_device(network: nn.Module) -> torch.device:
    """The device of ``network``'s first parameter (or buffer); the CPU for a network without any."""
    for tensor in (*network.parameters(), *network.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def probe(network: nn.Module, shape: tuple[int, ...], batch_size: int = 2) -> Any:
    """``network``'s output on a zero batch ``[batch_size, *shape]`` on its device, in evaluation mode, no gradient."""
    with evaluation_mode(network):
        return network(torch.zeros(batch_size, *shape, device=first_device(network)))
