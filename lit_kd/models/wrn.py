"""Wide residual networks (WRN-d-k) with pre-activation blocks."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from lit_kd.models.base import FeatureNet


class PreActBlock(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice) of a wide residual network.

    From Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016), block type B(3,3) with
    optional dropout between the convolutions. When the block changes the spatial size or
    channel count, the shortcut is a 1x1 convolution of the pre-activated input; otherwise it is
    the identity on the raw input (as in the authors' reference implementation).

    Args:
        in_channels: Channels of the block input.
        out_channels: Channels of the block output.
        stride: Stride of the first convolution (2 halves the spatial size).
        dropout: Dropout probability between the two convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``residual(x) + shortcut(x)`` (no activation after the sum: the next block applies it)."""
        activated = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(FeatureNet):
    """Wide residual network WRN-``depth``-``widen_factor`` for 32x32 images.

    From Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016): a 3x3 stem conv with 16
    channels, then three stages of ``n = (depth - 4) / 6`` pre-activation blocks with
    ``16k``/``32k``/``64k`` channels and strides 1/2/2. The final BN + ReLU sits at the end of the
    last stage, so the last feature map and the embedding are post-activation; the stem output and
    the first two stage outputs are pre-activation residual sums, as in RepDistiller.

    Args:
        depth: Total number of weighted layers, ``6n + 4`` (10, 16, 22, 28, 40, ...).
        widen_factor: Width multiplier ``k`` of the stage channels.
        num_classes: Number of output logits.
        dropout: Dropout probability inside each block (0 disables it).

    Raises:
        ValueError: If ``depth`` is not ``6n + 4`` for a positive ``n``, ``widen_factor`` is not a
            positive integer, or ``dropout`` is not in ``[0, 1)``.

    Example:
        >>> model = WideResNet(depth=40, widen_factor=2, num_classes=100)
        >>> model.feature_channels
        [16, 32, 64, 128]
    """

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 10, dropout: float = 0.0) -> None:
        if depth < 10 or (depth - 4) % 6 != 0:
            allowed = ", ".join(str(6 * n + 4) for n in (1, 2, 3, 4, 5, 6))
            raise ValueError(f"depth must be 6n + 4 for a positive integer n ({allowed}, ...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be a positive integer, got {widen_factor}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        blocks_per_stage = (depth - 4) // 6
        stem_channels = 16
        stage_channels = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        stages: list[nn.Module] = []
        in_channels = stem_channels
        for stage_index, out_channels in enumerate(stage_channels):
            first_stride = 1 if stage_index == 0 else 2
            layers: list[nn.Module] = [PreActBlock(in_channels, out_channels, first_stride, dropout)]
            layers += [PreActBlock(out_channels, out_channels, 1, dropout) for _ in range(blocks_per_stage - 1)]
            if stage_index == len(stage_channels) - 1:
                layers += [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        super().__init__(
            stem=nn.Conv2d(3, stem_channels, 3, padding=1, bias=False),
            stages=stages,
            feature_channels=[stem_channels, *stage_channels],
            num_classes=num_classes,
        )
        self.depth = depth
        self.widen_factor = widen_factor
