"""Networks that expect their own input normalisation: convert the data's batches for them.

A network may declare the normalisation it was trained with as ``input_mean`` and ``input_std`` (per-channel
tuples; :class:`~lit_kd.models.PretrainedNetwork` does). lit-kd batches arrive normalised with the DataModule's
``mean``/``std``; :func:`match_input_normalization` puts a forward pre-hook on such a network that turns a batch in
the data's normalisation into the network's, ``x * std_data / std_net + (mean_data - mean_net) / std_net``, so every
call of the network (logits, feature hooks, an attack's input gradients) sees what it was trained on. The methods'
base does this at setup for every network it trains or distils from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def declared_normalization(network: nn.Module) -> Normalization | None:
    """The ``(input_mean, input_std)`` a network declares, or ``None`` when it declares none.

    Example:
        >>> layer = nn.Identity()
        >>> declared_normalization(layer) is None
        True
        >>> layer.input_mean, layer.input_std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        >>> declared_normalization(layer)
        ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    """
    mean, std = getattr(network, "input_mean", None), getattr(network, "input_std", None)
    if mean is None or std is None:
        return None
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)


class InputConversion:
    """Forward pre-hook: maps a batch normalised with ``(data_mean, data_std)`` to ``(network_mean, network_std)``.

    Example:
        >>> hook = InputConversion((0.5,), (0.5,), (0.0,), (1.0,))  # [-1, 1] data into a [0, 1] network
        >>> hook(None, (torch.tensor([[[[-1.0]], [[1.0]]]]).view(1, 1, 2, 1),))[0].flatten().tolist()
        [0.0, 1.0]
    """

    def __init__(
        self,
        data_mean: Sequence[float],
        data_std: Sequence[float],
        network_mean: Sequence[float],
        network_std: Sequence[float],
    ) -> None:
        data_mean, data_std = torch.tensor(data_mean), torch.tensor(data_std)
        network_mean, network_std = torch.tensor(network_mean), torch.tensor(network_std)
        self.scale = (data_std / network_std).view(1, -1, 1, 1)
        self.shift = ((data_mean - network_mean) / network_std).view(1, -1, 1, 1)

    def __call__(self, module: nn.Module | None, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The converted batch in place of the first positional argument."""
        images = args[0]
        return (images * self.scale.to(images) + self.shift.to(images), *args[1:])


def match_input_normalization(
    network: nn.Module, data_mean: Sequence[float] | None, data_std: Sequence[float] | None
) -> bool:
    """Make ``network`` read batches normalised with the data's ``mean``/``std`` if it declares another normalisation.

    Replaces any conversion installed before (calling it again after the data changed is safe). Does nothing when
    the network declares no normalisation, the data's is unknown (``None``), or both are equal.

    Returns:
        Whether a conversion is now installed.

    Example:
        >>> network = nn.Identity()
        >>> network.input_mean, network.input_std = (0.0,), (1.0,)
        >>> match_input_normalization(network, (0.5,), (0.5,))
        True
        >>> network(torch.full((1, 1, 1, 1), -1.0)).item()
        0.0
    """
    for key, hook in list(network._forward_pre_hooks.items()):
        if isinstance(hook, InputConversion):
            del network._forward_pre_hooks[key]
    conversion = input_conversion(network, data_mean, data_std)
    if conversion is None:
        return False
    network.register_forward_pre_hook(conversion)
    return True


def valid_input_range(mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Per-channel bounds ``((0 - mean) / std, (1 - mean) / std)`` of images in ``[0, 1]`` after normalisation.

    Example:
        >>> low, high = valid_input_range((0.5, 0.25), (0.5, 0.25))
        >>> low.tolist(), high.tolist()
        ([-1.0, -1.0], [1.0, 3.0])
    """
    mean_tensor, std_tensor = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
    return (0 - mean_tensor) / std_tensor, (1 - mean_tensor) / std_tensor


def input_conversion(
    network: nn.Module, data_mean: Sequence[float] | None, data_std: Sequence[float] | None
) -> InputConversion | None:
    """The conversion from the data's ``mean``/``std`` to the normalisation ``network`` declares.

    :func:`match_input_normalization` installs it as a hook; an exported program holds it as a layer of its graph.

    Returns:
        ``None`` where no conversion is needed: ``network`` declares no normalisation, the data's is unknown, or both
        are equal.

    Example:
        >>> network = nn.Identity()
        >>> network.input_mean, network.input_std = (0.0,), (1.0,)
        >>> conversion = input_conversion(network, (0.5,), (0.5,))  # [-1, 1] data into a [0, 1] network
        >>> conversion.scale.flatten().tolist(), conversion.shift.flatten().tolist()
        ([0.5], [0.5])
        >>> input_conversion(network, (0.0,), (1.0,)) is None
        True
    """
    declared = declared_normalization(network)
    if declared is None or data_mean is None or data_std is None:
        return None
    data = (tuple(float(v) for v in data_mean), tuple(float(v) for v in data_std))
    if all(abs(a - b) < 1e-7 for pair in zip(declared, data, strict=True) for a, b in zip(*pair, strict=True)):
        return None
    return InputConversion(*data, *declared)


def declaring_submodules(root: nn.Module) -> dict[str, nn.Module]:
    """The outermost submodules of ``root`` (not ``root`` itself) that declare their input normalisation, by path.

    The ones whose inputs a training module converts: a teacher, a student, an ensemble member, an online network,
    or a part of a network that declares none itself.

    Example:
        >>> inner = nn.Identity()
        >>> inner.input_mean, inner.input_std = (0.0,), (1.0,)
        >>> list(declaring_submodules(nn.Sequential(nn.Sequential(inner), nn.ReLU())))
        ['0.0']
    """
    found: dict[str, nn.Module] = {}

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            if declared_normalization(child) is not None:
                found[f"{prefix}{name}"] = child
            else:
                visit(f"{prefix}{name}.", child)

    visit("", root)
    return found


def convert_inputs_for_networks(root: nn.Module, datamodule: Any) -> None:
    """Feed every network under ``root`` that declares its own input normalisation batches converted from the data's.

    A network with ``input_mean``/``input_std`` (e.g. a :class:`~lit_kd.models.PretrainedNetwork` trained with
    ImageNet statistics) gets a forward pre-hook converting the DataModule's normalisation (``mean``/``std``) into
    its own (:func:`match_input_normalization`); the outermost declaring module of each branch is converted (a
    teacher, a student, an ensemble member, an online network). Without the data's ``mean``/``std`` the batches are
    assumed to be in the network's normalisation already (a warning says so).
    """
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    declaring = list(declaring_submodules(root))
    for path in declaring:
        match_input_normalization(root.get_submodule(path), mean, std)
    if declaring and (mean is None or std is None):
        rank_zero_warn(
            f"{type(root).__name__}: {declaring} declare their input normalisation (input_mean/input_std) but "
            f"{type(datamodule).__name__} has no mean/std: its batches are fed to them unconverted"
        )
