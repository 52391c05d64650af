"""Deep mutual learning."""

from __future__ import annotations

from typing import Any

from torch import nn

from lit_kd.methods.online import OnlineDistillationModule


class DeepMutualLearning(OnlineDistillationModule):
    """Deep mutual learning of Zhang, Xiang, Hospedales & Lu (CVPR 2018): peers of any architectures teach each other.

    Peer ``i`` minimises ``CE(p_i, y) + 1 / (n - 1) * sum_{j != i} KL(p_j || p_i)`` with the other peers'
    predictions detached (the paper's objective for ``n`` peers; plain KL, i.e. temperature 1, as in the paper). All
    peers are updated from the same batch with one optimiser step (the paper alternates peers; the simultaneous
    update is what most reimplementations use, and it keeps DDP, AMP, gradient clipping and accumulation in
    Lightning's hands).
    With :class:`~lit_kd.callbacks.CyclicPairSchedule` peer ``i`` learns from peer ``i - 1`` only.

    Args:
        networks: the peers (e.g. a small and a large zoo network).
        temperature: softening temperature of the mutual KL (1: DML).
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``.

    Example:
        >>> from lit_kd.models import create_model
        >>> module = DeepMutualLearning([create_model("resnet8", 10), create_model("resnet14", 10)])
        >>> module.num_networks
        2
    """

    def __init__(self, networks: list[nn.Module], temperature: float = 1.0, **kwargs: Any) -> None:
        super().__init__(networks, temperature=temperature, **kwargs)
