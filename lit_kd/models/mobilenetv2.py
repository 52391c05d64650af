"""MobileNetV2 adapted to 32x32 inputs."""

from __future__ import annotations

from torch import Tensor, nn

from lit_kd.models.base import FeatureNet

# (expansion ratio t, output channels c, number of blocks n, stride of the first block s), Table 2 of
# Sandler et al. with the CIFAR changes (the 24-channel group has stride 1 instead of 2), grouped into
# stages by output resolution.
_STAGE_SETTINGS: tuple[tuple[tuple[int, int, int, int], ...], ...] = (
    ((1, 16, 1, 1), (6, 24, 2, 1)),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)
_STEM_CHANNELS = 32
_LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to the nearest multiple of ``divisor``, never dropping below 90% of it.

    The rounding rule of the TensorFlow and torchvision MobileNet implementations, used so that
    ``width_mult`` yields hardware-friendly channel counts.

    Args:
        value: Channel count after applying the width multiplier.
        divisor: The result is a multiple of this.

    Returns:
        The rounded channel count (at least ``divisor``).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise conv, linear 1x1 projection.

    From Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018),
    Table 1. The input is added to the output when the block keeps both shape and stride.

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output.
        stride: Stride of the depthwise convolution.
        expand_ratio: Ratio of hidden (expanded) to input channels; 1 skips the expansion conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden_channels = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [
                nn.Conv2d(in_channels, hidden_channels, 1, bias=False),
                nn.BatchNorm2d(hidden_channels),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(
                hidden_channels, hidden_channels, 3, stride=stride, padding=1, groups=hidden_channels, bias=False
            ),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Return the block output, plus ``x`` when the block has a residual connection."""
        out = self.layers(x)
        return x + out if self.use_residual else out


class MobileNetV2(FeatureNet):
    """MobileNetV2 for 32x32 images (also runs on larger inputs).

    From Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018),
    adapted to CIFAR as in common ports (e.g. kuangliu/pytorch-cifar): the stem convolution and
    the 24-channel group use stride 1, so a 32x32 input ends at 4x4 instead of 1x1. The blocks
    are grouped into four stages by output resolution (32, 16, 8, 4 at 32x32 input); the last
    stage ends with the 1x1 conv to 1280 channels, so the embedding is that map, pooled.

    Args:
        num_classes: Number of output logits.
        width_mult: Multiplier of every channel count (rounded to multiples of 8); the final
            1280 channels are only scaled up, never down, as in the paper.

    Raises:
        ValueError: If ``width_mult`` is not positive.

    Example:
        >>> MobileNetV2(num_classes=10).feature_channels
        [32, 24, 32, 96, 1280]
    """

    def __init__(self, num_classes: int = 10, width_mult: float = 1.0) -> None:
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        stem_channels = make_divisible(_STEM_CHANNELS * width_mult)
        last_channels = make_divisible(_LAST_CHANNELS * max(1.0, width_mult))
        stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU6(inplace=True),
        )
        stages: list[nn.Module] = []
        feature_channels = [stem_channels]
        in_channels = stem_channels
        for stage_index, stage_settings in enumerate(_STAGE_SETTINGS):
            blocks: list[nn.Module] = []
            for expand_ratio, channels, num_blocks, first_stride in stage_settings:
                out_channels = make_divisible(channels * width_mult)
                for block_index in range(num_blocks):
                    stride = first_stride if block_index == 0 else 1
                    blocks.append(InvertedResidual(in_channels, out_channels, stride, expand_ratio))
                    in_channels = out_channels
            if stage_index == len(_STAGE_SETTINGS) - 1:
                blocks += [
                    nn.Conv2d(in_channels, last_channels, 1, bias=False),
                    nn.BatchNorm2d(last_channels),
                    nn.ReLU6(inplace=True),
                ]
                in_channels = last_channels
            stages.append(nn.Sequential(*blocks))
            feature_channels.append(in_channels)
        super().__init__(stem=stem, stages=stages, feature_channels=feature_channels, num_classes=num_classes)
        self.width_mult = width_mult
