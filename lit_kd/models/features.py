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
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
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
        record: ``"output"`` records what each layer returns; ``"input"`` its first argument (a forward pre-hook:
            e.g. the pooled features a classifier receives, :func:`last_linear_layer`).

    Example:
        >>> from torch import nn
        >>> network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten())
        >>> taps = FeatureTaps(network, ["0"], "student_layers")
        >>> output, (conv,) = taps(torch.zeros(2, 3, 8, 8))
        >>> tuple(conv.shape), taps.maps
        ((2, 4, 6, 6), {})
    """

    def __init__(
        self,
        network: nn.Module,
        layers: Sequence[LayerName],
        argument: str,
        record: Literal["output", "input"] = "output",
    ) -> None:
        if record not in ("output", "input"):
            raise ValueError(f"record must be 'output' or 'input', got {record!r}")
        self.network = network
        self.layers = [resolve_layer(network, layer, argument) for layer in layers]
        self.argument = argument
        self.maps: dict[str, Tensor] = {}
        self.active = False
        for name in dict.fromkeys(self.layers):
            module = network.get_submodule(name)
            if record == "input":
                module.register_forward_pre_hook(functools.partial(self._record_input, name))
            else:
                module.register_forward_hook(functools.partial(self._record, name))

    def _record_input(self, name: str, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self._record(name, module, inputs, inputs[0] if inputs else None)

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


def last_linear_layer(network: nn.Module, argument: str, probe_size: int = 32) -> str:
    """The module path of the last ``nn.Linear`` to run in ``network``'s forward pass: usually its classifier.

    Its input is the network's penultimate features (for a zoo network, :attr:`FeatureOutput.embedding`); read it
    with ``FeatureTaps(network, [path], argument, record="input")``. One probe pass (a zero batch
    ``[2, 3, probe_size, probe_size]``, evaluation mode, no gradient) finds it by the order the layers run in, not
    the order they are declared in.

    Raises:
        ValueError: one line, when no ``nn.Linear`` runs (or the probe fails): name the layer by module path then.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        >>> last_linear_layer(net, "student_layer")
        '3'
    """
    ran: list[str] = []
    handles = [
        module.register_forward_pre_hook(lambda module, inputs, name=name: ran.append(name))
        for name, module in network.named_modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        probe(network, (3, probe_size, probe_size))
    except Exception as error:
        raise ValueError(
            f"{argument}: a probe batch [2, 3, {probe_size}, {probe_size}] does not run in {type(network).__name__} "
            f"({error}); name the feature layer by module path"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
    if not ran:
        raise ValueError(
            f"{argument}: {type(network).__name__} runs no nn.Linear, so its penultimate features cannot be found; "
            f"name the feature layer by module path, e.g. {_suggestions(network)}"
        )
    return ran[-1]


def spatial_stages(network: nn.Module, probe_size: int = 32) -> list[str]:
    """The module paths of ``network``'s stage outputs: the last module before each change of spatial resolution.

    One probe pass (a zero batch ``[2, 3, probe_size, probe_size]``, evaluation mode, no gradient) records the output
    size of every module, in the order the modules finish. A module inside a block (any module but a plain
    ``Sequential``/``ModuleList`` container) whose output size differs from the block's is the block's inner detail
    (the expansion before a strided depthwise convolution, a squeeze-and-excitation branch, a channels-last permute)
    and is skipped. Each run of the remaining modules at one resolution is a stage; its output is the module that
    finishes last in it (the outermost one: ``layer2`` rather than ``layer2.1``). A global pooling
    (``AdaptiveAvgPool2d``/``AdaptiveMaxPool2d`` outside any block) ends the search. For a torchvision ResNet this is
    ``relu`` (the stem), ``layer1`` ... ``layer4``; for a MobileNet the last block at each resolution.

    Raises:
        ValueError: one line, when the network has no 4-D feature maps on the probe (an MLP, a ViT's tokens): name
            the layers then.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.ReLU())
        >>> spatial_stages(net)
        ['1', '3']
    """
    finished: list[tuple[str, tuple[int, ...] | None]] = []

    def note(name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        finished.append((name, tuple(output.shape[-2:]) if isinstance(output, Tensor) and output.dim() == 4 else None))

    modules = dict(network.named_modules())
    handles = [module.register_forward_hook(functools.partial(note, name)) for name, module in modules.items() if name]
    try:
        probe(network, (3, probe_size, probe_size))
    except Exception as error:
        raise ValueError(
            f"{type(network).__name__}: a probe batch [2, 3, {probe_size}, {probe_size}] does not run ({error}); name "
            "the feature layers by module path"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
    sizes = dict(finished)  # each module's last output size
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)

    def blocks_around(name: str) -> list[str]:
        parts = name.split(".")
        enclosing = [".".join(parts[:end]) for end in range(1, len(parts))]
        return [block for block in enclosing if not isinstance(modules[block], containers)]

    kept: list[tuple[str, tuple[int, ...]]] = []
    for name, size in finished:
        if size is None or any(sizes.get(block) != size for block in blocks_around(name)):
            continue
        if isinstance(modules[name], nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d) and not blocks_around(name):
            break
        kept.append((name, size))
    stages = [name for index, (name, size) in enumerate(kept) if index + 1 == len(kept) or kept[index + 1][1] != size]
    if not stages:
        raise ValueError(
            f"{type(network).__name__} has no [B, C, H, W] feature maps on a {probe_size}x{probe_size} probe, so no "
            f"stage can be chosen: name the feature layers by module path, e.g. {_suggestions(network)}"
        )
    return stages


def default_layers(network: nn.Module, which: str, argument: str, probe_size: int = 32) -> list[LayerName]:
    """The layers a feature method reads when none is named: ``which`` is ``"stages"``, ``"middle"`` or ``"last"``.

    A zoo network (:class:`FeatureNet`) keeps lit-kd's exact defaults: every stage output (feature indices
    ``1 .. n``), stage 2 (``2``, RepDistiller's ``--hint_layer 2``), the last stage (``-1``). Any other network gets
    the stages of :func:`spatial_stages`: all of them, the middle one (``(n - 1) // 2``) or the last one. The choice
    is logged once at INFO level.
    """
    if isinstance(network, FeatureNet):
        chosen: list[LayerName] = {
            "stages": list(range(1, len(network.feature_channels))),
            "middle": [2],
            "last": [-1],
        }[which]
        return chosen
    stages = spatial_stages(network, probe_size)
    chosen = {"stages": stages, "middle": [stages[(len(stages) - 1) // 2]], "last": [stages[-1]]}[which]
    rank_zero_info(f"{argument}: {type(network).__name__} has no layer named; using its stage outputs {chosen}")
    return chosen


def pair_from_deepest(student_layers: list[LayerName], teacher_layers: list[LayerName]) -> tuple[list, list]:
    """The last ``min(len)`` layers of each, so that unequal stage counts pair from the deepest stage back.

    Example:
        >>> pair_from_deepest(["a", "b", "c"], ["x", "y"])
        (['b', 'c'], ['x', 'y'])
    """
    count = min(len(student_layers), len(teacher_layers))
    return student_layers[len(student_layers) - count :], teacher_layers[len(teacher_layers) - count :]


def stage_pairs(
    student: nn.Module,
    teacher: nn.Module,
    student_layers: list[LayerName] | None,
    teacher_layers: list[LayerName] | None,
    probe_size: int = 32,
) -> tuple[list[LayerName], list[LayerName]]:
    """Paired student and teacher layers for a method over every stage (attention transfer).

    Named layers are kept as they are (their lengths must then agree); an unnamed side takes every stage output
    (:func:`default_layers`), and unequal stage counts pair from the deepest stage back (:func:`pair_from_deepest`).
    """
    if student_layers is not None and teacher_layers is not None:
        return list(student_layers), list(teacher_layers)
    if student_layers is None:
        student_layers = default_layers(student, "stages", "student_layers", probe_size)
    if teacher_layers is None:
        teacher_layers = default_layers(teacher, "stages", "teacher_layers", probe_size)
    return pair_from_deepest(list(student_layers), list(teacher_layers))


def middle_stage_pair(
    network: nn.Module,
    other: nn.Module,
    layer: LayerName | None,
    other_layer: LayerName | None,
    arguments: tuple[str, str],
    probe_size: int = 32,
) -> tuple[LayerName, LayerName]:
    """One layer of ``network`` and its counterpart in ``other`` (FitNets' hint and guided layers, AMA's block).

    ``layer`` unnamed is ``network``'s middle stage (:func:`default_layers`); ``other_layer`` unnamed is the name
    given as ``layer`` (the same depth by name, lit-kd's behaviour for zoo networks), else ``other``'s middle stage.
    """
    if other_layer is None:
        other_layer = layer if layer is not None else default_layers(other, "middle", arguments[1], probe_size)[0]
    if layer is None:
        layer = default_layers(network, "middle", arguments[0], probe_size)[0]
    return layer, other_layer
