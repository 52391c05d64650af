"""Channels-last memory format for the trained networks, where it is safe (not on a CPU with a oneDNN hazard)."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lit_kd.models.inference import CHANNELS_LAST_MIN_CPU_CHANNELS, channels_last_cpu_hazards, use_channels_last


def use_channels_last_where_safe(module: nn.Module, networks: list[nn.Module], on_cpu: bool) -> bool:
    """Put ``module``'s weights and ``networks``' input batches in channels-last format; whether it did.

    On a CPU it does not when a strided 1x1 convolution has fewer than
    :data:`~lit_kd.models.inference.CHANNELS_LAST_MIN_CPU_CHANNELS` input channels: that convolution's weight gradient
    never returns in channels-last format there (a oneDNN fault), and a warning names the layers.
    """
    hazards = channels_last_cpu_hazards(module) if on_cpu else []
    if hazards:
        rank_zero_warn(
            f"channels_last is off for this CPU run: the weight gradient of a strided 1x1 convolution with fewer "
            f"than {CHANNELS_LAST_MIN_CPU_CHANNELS} input channels never returns in that format on a CPU (a oneDNN "
            f"fault), and this model has {len(hazards)}: {', '.join(hazards[:3])}"
        )
        return False
    module.to(memory_format=torch.channels_last)
    for network in networks:
        use_channels_last(network)
    return True
