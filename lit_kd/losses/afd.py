"""Feature-map adversarial losses and the small modules of AFD (Chung et al., ICML 2020)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Least-squares discriminator loss of AFD: ``mean([1 - D(real)]^2) + mean(D(fake)^2)``.

    AFD's ``L_D1 = [1 - D1(T2(G2(x)))]^2 + [D1(T1(G1(x)))]^2``: a network's discriminator scores the *other*
    network's (transformed) feature map as real (1) and its own as fake (0).

    Example:
        >>> import torch
        >>> discriminator_loss(torch.ones(4), torch.zeros(4)).item()
        0.0
    """
    return (1 - real_scores).pow(2).mean() + fake_scores.pow(2).mean()


def generator_loss(fake_scores: Tensor) -> Tensor:
    """Least-squares loss of a network fooling its discriminator: ``mean([1 - D(own feature map)]^2)`` (AFD's L_G).

    Example:
        >>> import torch
        >>> generator_loss(torch.zeros(4)).item()
        1.0
    """
    return (1 - fake_scores).pow(2).mean()


def l1_alignment_loss(features: Tensor, target_features: Tensor) -> Tensor:
    """Direct feature-map alignment, ``mean |f - f_target|`` with the target detached: the L1 baseline of AFD's Table 1.

    Example:
        >>> import torch
        >>> l1_alignment_loss(torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)).item()
        1.0
    """
    return F.l1_loss(features, target_features.detach())


class FeatureDiscriminator(nn.Module):
    """Scores a feature map as coming from the other network (1) or from the discriminator's own network (0).

    Strided conv -> LeakyReLU(0.2) blocks (DCGAN-style, no batch norm so that scoring real and fake batches separately
    does not mix their statistics), a 1x1 conv to one channel, global average over positions and a sigmoid. The AFD
    paper describes its discriminators only as small convolutional networks; the exact layer list was not in the
    sources we could read, so this design is ours.

    Args:
        in_channels: channels of the feature maps it scores.
        hidden_channels: width of the hidden conv layers (default: ``in_channels``).
        num_layers: strided 3x3 conv layers before the scoring 1x1 conv.

    Example:
        >>> import torch
        >>> FeatureDiscriminator(64)(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2])
    """

    def __init__(self, in_channels: int, hidden_channels: int | None = None, num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        hidden = hidden_channels or in_channels
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layers += [
                nn.Conv2d(in_channels if index == 0 else hidden, hidden, 3, stride=2, padding=1),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(hidden, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        """Probability ``[B]`` that each feature map comes from the other network."""
        return self.body(features).mean(dim=(1, 2, 3)).sigmoid()


class FeatureAdapter(nn.Module):
    """Maps one network's feature map into the space shared with its peers (AFD's transfer layer ``T``).

    A 1x1 conv to ``out_channels`` followed by a batch norm without affine parameters (so that peers cannot agree on
    an all-zero map), then average pooling to the common spatial size. Networks whose maps already have the common
    channel count use the identity instead.

    Args:
        in_channels: channels of the network's feature map.
        out_channels: channels of the shared space.

    Example:
        >>> import torch
        >>> FeatureAdapter(32, 64)(torch.randn(2, 32, 16, 16), size=8).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.transform: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.transform = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels, affine=False)
            )

    def forward(self, features: Tensor, size: int) -> Tensor:
        """The transformed map, average-pooled to ``size x size`` when larger."""
        features = self.transform(features)
        if features.shape[-1] != size or features.shape[-2] != size:
            features = F.adaptive_avg_pool2d(features, size)
        return features
