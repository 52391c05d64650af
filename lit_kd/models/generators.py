"""Generators from latent noise to images, for data-free distillation (DFAD).

Both take a latent batch ``[B, latent_dim]`` (or ``[B, latent_dim, 1, 1]``) and return images ``[B, C, H, W]`` in
the *normalised* space the teacher reads (they never see real images, so no de/normalisation is involved).
"""

from __future__ import annotations

from torch import Tensor, nn


class DFADGenerator(nn.Module):
    """The DFAD generator for 32x32 images ("GeneratorA" of the official code).

    Layers, as in ``network/gan.py`` of VainF/Data-Free-Adversarial-Distillation: linear from the latent to
    ``2 * base_channels`` maps of ``image_size / 4`` pixels, BN, nearest x2 upsampling, 3x3 conv
    (``2 * base_channels``) + BN + LeakyReLU(0.2), x2 upsampling, 3x3 conv (``base_channels``) + BN + LeakyReLU(0.2),
    3x3 conv to ``channels``, tanh, and a BatchNorm *without affine parameters* on the output, so that each
    generated batch has per-channel mean 0 and variance 1 (in training mode), like normalised data.
    PyTorch's default initialisation, as in the official code. ``DFAD_cifar.py`` builds it with a latent of 256.

    Args:
        latent_dim: Length of the latent vector (official CIFAR setting: 256).
        base_channels: ``ngf`` of the official code (64).
        image_size: Output height and width, a multiple of 4 (32 for CIFAR).
        channels: Output channels (3).

    Example:
        >>> import torch
        >>> generator = DFADGenerator(latent_dim=16, base_channels=8)
        >>> generator(torch.randn(4, 16)).shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(self, latent_dim: int = 256, base_channels: int = 64, image_size: int = 32, channels: int = 3) -> None:
        super().__init__()
        if min(latent_dim, base_channels, channels) < 1:
            raise ValueError(
                f"latent_dim, base_channels and channels must be positive, got {latent_dim}, {base_channels}, "
                f"{channels}"
            )
        if image_size < 4 or image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.initial_size = image_size // 4
        wide = 2 * base_channels
        self.project = nn.Linear(latent_dim, wide * self.initial_size**2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(wide),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(wide, wide, 3, padding=1),
            nn.BatchNorm2d(wide),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(wide, base_channels, 3, padding=1),
            nn.BatchNorm2d(base_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(base_channels, channels, 3, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, latent: Tensor) -> Tensor:
        """Images ``[B, channels, image_size, image_size]`` for a latent batch ``[B, latent_dim]``."""
        maps = self.project(latent.flatten(1))
        return self.body(maps.view(len(maps), -1, self.initial_size, self.initial_size))


class DCGANGenerator(nn.Module):
    """A DCGAN-style generator for 64x64 and larger images ("GeneratorB" of the official DFAD code).

    From Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs" (ICLR 2016), as in
    ``network/gan.py`` of VainF/Data-Free-Adversarial-Distillation (used there for Caltech-101 at 128x128): linear
    from the latent to ``8 * base_channels`` maps of ``image_size / 16`` pixels, BN, four stride-2 4x4 transposed
    convs (``4c, 2c, c, c`` channels, each + BN + LeakyReLU(``slope``)), a 3x3 conv to ``channels`` and tanh, so
    outputs lie in ``[-1, 1]``; weights ``N(0, 0.02)``, BN weights ``N(1, 0.02)``, biases 0 (official init).

    Args:
        latent_dim: Length of the latent vector (official: 256).
        base_channels: ``ngf`` of the official code (64).
        image_size: Output height and width, a multiple of 16 (64 for Tiny-ImageNet).
        channels: Output channels (3).
        slope: Negative slope of the LeakyReLUs (0.2).

    Example:
        >>> import torch
        >>> generator = DCGANGenerator(latent_dim=16, base_channels=4, image_size=64)
        >>> images = generator(torch.randn(2, 16))
        >>> images.shape, bool(images.abs().max() <= 1)
        (torch.Size([2, 3, 64, 64]), True)
    """

    def __init__(
        self,
        latent_dim: int = 256,
        base_channels: int = 64,
        image_size: int = 64,
        channels: int = 3,
        slope: float = 0.2,
    ) -> None:
        super().__init__()
        if min(latent_dim, base_channels, channels) < 1:
            raise ValueError(
                f"latent_dim, base_channels and channels must be positive, got {latent_dim}, {base_channels}, "
                f"{channels}"
            )
        if image_size < 16 or image_size % 16:
            raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.initial_size = image_size // 16
        widths = [8 * base_channels, 4 * base_channels, 2 * base_channels, base_channels, base_channels]
        self.project = nn.Linear(latent_dim, widths[0] * self.initial_size**2)
        layers: list[nn.Module] = [nn.BatchNorm2d(widths[0])]
        for in_channels, out_channels in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.LeakyReLU(slope, inplace=True),
            ]
        self.body = nn.Sequential(*layers, nn.Conv2d(base_channels, channels, 3, 1, 1), nn.Tanh())
        for module in self.modules():
            if isinstance(module, (nn.ConvTranspose2d, nn.Linear, nn.Conv2d)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, latent: Tensor) -> Tensor:
        """Images ``[B, channels, image_size, image_size]`` in ``[-1, 1]`` for a latent batch ``[B, latent_dim]``."""
        maps = self.project(latent.flatten(1))
        return self.body(maps.view(len(maps), -1, self.initial_size, self.initial_size))
