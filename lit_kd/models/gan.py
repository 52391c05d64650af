"""Conditional GANs for cGAN-KD: an SNGAN-style ResNet generator and a projection discriminator (32x32, 64x64).

One generator and one discriminator class serve both label kinds:

* class labels (``num_classes=K``): a learnt class embedding feeds class-conditional batch norm in the generator
  and the projection term of the discriminator (Miyato & Koyama, 2018, "cGANs with Projection Discriminator";
  BigGAN's shared-embedding form, Brock et al., 2019);
* continuous labels in ``[0, 1]`` (``num_classes=None``): the label goes through :class:`LabelEmbedding`, the
  label-to-embedding MLP of CcGAN's "improved label input" (Ding et al., 2021/2023; ``model_y2h`` in
  ``UTKFace/CcGAN-based_KD/models/ResNet_embed.py`` of UBCDingXin/cGAN-KD), and the embedding enters the same
  conditional batch norm and projection (``UTKFace/models/SNGAN.py`` of the same repository).

Architecture (from cGAN-KD's ``UTKFace/models/SNGAN.py``): a linear map of the noise to a 4x4 map, one upsampling
residual block per doubling of the size (channels halved each time, ``base_channels`` at the end), BN-ReLU-conv-tanh;
the discriminator mirrors it with spectrally normalised residual blocks (average-pool downsampling), one more block
at 4x4, ReLU. Our choices: the discriminator sums its 4x4 features (SNGAN-projection's global sum pooling, which
works at any size) where CcGAN flattens them, and CcGAN's label embedding is learnt with the GAN here instead of
being pre-trained against a regression CNN (that needs a stage of its own). Spectral normalisation is
``torch.nn.utils.spectral_norm`` (one power iteration per training forward, as SNGAN): its parametrisation form
cannot be pickled, which ``ddp_spawn`` needs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

SUPPORTED_SIZES = (32, 64)


def _num_upsamplings(image_size: int) -> int:
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}, got {image_size}")
    return int(math.log2(image_size // 4))


class LabelEmbedding(nn.Module):
    """Maps a continuous label ``y`` in ``[0, 1]`` to an ``embed_dim`` vector: CcGAN's ``model_y2h`` MLP.

    Five linear layers, the first four followed by ``GroupNorm(8)`` and ReLU, the last by ReLU (as the official
    ``model_y2h``). ``embed_dim`` must be a multiple of 8 and at least 32: with groups of one or two features the
    normalised features are 0 or +-1 whatever the label.

    Example:
        >>> LabelEmbedding(32)(torch.tensor([0.0, 0.5])).shape
        torch.Size([2, 32])
    """

    def __init__(self, embed_dim: int = 128) -> None:
        super().__init__()
        if embed_dim % 8 or embed_dim < 32:
            raise ValueError(f"embed_dim must be a multiple of 8 and at least 32 (see LabelEmbedding), got {embed_dim}")
        layers: list[nn.Module] = []
        for index in range(4):
            layers += [nn.Linear(1 if index == 0 else embed_dim, embed_dim), nn.GroupNorm(8, embed_dim), nn.ReLU()]
        self.main = nn.Sequential(*layers, nn.Linear(embed_dim, embed_dim), nn.ReLU())

    def forward(self, labels: Tensor) -> Tensor:
        """Embeddings ``[B, embed_dim]`` of labels ``[B]``."""
        return self.main(labels.float().view(-1, 1) + 1e-8)


def label_encoder(num_classes: int | None, embed_dim: int) -> nn.Module:
    """A class embedding table for ``num_classes`` classes, or :class:`LabelEmbedding` for continuous labels."""
    if num_classes is None:
        return LabelEmbedding(embed_dim)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for class labels (None: continuous labels), got {num_classes}")
    return nn.Embedding(num_classes, embed_dim)


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine parameters, scaled and shifted by linear maps of a label embedding."""

    def __init__(self, channels: int, embed_dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(embed_dim, channels, bias=False)
        self.bias = nn.Linear(embed_dim, channels, bias=False)

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        """``BN(x) * (1 + gain(h)) + bias(h)``, as the official ``ConditionalBatchNorm2d``."""
        gain = self.gain(embedding)[:, :, None, None]
        return self.norm(x) * (1 + gain) + self.bias(embedding)[:, :, None, None]


class GeneratorBlock(nn.Module):
    """Residual block doubling the size: CBN-ReLU-upsample-conv-CBN-ReLU-conv, plus an upsampled 1x1 bypass."""

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.norm1 = ConditionalBatchNorm2d(in_channels, embed_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ConditionalBatchNorm2d(out_channels, embed_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bypass = nn.Conv2d(in_channels, out_channels, 1)
        for conv, gain in ((self.conv1, math.sqrt(2)), (self.conv2, math.sqrt(2)), (self.bypass, 1.0)):
            nn.init.xavier_uniform_(conv.weight, gain)

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        """The block's output at twice the input size."""
        up = nn.functional.interpolate
        out = self.conv1(up(torch.relu(self.norm1(x, embedding)), scale_factor=2))
        out = self.conv2(torch.relu(self.norm2(out, embedding)))
        return out + self.bypass(up(x, scale_factor=2))


class DiscriminatorBlock(nn.Module):
    """Spectrally normalised residual block, optionally halving the size with average pooling.

    ``first=True`` is SNGAN's first block: no ReLU before the first convolution, bypass pooled before its 1x1 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, first: bool = False) -> None:
        super().__init__()
        self.first, self.downsample = first, downsample
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bypass = nn.Conv2d(in_channels, out_channels, 1)
        for conv, gain in ((self.conv1, math.sqrt(2)), (self.conv2, math.sqrt(2)), (self.bypass, 1.0)):
            nn.init.xavier_uniform_(conv.weight, gain)
        self.conv1, self.conv2, self.bypass = (spectral_norm(c) for c in (self.conv1, self.conv2, self.bypass))

    def _pool(self, x: Tensor) -> Tensor:
        return nn.functional.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: Tensor) -> Tensor:
        """The block's output (half the input size if ``downsample``)."""
        out = self.conv2(torch.relu(self.conv1(x if self.first else torch.relu(x))))
        bypass = self.bypass(self._pool(x)) if self.first else self._pool(self.bypass(x))
        return self._pool(out) + bypass


class ConditionalGenerator(nn.Module):
    """SNGAN-style ResNet generator ``G(z, y)`` with conditional batch norm, images in ``[-1, 1]``.

    Args:
        num_classes: number of classes, or ``None`` for a continuous label in ``[0, 1]`` (CcGAN).
        image_size: 32 or 64 (three or four upsampling blocks from 4x4).
        latent_dim: size of ``z``; 128 is BigGAN's ``dim_z`` (cGAN-KD CIFAR), CcGAN's UTKFace runs use 256.
        base_channels: channels of the last block (the first has ``base_channels * 2**blocks``); 64 is cGAN-KD's
            ``gene_ch``/BigGAN's ``G_ch``.
        embed_dim: size of the label embedding; 128 is CcGAN's ``dim_embed``.

    Example:
        >>> generator = ConditionalGenerator(num_classes=10, image_size=32, latent_dim=8, base_channels=4, embed_dim=8)
        >>> generator(torch.randn(2, 8), torch.tensor([0, 3])).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        num_classes: int | None,
        image_size: int = 32,
        latent_dim: int = 128,
        base_channels: int = 64,
        embed_dim: int = 128,
    ) -> None:
        super().__init__()
        blocks = _num_upsamplings(image_size)
        self.num_classes, self.image_size, self.latent_dim = num_classes, image_size, latent_dim
        #: Constructor arguments, stored in GAN checkpoints so that stage 2 can rebuild the generator.
        self.config: dict[str, Any] = dict(
            num_classes=num_classes,
            image_size=image_size,
            latent_dim=latent_dim,
            base_channels=base_channels,
            embed_dim=embed_dim,
        )
        channels = [base_channels * 2 ** (blocks - index) for index in range(blocks + 1)]
        self.embedding = label_encoder(num_classes, embed_dim)
        self.dense = nn.Linear(latent_dim, 4 * 4 * channels[0])
        self.blocks = nn.ModuleList(
            GeneratorBlock(c_in, c_out, embed_dim) for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )
        self.final = nn.Sequential(
            nn.BatchNorm2d(channels[-1]), nn.ReLU(), nn.Conv2d(channels[-1], 3, 3, padding=1), nn.Tanh()
        )
        nn.init.xavier_uniform_(self.dense.weight)
        nn.init.xavier_uniform_(self.final[2].weight)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        """Images ``[B, 3, S, S]`` in ``[-1, 1]`` for noise ``[B, latent_dim]`` and labels ``[B]``."""
        embedding = self.embedding(labels)
        out = self.dense(z).view(len(z), -1, 4, 4)
        for block in self.blocks:
            out = block(out, embedding)
        return self.final(out)


class ProjectionDiscriminator(nn.Module):
    """Spectrally normalised ResNet discriminator with a projection term: ``D(x, y) = w.phi(x) + <phi(x), V e(y)>``.

    Args:
        num_classes: number of classes, or ``None`` for a continuous label in ``[0, 1]`` (CcGAN).
        image_size: 32 or 64.
        base_channels: channels of the first block (doubling at each block); 64 is cGAN-KD's ``disc_ch``.
        embed_dim: size of the label embedding.

    Example:
        >>> discriminator = ProjectionDiscriminator(num_classes=None, image_size=64, base_channels=4, embed_dim=32)
        >>> discriminator(torch.randn(2, 3, 64, 64), torch.tensor([0.2, 0.9])).shape
        torch.Size([2])
    """

    def __init__(
        self, num_classes: int | None, image_size: int = 32, base_channels: int = 64, embed_dim: int = 128
    ) -> None:
        super().__init__()
        downsamplings = _num_upsamplings(image_size)
        self.num_classes, self.image_size = num_classes, image_size
        #: Constructor arguments, stored in GAN checkpoints (stage 2 may score samples with the discriminator).
        self.config: dict[str, Any] = dict(
            num_classes=num_classes, image_size=image_size, base_channels=base_channels, embed_dim=embed_dim
        )
        channels = [3] + [base_channels * 2**index for index in range(downsamplings + 1)]
        blocks = [DiscriminatorBlock(3, channels[1], downsample=True, first=True)]
        blocks += [DiscriminatorBlock(channels[i], channels[i + 1], downsample=True) for i in range(1, downsamplings)]
        blocks.append(DiscriminatorBlock(channels[-2], channels[-1], downsample=False))
        self.blocks = nn.Sequential(*blocks)
        linear, projection = nn.Linear(channels[-1], 1), nn.Linear(embed_dim, channels[-1], bias=False)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.xavier_uniform_(projection.weight)
        self.linear, self.projection = spectral_norm(linear), spectral_norm(projection)
        self.embedding = label_encoder(num_classes, embed_dim)

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        """Scores ``[B]`` (higher: more real) of images ``[B, 3, S, S]`` in ``[-1, 1]`` with labels ``[B]``."""
        features = torch.relu(self.blocks(images)).sum(dim=(2, 3))
        projection = (features * self.projection(self.embedding(labels))).sum(dim=1)
        return self.linear(features).squeeze(1) + projection
