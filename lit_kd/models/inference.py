"""A frozen network made cheap to run: BatchNorm folded into the convolution before it, channels-last memory.

A teacher never trains, so every ``BatchNorm2d`` in evaluation mode that directly follows a ``Conv2d`` is an affine
map that can be folded into that convolution's weight and bias (``W' = W * g / s``, ``b' = (b - mu) * g / s + beta``,
``s = sqrt(var + eps)``). :func:`fold_batchnorm` does that in place and replaces the BatchNorm by ``nn.Identity``, so
module paths stay valid. Which convolution feeds which BatchNorm is read from a
``torch.fx`` trace when the network traces; for networks that do not, only the pairs that sit next to each other in
an ``nn.Sequential`` are folded. Nothing here requires tracing.

A pair is left as it is when folding would change what something sees: when a forward (pre-)hook sits on the
convolution, on the BatchNorm, or on a module holding one of them but not the other (a feature tap would read the
folded map, AMA's adapted layer would lose the BatchNorm behind it), and when the convolution or the BatchNorm is
called more than once in a forward pass (:func:`modules_called_more_than_once`: a shared pair would be folded twice,
a shared convolution would change its other uses).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from lit_kd.models.probe import evaluation_mode


def conv_batchnorm_pairs(network: nn.Module) -> list[tuple[str, str]]:
    """``(conv path, batchnorm path)`` pairs where the BatchNorm's only input is the convolution's output.

    From a ``torch.fx`` symbolic trace (the convolution's output must have no other user); if the network does not
    trace, from the children of ``nn.Sequential`` modules (a ``Conv2d`` followed by a ``BatchNorm2d``).

    Example:
        >>> block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        >>> conv_batchnorm_pairs(block)
        [('0', '1')]
    """
    modules = dict(network.named_modules())
    graph = _trace(network)
    if graph is None:  # untraceable (data-dependent control flow, ...): the sequential pairs only
        pairs = []
        for name, module in network.named_modules():
            if isinstance(module, nn.Sequential):
                children = list(module.named_children())
                for (first, conv), (second, norm) in zip(children, children[1:], strict=False):
                    if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                        prefix = f"{name}." if name else ""
                        pairs.append((prefix + first, prefix + second))
        return pairs
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), nn.Conv2d)
            and len(source.users) == 1
        ):
            pairs.append((source.target, node.target))
    return pairs


@torch.no_grad()
def fold_into_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Fold ``norm`` (with running statistics) into ``conv`` in place."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("only a BatchNorm with running statistics can be folded")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))).to(conv.weight))
    conv.bias = nn.Parameter((bias * scale + shift).to(conv.weight), requires_grad=conv.weight.requires_grad)


def modules_called_more_than_once(network: nn.Module, probe_size: int = 32) -> set[str] | None:
    """The paths of ``network``'s submodules that one forward pass calls more than once; ``None`` if it cannot tell.

    The calls are counted with forward pre-hooks on one probe pass (a zero batch ``[2, C, probe_size, probe_size]``,
    ``C`` the input channels of the first convolution, without gradients, in evaluation mode, with the network's own
    hooks suspended; the network is left as it was), and on the ``torch.fx`` trace if the network traces (the nodes
    calling each module); the union of both. ``None`` when neither the probe nor the trace runs.

    Example:
        >>> conv = nn.Conv2d(3, 3, 1)
        >>> sorted(modules_called_more_than_once(nn.Sequential(conv, nn.ReLU(), conv).eval()))
        ['0', '2']
    """
    paths: dict[int, list[str]] = {}
    for name, module in network.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(name)
    counts: dict[int, int] = {}
    first_conv = next((module for module in network.modules() if isinstance(module, nn.Conv2d)), None)
    reference = next(itertools.chain(network.parameters(), network.buffers()), None)
    with suspended_hooks(network):  # the network's own hooks (taps, AMA's adapter) must not see the probe
        for key, module in {id(module): module for module in network.modules()}.items():
            module.register_forward_pre_hook(functools.partial(_count_call, counts, key))
        probed = _probe(network, first_conv, reference, probe_size)
    repeated = {name for key, count in counts.items() if count > 1 for name in paths.get(key, [])} if probed else set()
    graph = _trace(network)
    if graph is not None:  # a module reached under several paths counts once per node of each
        targets = collections.Counter(node.target for node in graph.nodes if node.op == "call_module")
        modules = dict(network.named_modules(remove_duplicate=False))
        for target in targets:
            names = paths[id(modules[target])] if target in modules else [target]
            if sum(targets[name] for name in names) > 1:
                repeated.update(names)
    elif not probed:
        return None
    return repeated


@contextlib.contextmanager
def suspended_hooks(network: nn.Module) -> Iterator[None]:
    """Inside, no forward hook or pre-hook that ``network``'s modules had before runs; after, they all are back.

    Hooks registered inside (e.g. call counters) are dropped on exit with the temporary tables.
    """
    names = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")
    saved = [(module, {name: getattr(module, name) for name in names}) for module in network.modules()]
    for module, tables in saved:
        for name, table in tables.items():
            setattr(module, name, type(table)())
    try:
        yield
    finally:
        for module, tables in saved:
            for name, table in tables.items():
                setattr(module, name, table)


def _probe(network: nn.Module, first_conv: nn.Conv2d | None, reference: Tensor | None, probe_size: int) -> bool:
    """Run one zero batch through ``network`` (evaluation mode, no gradient); whether it ran."""
    try:
        with torch.no_grad(), evaluation_mode(network):
            network(
                torch.zeros(
                    2,
                    first_conv.in_channels if first_conv is not None else 3,
                    probe_size,
                    probe_size,
                    device=reference.device if reference is not None else None,
                    dtype=reference.dtype if reference is not None and reference.is_floating_point() else None,
                )
            )
    except Exception:  # a network that does not take such a batch: the trace alone decides
        return False
    return True


def _count_call(counts: dict[int, int], key: int, module: nn.Module, inputs: Any) -> None:
    counts[key] = counts.get(key, 0) + 1


def _trace(network: nn.Module) -> torch.fx.Graph | None:
    try:
        return torch.fx.symbolic_trace(network).graph
    except Exception:  # untraceable (data-dependent control flow, ...)
        return None


def _hook_separates(network: nn.Module, conv_path: str, norm_path: str) -> bool:
    """Whether a forward (pre-)hook of ``network`` sits on a module holding one of the two paths but not the other."""
    for name, module in network.named_modules():
        if not (module._forward_hooks or module._forward_pre_hooks):
            continue
        holds = [path == name or path.startswith(f"{name}.") or not name for path in (conv_path, norm_path)]
        if holds[0] != holds[1]:
            return True
    return False


def fold_batchnorm(network: nn.Module) -> int:
    """Fold every BatchNorm2d that only reads a Conv2d's output into it, in place; returns how many were folded.

    The network must be in evaluation mode for this to keep its outputs (a BatchNorm in training mode uses batch
    statistics). The folded BatchNorms become ``nn.Identity`` at the same module paths. Pairs are left unfolded where
    folding would change what a hook sees or the outputs of a module called more than once (see the module
    docstring); if the calls cannot be counted (:func:`modules_called_more_than_once` is ``None``) nothing is folded.

    Example:
        >>> block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> block[1].running_mean.fill_(0.5); _ = block[1].running_var.fill_(4.0)
        tensor([0.5000, 0.5000, 0.5000, 0.5000])
        >>> images = torch.randn(2, 3, 8, 8)
        >>> before = block(images)
        >>> fold_batchnorm(block), torch.allclose(block(images), before, atol=1e-6), type(block[1]).__name__
        (1, True, 'Identity')
    """
    repeated = modules_called_more_than_once(network)
    if repeated is None:
        return 0
    pairs = [
        (conv_path, norm_path)
        for conv_path, norm_path in conv_batchnorm_pairs(network)
        if not {conv_path, norm_path} & repeated and not _hook_separates(network, conv_path, norm_path)
    ]
    for conv_path, norm_path in pairs:
        fold_into_conv(network.get_submodule(conv_path), network.get_submodule(norm_path))
        network.set_submodule(norm_path, nn.Identity())  # not hooked (else not folded): nothing to carry over
    return len(pairs)


def to_channels_last(module: nn.Module | None, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: the first argument (a ``[B, C, H, W]`` batch) in channels-last memory format."""
    images = args[0]
    if isinstance(images, Tensor) and images.dim() == 4:
        return (images.contiguous(memory_format=torch.channels_last), *args[1:])
    return args


#: oneDNN (torch 2.14.1's v3.12) never returns from the weight gradient of a strided 1x1 convolution with fewer than
#: 8 input channels per group on a channels-last CPU batch (``jit_avx2_1x1_convolution_bwd_weights_t``, two OpenMP
#: threads): measured on this project's 2-core machine for 2 to 6 input channels and batches of 2 to 128 (ours).
CHANNELS_LAST_MIN_CPU_CHANNELS = 8


def channels_last_cpu_hazards(network: nn.Module) -> list[str]:
    """Paths of the trained convolutions whose backward pass hangs in channels-last format on a CPU.

    Those are the strided 1x1 convolutions with fewer than 8 input channels per group (see
    :data:`CHANNELS_LAST_MIN_CPU_CHANNELS`).

    Example:
        >>> channels_last_cpu_hazards(nn.Sequential(nn.Conv2d(4, 8, 1, stride=2), nn.Conv2d(8, 8, 1, stride=2)))
        ['0']
    """
    return [
        name
        for name, module in network.named_modules()
        if isinstance(module, nn.Conv2d)
        and module.weight.requires_grad
        and module.kernel_size == (1, 1)
        and module.stride != (1, 1)
        and module.in_channels // module.groups < CHANNELS_LAST_MIN_CPU_CHANNELS
    ]


def use_channels_last(network: nn.Module) -> nn.Module:
    """Put ``network``'s 4-D weights and its input batches in channels-last memory format (a pre-hook); idempotent."""
    network.to(memory_format=torch.channels_last)
    if not any(hook is to_channels_last for hook in network._forward_pre_hooks.values()):
        network.register_forward_pre_hook(to_channels_last)
    return network


def hook_owners(network: nn.Module) -> list[Any]:
    """The objects whose methods are forward (pre-)hooks of ``network``'s modules (feature taps, a LightningModule)."""
    owners = []
    for module in network.modules():
        for hook in (*module._forward_hooks.values(), *module._forward_pre_hooks.values()):
            function = hook.func if isinstance(hook, functools.partial) else hook
            owner = getattr(function, "__self__", None)
            if owner is not None and all(owner is not known for known in owners):
                owners.append(owner)
    return owners


def inference_copy(network: nn.Module, share: tuple[Any, ...] = (), fold: bool = True) -> nn.Module:
    """A deep copy of ``network`` for inference: evaluation mode, frozen, BatchNorm folded (:func:`fold_batchnorm`).

    Hooks come along with the copy, and a hooked layer keeps its own output: a convolution or BatchNorm that a hook
    reads or replaces (a feature tap, AMA's adapted layer) is not folded, nor is a module called more than once. The
    objects the hooks are methods of (:func:`hook_owners`: feature taps, the LightningModule of AMA's adapter), and
    those in ``share``, are not copied but shared, so a hook of the copy records into (or reads) the same state as the
    original's.
    """
    shared = [*hook_owners(network), *share]
    copied = copy.deepcopy(network, memo={id(obj): obj for obj in shared})
    copied.eval().requires_grad_(False)
    if fold:
        fold_batchnorm(copied)
    return copied
