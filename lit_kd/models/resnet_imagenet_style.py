"""ImageNet-style ResNet-18/34 adapted to 32x32 images: the "resnet_8x" networks of the DFAD code."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from lit_kd.models.base import FeatureNet, conv_bn_relu
from lit_kd.models.resnet_cifar import BasicBlock


class ImageNetStyleResNet(FeatureNet):
    """ResNet-18/34 with ImageNet widths (64/128/256/512) but a 3x3, stride-1 stem and no max pooling, for 32x32.

    The layout of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), Table 1 (BasicBlocks,
    2-2-2-2 or 3-4-6-3 blocks per stage, strides 1/2/2/2), with the 7x7 stride-2 stem and the max pool replaced by
    one 3x3 stride-1 conv + BN + ReLU, as in ``network/resnet_8x.py`` of the DFAD code
    (VainF/Data-Free-Adversarial-Distillation, borrowed from huawei-noah/Data-Efficient-Model-Compression), whose
    ``ResNet34_8x`` / ``ResNet18_8x`` are the paper's CIFAR teacher and student. Blocks, projection shortcuts
    (1x1 conv + BN) and initialisation (Kaiming-normal fan-out convs, BN 1/0, PyTorch's default linear) are the
    official ones; the official 4x4 average pool is global average pooling here, the same at 32x32 input and
    still valid on larger images.

    ``features`` holds five maps: the stem output and the output of each stage (at 32x32 input: 32x32, 32x32,
    16x16, 8x8, 4x4).

    Args:
        depth: 18 or 34.
        num_classes: Number of output logits.

    Raises:
        ValueError: If ``depth`` is not 18 or 34.

    Example:
        >>> import torch
        >>> model = ImageNetStyleResNet(depth=18, num_classes=10)
        >>> output = model.forward_features(torch.randn(2, 3, 32, 32))
        >>> [tuple(feature.shape[1:]) for feature in output.features]
        [(64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
        >>> output.logits.shape
        torch.Size([2, 10])
    """

    #: Blocks per stage for each depth (He et al., 2016, Table 1).
    blocks_per_depth: ClassVar[dict[int, tuple[int, int, int, int]]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    stage_channels: ClassVar[tuple[int, int, int, int]] = (64, 128, 256, 512)

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        if depth not in self.blocks_per_depth:
            raise ValueError(f"depth must be one of {sorted(self.blocks_per_depth)}, got {depth}")
        stages = []
        in_channels = 64
        for stage_index, (blocks, out_channels) in enumerate(
            zip(self.blocks_per_depth[depth], self.stage_channels, strict=True)
        ):
            layers = [BasicBlock(in_channels, out_channels, stride=1 if stage_index == 0 else 2)]
            layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        super().__init__(
            stem=conv_bn_relu(3, 64),
            stages=stages,
            feature_channels=[64, *self.stage_channels],
            num_classes=num_classes,
        )
        self.depth = depth
