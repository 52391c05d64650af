"""Common shape of every zoo network: stem -> stages -> global average pool -> linear classifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class FeatureOutput(NamedTuple):
    """Everything a distillation method may read from one forward pass of a :class:`FeatureNet`.

    Attributes:
        logits: Unnormalised class scores, shape ``[B, num_classes]``.
        features: Output of the stem followed by the output of each stage, in order, so
            ``len(features) == 1 + len(stages)``. Feature-based methods (FitNets, attention
            transfer, AFD) read intermediate maps from here instead of through hooks.
        embedding: Globally average-pooled, flattened last feature map, the vector fed to the
            classifier, shape ``[B, embedding_dim]``.
    """

    logits: Tensor
    features: list[Tensor]
    embedding: Tensor


class FeatureNet(nn.Module):
    """Base for every zoo network: stem -> stages -> global average pool -> linear classifier.

    Subclasses only build their stem and stages and declare the channel count of each feature
    map; the forward pass is implemented once here, so every network exposes its intermediate
    maps the same way. Global pooling is ``adaptive_avg_pool2d(..., 1)``, so a network built for
    CIFAR also runs on larger inputs (e.g. 64x64 Tiny-ImageNet). Networks whose blocks are
    pre-activation put their final BN + ReLU at the end of the last stage, so the last feature
    map and the embedding are always post-activation.

    Args:
        stem: Module applied to the input image before the first stage.
        stages: Modules applied one after another to the stem output; each one's output is a
            feature map returned in :attr:`FeatureOutput.features`.
        feature_channels: Channel count of the stem output followed by that of each stage output
            (``1 + len(stages)`` entries).
        num_classes: Number of output logits.

    Raises:
        ValueError: If ``num_classes`` is not positive, there are no stages, or
            ``feature_channels`` does not have ``1 + len(stages)`` positive entries.

    Example:
        >>> import torch
        >>> from lit_kd.models import create_model
        >>> model = create_model("resnet8", num_classes=10)
        >>> output = model.forward_features(torch.randn(2, 3, 64, 64))
        >>> output.logits.shape, output.embedding.shape
        (torch.Size([2, 10]), torch.Size([2, 64]))
        >>> [feature.shape[1] for feature in output.features] == model.feature_channels
        True
    """

    num_classes: int
    stem: nn.Module
    stages: nn.ModuleList
    classifier: nn.Linear

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[nn.Module],
        feature_channels: Sequence[int],
        num_classes: int,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
        if len(stages) == 0:
            raise ValueError("stages must contain at least one module, got an empty sequence")
        if len(feature_channels) != 1 + len(stages):
            raise ValueError(
                f"feature_channels must have 1 + len(stages) = {1 + len(stages)} entries "
                f"(stem, then each stage), got {len(feature_channels)}: {list(feature_channels)}"
            )
        if any(channels < 1 for channels in feature_channels):
            raise ValueError(f"feature_channels must all be positive, got {list(feature_channels)}")
        self.num_classes = num_classes
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self._feature_channels = [int(channels) for channels in feature_channels]
        self.classifier = nn.Linear(self._feature_channels[-1], num_classes)
        initialize_weights(self)

    @property
    def feature_channels(self) -> list[int]:
        """Channel count of each entry of :attr:`FeatureOutput.features` (stem first)."""
        return list(self._feature_channels)

    @property
    def embedding_dim(self) -> int:
        """Length of :attr:`FeatureOutput.embedding`, the classifier's input size."""
        return self._feature_channels[-1]

    def forward_features(self, x: Tensor) -> FeatureOutput:
        """Run the network and return logits, every intermediate feature map and the embedding.

        Args:
            x: Image batch, shape ``[B, 3, H, W]`` with ``H, W >= 32``.

        Returns:
            The logits, the stem and stage outputs, and the pooled embedding.
        """
        out = self.stem(x)
        features = [out]
        for stage in self.stages:
            out = stage(out)
            features.append(out)
        embedding = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.classifier(embedding)
        return FeatureOutput(logits=logits, features=features, embedding=embedding)

    def forward(self, x: Tensor) -> Tensor:
        """Return class logits, shape ``[B, num_classes]``, for an image batch ``[B, 3, H, W]``."""
        return self.forward_features(x).logits


def initialize_weights(module: nn.Module) -> None:
    """Apply the standard initialisation of the zoo networks in place.

    Convolutions get Kaiming-normal weights (fan-out, ReLU gain, He et al. 2015) and zero bias;
    batch-norm layers get weight 1 and bias 0; linear layers keep PyTorch's default.

    Args:
        module: Network whose submodules are initialised.
    """
    for submodule in module.modules():
        if isinstance(submodule, nn.Conv2d):
            nn.init.kaiming_normal_(submodule.weight, mode="fan_out", nonlinearity="relu")
            if submodule.bias is not None:
                nn.init.zeros_(submodule.bias)
        elif isinstance(submodule, nn.BatchNorm2d):
            nn.init.ones_(submodule.weight)
            nn.init.zeros_(submodule.bias)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Build the ubiquitous conv -> batch norm -> ReLU unit used by stems and plain blocks.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size; padding keeps the spatial size at stride 1.
        stride: Convolution stride.

    Returns:
        The three layers as one ``nn.Sequential``.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
