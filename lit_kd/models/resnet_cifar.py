"""CIFAR ResNets (ResNet-8 ... ResNet-110 and the wider ResNet-8x4 / ResNet-32x4 of RepDistiller)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F

from lit_kd.models.base import FeatureNet, conv_bn_relu

Shortcut = Literal["projection", "zero_pad"]


class ZeroPadShortcut(nn.Module):
    """The parameter-free shortcut of He et al. (2016), option A: subsample by ``stride``, zero-pad the new channels.

    As in akamaster/pytorch_resnet_cifar10 (``LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4,
    planes // 4)))``): the added channels are split evenly before and after the input's.

    Example:
        >>> import torch
        >>> ZeroPadShortcut(16, 32, stride=2)(torch.ones(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"a zero-padding shortcut cannot reduce channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.padding = (
            (out_channels - in_channels) // 2,
            out_channels - in_channels - (out_channels - in_channels) // 2,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Subsampled ``x`` with zero channels before and after."""
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, *self.padding))


class BasicBlock(nn.Module):
    """Residual block of two 3x3 conv + BN layers, the building block of CIFAR ResNets.

    From He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), Fig. 2 (left).
    When the block changes the spatial size or channel count, the shortcut is a 1x1 conv + BN
    projection (option B of the paper, as in RepDistiller) or, with ``shortcut="zero_pad"``, the
    parameter-free :class:`ZeroPadShortcut` (option A, as the paper's CIFAR networks); otherwise
    it is the identity.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output.
        stride: Stride of the first convolution (2 halves the spatial size).
        shortcut: ``"projection"`` (option B) or ``"zero_pad"`` (option A).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: Shortcut = "projection") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "zero_pad":
                self.shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
            elif shortcut == "projection":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            else:
                raise ValueError(f"shortcut must be 'projection' or 'zero_pad', got {shortcut!r}")

    def forward(self, x: Tensor) -> Tensor:
        """Return ``relu(residual(x) + shortcut(x))``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(FeatureNet):
    """ResNet for 32x32 images with BasicBlocks: a 3x3 stem and three stages of ``n`` blocks each.

    From He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), Sec. 4.2: depth
    ``6n + 2`` with 16/32/64 channels and strides 1/2/2. The default widths give ResNet-8 ... -110;
    ``stem_channels=32, stage_channels=(64, 128, 256)`` gives the "x4" teachers/students
    (ResNet-8x4, ResNet-32x4) of Tian et al., "Contrastive Representation Distillation"
    (ICLR 2020, RepDistiller). Shortcuts that change shape are 1x1 conv + BN projections (option B, as
    RepDistiller), or with ``shortcut="zero_pad"`` parameter-free (option A, as the paper and the
    pretrained networks of :class:`~lit_kd.models.PretrainedNetwork`).

    ``features`` holds four maps: the stem output and the output of each stage (at 32x32 input:
    32x32, 32x32, 16x16, 8x8).

    Args:
        depth: Total number of weighted layers, ``6n + 2`` (8, 14, 20, 26, 32, 44, 56, 110, ...).
        num_classes: Number of output logits.
        stem_channels: Output channels of the 3x3 stem convolution.
        stage_channels: Output channels of the three stages.
        shortcut: ``"projection"`` (option B) or ``"zero_pad"`` (option A) for the shortcuts that
            change shape.

    Raises:
        ValueError: If ``depth`` is not ``6n + 2`` for a positive ``n``, or ``stage_channels`` does
            not hold three positive integers.

    Example:
        >>> import torch
        >>> model = CifarResNet(depth=20, num_classes=10)
        >>> output = model.forward_features(torch.randn(2, 3, 32, 32))
        >>> [tuple(feature.shape[1:]) for feature in output.features]
        [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        stem_channels: int = 16,
        stage_channels: Sequence[int] = (16, 32, 64),
        shortcut: Shortcut = "projection",
    ) -> None:
        if depth < 8 or (depth - 2) % 6 != 0:
            allowed = ", ".join(str(6 * n + 2) for n in (1, 2, 3, 4, 5, 7, 9, 18))
            raise ValueError(f"depth must be 6n + 2 for a positive integer n ({allowed}, ...), got {depth}")
        if len(stage_channels) != 3 or any(channels < 1 for channels in stage_channels):
            raise ValueError(f"stage_channels must be three positive integers, got {list(stage_channels)}")
        if stem_channels < 1:
            raise ValueError(f"stem_channels must be a positive integer, got {stem_channels}")
        blocks_per_stage = (depth - 2) // 6
        stages = []
        in_channels = stem_channels
        for stage_index, out_channels in enumerate(stage_channels):
            first_stride = 1 if stage_index == 0 else 2
            blocks = [BasicBlock(in_channels, out_channels, stride=first_stride, shortcut=shortcut)]
            blocks += [BasicBlock(out_channels, out_channels, shortcut=shortcut) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = out_channels
        super().__init__(
            stem=conv_bn_relu(3, stem_channels),
            stages=stages,
            feature_channels=[stem_channels, *stage_channels],
            num_classes=num_classes,
        )
        self.depth = depth
        self.shortcut_type = shortcut
