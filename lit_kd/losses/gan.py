"""GAN losses for cGAN-KD: hinge losses and the vicinal losses of CcGAN (HVDL, SVDL) for continuous labels.

Sources: the hinge loss of Lim & Ye (2017) as used by SNGAN/BigGAN and cGAN-KD (``gan_loss_type="hinge"``); the
vicinal weights, kernel width and vicinity radius of CcGAN (Ding et al., ICLR 2021) as implemented in
``UTKFace/train_ccgan.py`` and ``UTKFace/generate_synthetic_data.py`` of UBCDingXin/cGAN-KD.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

Vicinity = Literal["hard", "soft"]


def hinge_discriminator_loss(
    real_scores: Tensor, fake_scores: Tensor, real_weights: Tensor | None = None, fake_weights: Tensor | None = None
) -> Tensor:
    """``mean(w_real * relu(1 - D(x))) + mean(w_fake * relu(1 + D(G(z))))``; weights 1 unless given (SVDL).

    Example:
        >>> hinge_discriminator_loss(torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0]))  # (0 + 0.5)/2 + (0 + 1)/2
        tensor(0.7500)
        >>> one, half, quarter = torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.25])
        >>> hinge_discriminator_loss(one - 1, one, half, quarter)  # 0.5 * relu(1 - 0) + 0.25 * relu(1 + 1)
        tensor(1.)
    """
    real_terms = torch.relu(1 - real_scores)
    fake_terms = torch.relu(1 + fake_scores)
    if real_weights is not None:
        real_terms = real_weights * real_terms
    if fake_weights is not None:
        fake_terms = fake_weights * fake_terms
    return real_terms.mean() + fake_terms.mean()


def hinge_generator_loss(fake_scores: Tensor) -> Tensor:
    """``-mean(D(G(z)))``, the generator's hinge loss.

    Example:
        >>> hinge_generator_loss(torch.tensor([1.0, -3.0]))
        tensor(1.)
    """
    return -fake_scores.mean()


def vicinal_weights(labels: Tensor, targets: Tensor, vicinity: Vicinity, kappa: float) -> Tensor:
    """Weight of label ``y`` for target ``t``: HVDL ``1{|y - t| <= kappa}``, SVDL ``exp(-kappa (y - t)^2)``.

    Example:
        >>> labels, targets = torch.tensor([0.1, 0.5]), torch.tensor([0.2, 0.2])
        >>> vicinal_weights(labels, targets, "hard", kappa=0.15)
        tensor([1., 0.])
        >>> vicinal_weights(labels, targets, "soft", kappa=100.0)  # exp(-100 * 0.01), exp(-100 * 0.09)
        tensor([3.6788e-01, 1.2341e-04])
    """
    if vicinity == "hard":
        return ((labels - targets).abs() <= kappa).float()
    if vicinity == "soft":
        return torch.exp(-kappa * (labels - targets) ** 2)
    raise ValueError(f"vicinity must be 'hard' or 'soft', got {vicinity!r}")


def vicinity_radius(vicinity: Vicinity, kappa: float, nonzero_weight_threshold: float = 1e-3) -> float:
    """Largest ``|y - t|`` counted in the vicinity: ``kappa`` (HVDL), or where the SVDL weight drops to the threshold.

    ``1e-3`` is CcGAN's ``nonzero_soft_weight_threshold``.

    Example:
        >>> round(vicinity_radius("soft", kappa=100.0, nonzero_weight_threshold=math.exp(-1)), 6)  # sqrt(1 / 100)
        0.1
    """
    if vicinity == "hard":
        return kappa
    return math.sqrt(-math.log(nonzero_weight_threshold) / kappa)


def rule_of_thumb_sigma(labels: Tensor) -> float:
    """CcGAN's kernel width for the label noise: ``1.06 * std(labels) * N^(-1/5)`` (Silverman's rule).

    Example:
        >>> round(rule_of_thumb_sigma(torch.tensor([0.0, 1.0] * 16)), 6)  # 1.06 * 0.5 * 32 ** -0.2
        0.265
    """
    return 1.06 * labels.float().std(unbiased=False).item() * len(labels) ** (-1 / 5)


def default_kappa(labels: Tensor, vicinity: Vicinity, multiplier: float = 2.0) -> float:
    """CcGAN's ``kappa``: ``multiplier`` times the largest gap between sorted distinct labels; SVDL uses ``1/that^2``.

    ``multiplier = 2`` is cGAN-KD's UTKFace setting (``--gan_kappa -2``).

    Example:
        >>> default_kappa(torch.tensor([0.1, 0.2, 0.4, 0.2]), "hard")  # gaps 0.1 and 0.2: 2 * 0.2
        0.4000000059604645
        >>> round(default_kappa(torch.tensor([0.1, 0.2, 0.4]), "soft"), 4)  # 1 / 0.4^2
        6.25
    """
    distinct = torch.unique(labels.float())
    if len(distinct) < 2:
        raise ValueError("default_kappa needs at least two distinct labels")
    base = multiplier * (distinct[1:] - distinct[:-1]).max().item()
    return base if vicinity == "hard" else 1.0 / base**2


class VicinalBatch(NamedTuple):
    """One CcGAN discriminator batch: targets, real samples (training-set indices), fake labels, weights."""

    targets: Tensor
    real_index: Tensor
    fake_labels: Tensor
    real_weights: Tensor
    fake_weights: Tensor


def draw_target_labels(distinct_labels: Tensor, count: int, sigma: float) -> tuple[Tensor, Tensor]:
    """CcGAN's conditioning labels: ``count`` distinct training labels drawn uniformly, plus ``N(0, sigma^2)`` noise.

    Returns ``(drawn labels, noisy targets)``; the draw is with replacement.
    ``np.random.choice(unique_train_labels, size, replace=True)`` then ``+ np.random.normal(0, kernel_sigma, size)``
    (UBCDingXin/cGAN-KD ``UTKFace/train_ccgan.py:99-103`` for the discriminator step, ``:216-220`` for the generator
    step): every distinct label is equally likely however often it occurs, which is how CcGAN treats rare ages evenly.
    Random draws use torch's global generator.

    Example:
        >>> labels, targets = draw_target_labels(torch.tensor([0.25, 0.5]), count=4, sigma=0.0)
        >>> torch.equal(labels, targets) and set(labels.tolist()) <= {0.25, 0.5}
        True
    """
    drawn = distinct_labels[torch.randint(len(distinct_labels), (count,), device=distinct_labels.device)]
    return drawn, drawn + sigma * torch.randn_like(drawn)


def sample_vicinal_batch(
    train_labels: Tensor,
    distinct_labels: Tensor,
    count: int,
    sigma: float,
    vicinity: Vicinity,
    kappa: float,
    nonzero_weight_threshold: float = 1e-3,
    max_redraws: int = 1000,
) -> VicinalBatch:
    """Draw one CcGAN discriminator batch of ``count`` targets, as ``UTKFace/train_ccgan.py:97-182`` does.

    Each target is a distinct training label drawn uniformly plus ``N(0, sigma^2)`` noise (:func:`draw_target_labels`);
    while no training label lies within the vicinity radius, its noise is redrawn (the label is kept,
    ``train_ccgan.py:116-131``). Its real sample is drawn uniformly from the training samples in its vicinity (the
    whole training set, ``:116-138``: ``real_index`` indexes ``train_labels``); its fake label uniformly from
    ``[t - radius, t + radius]`` clipped to ``[0, 1]`` (``:145-151``). Weights are 1 (HVDL) or the SVDL kernel
    (``:181-182``). Random draws use torch's global generator.

    Raises:
        RuntimeError: some target found no training label in its vicinity after ``max_redraws`` redraws (``kappa``
            is far too small for ``sigma``).
    """
    radius = vicinity_radius(vicinity, kappa, nonzero_weight_threshold)
    drawn, targets = draw_target_labels(distinct_labels, count, sigma)
    for _ in range(max_redraws):
        in_vicinity = (train_labels[None, :] - targets[:, None]).abs() <= radius
        empty = ~in_vicinity.any(dim=1)
        if not empty.any():
            break
        targets[empty] = drawn[empty] + sigma * torch.randn_like(drawn[empty])
    else:
        raise RuntimeError(
            f"sample_vicinal_batch: no real label within {radius:.4g} of some target after {max_redraws} redraws "
            f"(sigma={sigma:.4g}, kappa={kappa:.4g}); increase kappa or decrease sigma"
        )
    real_index = torch.multinomial(in_vicinity.float(), 1).squeeze(1)
    low, high = (targets - radius).clamp(min=0.0), (targets + radius).clamp(max=1.0)
    fake_labels = low + (high - low) * torch.rand_like(targets)
    if vicinity == "hard":
        ones = torch.ones_like(targets)
        return VicinalBatch(targets, real_index, fake_labels, ones, ones)
    real_weights = vicinal_weights(train_labels[real_index], targets, vicinity, kappa)
    return VicinalBatch(
        targets, real_index, fake_labels, real_weights, vicinal_weights(fake_labels, targets, vicinity, kappa)
    )
