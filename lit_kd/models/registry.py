"""Build zoo networks by the short names used in distillation papers (``resnet32x4``, ``wrn_40_2``, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lit_kd.models.base import FeatureNet
from lit_kd.models.mobilenetv2 import MobileNetV2
from lit_kd.models.resnet_cifar import CifarResNet
from lit_kd.models.resnet_imagenet_style import ImageNetStyleResNet
from lit_kd.models.vgg import VGG
from lit_kd.models.wrn import WideResNet


@dataclass(frozen=True)
class _ModelSpec:
    """A zoo class and the constructor arguments that its registry name fixes."""

    model_class: type[FeatureNet]
    architecture: dict[str, Any] = field(default_factory=dict)


_X4_WIDTHS = {"stem_channels": 32, "stage_channels": (64, 128, 256)}

_REGISTRY: dict[str, _ModelSpec] = {
    **{f"resnet{depth}": _ModelSpec(CifarResNet, {"depth": depth}) for depth in (8, 14, 20, 26, 32, 44, 56, 110)},
    "resnet8x4": _ModelSpec(CifarResNet, {"depth": 8, **_X4_WIDTHS}),
    "resnet32x4": _ModelSpec(CifarResNet, {"depth": 32, **_X4_WIDTHS}),
    **{
        f"wrn_{depth}_{widen_factor}": _ModelSpec(WideResNet, {"depth": depth, "widen_factor": widen_factor})
        for depth, widen_factor in ((16, 2), (40, 2), (16, 4), (40, 4), (28, 10))
    },
    "mobilenetv2": _ModelSpec(MobileNetV2),
    **{f"vgg{depth}": _ModelSpec(VGG, {"depth": depth}) for depth in (8, 11, 13)},
    **{f"resnet{depth}_8x": _ModelSpec(ImageNetStyleResNet, {"depth": depth}) for depth in (18, 34)},
}


def available_models() -> list[str]:
    """Return the names accepted by :func:`create_model`, grouped by family, smallest first.

    Example:
        >>> "resnet32x4" in available_models()
        True
    """
    return list(_REGISTRY)


def create_model(name: str, num_classes: int, **kwargs: Any) -> FeatureNet:
    """Build a zoo network from its registry name, for configs and scripts that pick models by name.

    The name fixes the architecture (e.g. ``wrn_40_2`` is ``WideResNet(depth=40, widen_factor=2)``);
    ``kwargs`` pass the remaining constructor options through, such as ``dropout`` for wide
    ResNets or ``width_mult`` for MobileNetV2.

    Args:
        name: One of :func:`available_models`.
        num_classes: Number of output logits.
        **kwargs: Other keyword arguments of the model class.

    Returns:
        The freshly initialised network.

    Raises:
        ValueError: If ``name`` is unknown (the message lists the available names) or ``kwargs``
            try to override an argument that the name fixes.

    Example:
        >>> model = create_model("wrn_40_2", num_classes=100, dropout=0.1)
        >>> type(model).__name__, model.depth, model.widen_factor, model.num_classes
        ('WideResNet', 40, 2, 100)
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"Unknown model name {name!r}; available models: {', '.join(available_models())}")
    overridden = sorted(set(kwargs) & set(spec.architecture))
    if overridden:
        raise ValueError(
            f"Model {name!r} fixes {overridden} ({spec.architecture}); build {spec.model_class.__name__} "
            f"directly to choose them"
        )
    return spec.model_class(num_classes=num_classes, **spec.architecture, **kwargs)
