"""VGG networks with batch norm for 32x32 images (VGG-8/11/13 of RepDistiller)."""

from __future__ import annotations

from torch import nn

from lit_kd.models.base import FeatureNet, conv_bn_relu

# Output channels of each 3x3 conv, one inner list per block (the stem is the first block).
_VGG_CONFIGS: dict[int, list[list[int]]] = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}


def _conv_block(in_channels: int, channels: list[int]) -> list[nn.Module]:
    """Stack conv-BN-ReLU units with the given output channels, starting from ``in_channels``."""
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += list(conv_bn_relu(in_channels, out_channels))
        in_channels = out_channels
    return layers


class VGG(FeatureNet):
    """VGG with batch norm and a single linear classifier, as used for CIFAR distillation.

    From Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
    Recognition" (ICLR 2015), in the CIFAR form of Tian et al., "Contrastive Representation
    Distillation" (ICLR 2020, RepDistiller): five blocks of 3x3 conv-BN-ReLU layers (the first
    block is the stem), 2x2 max-pooling in front of blocks 2-4, global average pooling and one
    linear layer. At 32x32 input the feature maps are 32, 16, 8, 4 and 4 pixels wide.

    RepDistiller also max-pools in front of the last block, but only for 64x64 inputs (so both
    sizes end at 4x4); pass ``pool_before_last_block=True`` to reproduce that on 64x64 data.

    Args:
        depth: 8, 11 or 13 (the layer counts of RepDistiller's ``vgg8``, ``vgg11``, ``vgg13``).
        num_classes: Number of output logits.
        pool_before_last_block: Whether the last block also starts with 2x2 max-pooling.

    Raises:
        ValueError: If ``depth`` is not one of 8, 11, 13.

    Example:
        >>> VGG(depth=8, num_classes=100).feature_channels
        [64, 128, 256, 512, 512]
    """

    def __init__(self, depth: int, num_classes: int = 10, pool_before_last_block: bool = False) -> None:
        if depth not in _VGG_CONFIGS:
            raise ValueError(f"depth must be one of {sorted(_VGG_CONFIGS)}, got {depth}")
        config = _VGG_CONFIGS[depth]
        stem = nn.Sequential(*_conv_block(3, config[0]))
        stages: list[nn.Module] = []
        for block_index in range(1, len(config)):
            in_channels = config[block_index - 1][-1]
            is_last_block = block_index == len(config) - 1
            pooling = [nn.MaxPool2d(kernel_size=2, stride=2)] if pool_before_last_block or not is_last_block else []
            stages.append(nn.Sequential(*pooling, *_conv_block(in_channels, config[block_index])))
        super().__init__(
            stem=stem,
            stages=stages,
            feature_channels=[channels[-1] for channels in config],
            num_classes=num_classes,
        )
        self.depth = depth
        self.pool_before_last_block = pool_before_last_block
