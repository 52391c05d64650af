"""Feature maps of any network, by module path, captured with forward hooks.

Feature-based distillation (FitNets, attention transfer, AMA, AFD) reads intermediate maps. Like torchdistill's
``forward_hook.py``, lit-kd names them by module path (``layer3``, ``features.7``, ``stages.1``) and records the
outputs of those submodules with forward hooks while the network runs, so any ``nn.Module`` works (torchvision
models, the user's own, other model libraries) and nothing has to trace. Zoo networks (:class:`FeatureNet`) also
accept their feature indices (0 = stem, ``i`` = stage ``i``), which map to ``stem`` and ``stages.<i - 1>``.

The recorded maps live only inside :meth:`FeatureTaps.capture` (and a call of :class:`FeatureTaps`): the taps hold
no reference to them afterwards, so nothing leaks across steps.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from lit_kd.models.base import FeatureNet
from lit_kd.models.probe import evaluation_mode, first_device, probe

LayerName = int | str


def resolve_layer(network: nn.Module, layer: LayerName, argument: str) -> str:
    """The module path of ``layer``: a path as given, or a :class:`FeatureNet` feature index (0 = stem, -1 = last).

    Raises:
        ValueError: the path names no submodule (the message lists valid paths, those with 4-D outputs first), or
            an index is given for a network that is not a :class:`FeatureNet`, or is out of range.

    Example:
        >>> from lit_kd.models import create_model
        >>> network = create_model("resnet8", num_classes=10)
        >>> resolve_layer(network, 2, "hint_layer"), resolve_layer(network, -1, "feature_layer")
        ('stages.1', 'stages.2')
    """
    names = dict(network.named_modules())
    if isinstance(layer, bool) or not isinstance(layer, int | str):
        raise ValueError(f"{argument} must be a module path (str) or a zoo feature index (int), got {layer!r}")
    if isinstance(layer, int):
        if not isinstance(network, FeatureNet):
            raise ValueError(
                f"{argument}={layer}: a feature index needs a lit_kd.models.FeatureNet; {type(network).__name__} is "
                f"not one, so name the layer by module path, e.g. {_suggestions(network)}"
            )
        count = len(network.feature_channels)
        if not -count <= layer < count:
            raise ValueError(f"{argument} must be in 0..{count - 1} (0 = stem, then each stage), got {layer}")
        layer %= count
        return "stem" if layer == 0 else f"stages.{layer - 1}"
    for candidate in (layer, f"_orig_mod.{layer}"):  # a torch.compile'd network keeps its modules under _orig_mod.
        if candidate in names and candidate != "":
            return candidate
    raise ValueError(
        f"{argument}: {type(network).__name__} has no submodule {layer!r}; valid module paths include "
        f"{_suggestions(network)}"
    )


def _suggestions(network: nn.Module, limit: int = 24) -> str:
    """Module paths of ``network``, those with 4-D outputs on a 32x32 probe first (all of them if the probe fails)."""
    names = [name for name, _ in network.named_modules() if name]
    four_d: list[str] = []
    handles = []
    for name, module in network.named_modules():
        if name:
            handles.append(module.register_forward_hook(functools.partial(_note_4d, four_d, name)))
    try:
        probe(network, (3, 32, 32), batch_size=1)
        ordered = four_d + [name for name in names if name not in four_d]
    except Exception:  # a network that does not take 32x32 images: list every path
        ordered = names
    finally:
        for handle in handles:
            handle.remove()
    shown = ", ".join(ordered[:limit])
    return f"[{shown}{f', ... ({len(ordered) - limit} more)' if len(ordered) > limit else ''}]"


def _note_4d(found: list[str], name: str, module: nn.Module, inputs: Any, output: Any) -> None:
    if isinstance(output, Tensor) and output.dim() == 4 and name not in found:
        found.append(name)


class FeatureTaps:
    """Records the outputs of named submodules of ``network`` whenever it runs inside :meth:`capture`.

    Each map is a copy of what its layer returned, so an in-place operation after the layer (a ``ReLU(inplace=True)``
    after a BatchNorm, torchvision's ``out += identity``) does not change it. The copy is always taken, since a hook
    cannot foresee which later operations work in place; it is one elementwise pass per map, 0.35% of a training step
    of a CIFAR ResNet-20 with its three stage outputs tapped (batch 64, 32x32, CPU; the forward and backward passes
    run dozens of such passes per stage).

    The hooks stay registered for the network's lifetime (they survive pickling for DDP spawn, checkpoints and
    ``train()``/``eval()``) and do nothing outside :meth:`capture`. A deep copy of the network (e.g. the teacher's
    inference copy, :func:`~lit_kd.models.inference.inference_copy`) keeps hooks that record into these same taps, so
    ``taps(images, network=copy)`` reads the copy's maps.

    Args:
        network: any ``nn.Module``.
        layers: module paths, or :class:`FeatureNet` feature indices (see :func:`resolve_layer`).
        argument: the configuration field the layers came from, named in errors.

    Example:
        >>> from torch import nn
        >>> network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten())
        >>> taps = FeatureTaps(network, ["0"], "student_layers")
        >>> output, (conv,) = taps(torch.zeros(2, 3, 8, 8))
        >>> tuple(conv.shape), taps.maps
        ((2, 4, 6, 6), {})
    """

    def __init__(self, network: nn.Module, layers: Sequence[LayerName], argument: str) -> None:
        self.network = network
        self.layers = [resolve_layer(network, layer, argument) for layer in layers]
        self.argument = argument
        self.maps: dict[str, Tensor] = {}
        self.active = False
        for name in dict.fromkeys(self.layers):
            network.get_submodule(name).register_forward_hook(functools.partial(self._record, name))

    def _record(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not self.active:
            return
        if isinstance(output, tuple | list):
            output = output[0]
        if not isinstance(output, Tensor):
            raise ValueError(f"{self.argument}: {name!r} outputs {type(output).__name__}, not a tensor")
        self.maps[name] = output.clone()  # a later in-place operation (ReLU(inplace=True), +=) must not change it

    @contextmanager
    def capture(self) -> Iterator[dict[str, Tensor]]:
        """Record the layers' outputs of forward passes run inside; forget them on exit."""
        self.maps, self.active = {}, True
        try:
            yield self.maps
        finally:
            self.active, self.maps = False, {}

    def __call__(self, images: Tensor, network: nn.Module | None = None) -> tuple[Any, list[Tensor]]:
        """Run the network (or ``network``, a copy of it); its output and the recorded maps, in ``layers`` order."""
        with self.capture() as maps:
            output = (network or self.network)(images)
            missing = [name for name in self.layers if name not in maps]
            if missing:
                raise RuntimeError(
                    f"{self.argument}: {missing} did not run in {type(self.network).__name__}'s forward pass"
                )
            return output, [maps[name] for name in self.layers]


@torch.no_grad()
def probe_maps(taps: FeatureTaps, image_size: int | Sequence[int]) -> list[Tensor]:
    """The maps of ``taps`` on a zero batch ``[2, 3, H, W]`` (in eval mode), to size adapters before training."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    network = taps.network
    with evaluation_mode(network):
        _, maps = taps(torch.zeros(2, 3, height, width, device=first_device(network)))
    for name, feature_map in zip(taps.layers, maps, strict=True):
        if feature_map.dim() != 4:
            raise ValueError(
                f"{taps.argument}: {name!r} of {type(network).__name__} outputs shape {tuple(feature_map.shape)}, "
                "not a [B, C, H, W] feature map"
            )
    return maps


def stage_outputs(network: nn.Module, argument: str) -> list[LayerName]:
    """Every stage output of a zoo network (feature indices ``1 .. n``); other networks must name their layers."""
    if not isinstance(network, FeatureNet):
        raise ValueError(
            f"{argument}: {type(network).__name__} is not a lit_kd.models.FeatureNet, so its maps must be named by "
            f"module path (e.g. {argument}: [layer2, layer3])"
        )
    return list(range(1, len(network.feature_channels)))
