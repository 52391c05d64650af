"""Deep mutual learning."""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from lit_kd.methods.online import OnlineDistillationModule


class DeepMutualLearning(OnlineDistillationModule):
    """Deep mutual learning of Zhang, Xiang, Hospedales & Lu (CVPR 2018): peers of any architectures teach each other.

    Peer ``i`` minimises ``CE(p_i, y) + 1 / (n - 1) * sum_{j != i} KL(p_j || p_i)`` with the other peers'
    predictions detached: the paper's objective for ``n`` peers (its Eq. 10 averages over the ``n - 1`` peers), with
    plain KL (temperature 1) as in the paper. The official TensorFlow code sums the KL terms instead
    (YingZhangDUT/Deep-Mutual-Learning ``train_models.py:90-95``): the two agree for two peers and differ by a factor
    ``n - 1`` for more; ``kl_reduction="sum"`` reproduces the code. We keep the paper's mean as the default because it
    keeps the KL weight independent of the number of peers, so a 3-peer run needs no retuning.
    All peers are updated from the same batch with one optimiser step (ours: the official code updates the peers
    one after another, each in its own session run on its own mini-batch, ``train_models.py:310-315``; the
    simultaneous update keeps DDP, AMP, gradient clipping and accumulation in Lightning's hands).
    With :class:`~lit_kd.callbacks.CyclicPairSchedule` peer ``i`` learns from peer ``i - 1`` only.

    Args:
        networks: the peers (e.g. a small and a large zoo network).
        temperature: softening temperature of the mutual KL (1: DML).
        kl_reduction: ``"mean"`` over the peers (paper, default) or ``"sum"`` (official code).
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``.

    Example:
        >>> from lit_kd.models import create_model
        >>> module = DeepMutualLearning([create_model("resnet8", 10), create_model("resnet14", 10)])
        >>> module.num_networks
        2
    """

    def __init__(
        self,
        networks: list[nn.Module],
        temperature: float = 1.0,
        kl_reduction: Literal["mean", "sum"] = "mean",
        **kwargs: Any,
    ) -> None:
        super().__init__(networks, temperature=temperature, kl_reduction=kl_reduction, **kwargs)
