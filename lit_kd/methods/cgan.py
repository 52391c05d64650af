"""Stage 1 of cGAN-KD: a conditional GAN trained on the labelled set (class labels, or CcGAN continuous labels)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim import Adam

from lit_kd.data.augmentation import random_crop_flip
from lit_kd.losses.gan import (
    Vicinity,
    default_kappa,
    draw_target_labels,
    hinge_discriminator_loss,
    hinge_generator_loss,
    rule_of_thumb_sigma,
    sample_vicinal_batch,
)
from lit_kd.models.gan import ConditionalGenerator, ProjectionDiscriminator
from lit_kd.runtime.manual import in_second_phase, step_on, zero_gradient_term
from lit_kd.runtime.module import RuntimeModule


class ConditionalGAN(RuntimeModule):
    """The conditional GAN of cGAN-KD (Ding et al., 2021), trained with hinge losses on a lit-kd DataModule.

    Classification data (``task="classification"``) trains a class-conditional GAN (``num_classes=K`` networks):
    real images with their labels against generated images with the same labels. Regression data (targets in
    ``[0, 1]``) trains a CcGAN (``num_classes=None`` networks) with the vicinal discriminator loss (SVDL or HVDL,
    :func:`~lit_kd.losses.gan.sample_vicinal_batch`); in both steps the conditioning labels are distinct training
    labels drawn uniformly plus ``N(0, sigma^2)`` noise, and the discriminator's real samples come from the whole
    training set, as in CcGAN (``UTKFace/train_ccgan.py:97-138, 216-220`` of UBCDingXin/cGAN-KD).

    Each ``training_step`` makes exactly one update, chosen from ``global_step``: ``discriminator_steps``
    discriminator updates, then one generator update. Under DDP every trainable parameter is in every backward pass
    (the generator enters the discriminator loss with weight 0, :func:`~lit_kd.runtime.manual.zero_gradient_term`;
    the discriminator is in the generator loss) and the idle side's gradients are dropped before the step, so DDP's
    one all-reduce per step serves without ``find_unused_parameters``; the discriminator step generates without a
    graph. Real images are
    mapped back from the DataModule's normalisation to ``[-1, 1]``; use ``crop_padding: 0`` (cGAN-KD's GANs train
    with horizontal flips only). Random draws are reseeded per batch and the guards and DDP sync run as for every
    method (:class:`~lit_kd.runtime.RuntimeModule`), so a resumed run is exact. Checkpoints store the networks'
    ``config`` so that :mod:`lit_kd.synthesis` rebuilds them from the checkpoint alone.

    Args:
        generator: a :class:`~lit_kd.models.ConditionalGenerator`.
        discriminator: a :class:`~lit_kd.models.ProjectionDiscriminator` for the same labels and image size.
        discriminator_steps: discriminator updates per generator update; 4 as cGAN-KD (BigGAN ``num_D_steps 4`` for
            CIFAR, ``--gan_d_niters 4`` for UTKFace).
        generator_lr: Adam learning rate of the generator; 2e-4 as cGAN-KD's CIFAR BigGAN (its UTKFace CcGAN: 1e-4).
        discriminator_lr: Adam learning rate of the discriminator; 2e-4 (CIFAR BigGAN; UTKFace CcGAN: 1e-4).
        betas: Adam betas of both; ``(0.0, 0.999)`` as BigGAN (CcGAN: ``(0.5, 0.999)``).
        vicinity: CcGAN's ``"soft"`` (SVDL, cGAN-KD's UTKFace setting) or ``"hard"`` (HVDL); continuous labels only.
        kernel_sigma: std of the target-label noise; ``None``: CcGAN's rule of thumb on the training labels.
        kappa: vicinity parameter; ``None``: CcGAN's default from the training labels with ``kappa_multiplier``.
        kappa_multiplier: the ``2`` of cGAN-KD's ``--gan_kappa -2``.
    """

    def __init__(
        self,
        generator: ConditionalGenerator,
        discriminator: ProjectionDiscriminator,
        discriminator_steps: int = 4,
        generator_lr: float = 2e-4,
        discriminator_lr: float = 2e-4,
        betas: tuple[float, float] = (0.0, 0.999),
        vicinity: Vicinity = "soft",
        kernel_sigma: float | None = None,
        kappa: float | None = None,
        kappa_multiplier: float = 2.0,
    ) -> None:
        super().__init__()
        if discriminator_steps < 1:
            raise ValueError(f"discriminator_steps must be >= 1, got {discriminator_steps}")
        if vicinity not in ("hard", "soft"):
            raise ValueError(f"vicinity must be 'hard' or 'soft', got {vicinity!r}")
        if (generator.num_classes, generator.image_size) != (discriminator.num_classes, discriminator.image_size):
            raise ValueError(
                f"generator (num_classes={generator.num_classes}, image_size={generator.image_size}) and "
                f"discriminator (num_classes={discriminator.num_classes}, image_size={discriminator.image_size}) differ"
            )
        self.save_hyperparameters(ignore=["generator", "discriminator"])
        self.generator, self.discriminator = generator, discriminator
        self.discriminator_steps, self.betas, self.vicinity = discriminator_steps, tuple(betas), vicinity
        self.generator_lr, self.discriminator_lr = generator_lr, discriminator_lr
        self.kernel_sigma, self.kappa, self.kappa_multiplier = kernel_sigma, kappa, kappa_multiplier
        self.automatic_optimization = False
        self.data_mean = self.data_std = torch.zeros(1, 3, 1, 1)
        self.label_range: dict[str, float] = {}  # continuous labels: range and distinct count of the training labels
        self.real_pool: tuple[Tensor, Tensor, Tensor] | None = None  # continuous labels: images, labels, distinct
        self.augmentation = (0, False)

    @property
    def continuous(self) -> bool:
        """Whether the labels are continuous (CcGAN) rather than classes."""
        return self.generator.num_classes is None

    def setup(self, stage: str) -> None:
        """Check the networks against the DataModule, take its normalisation and (CcGAN) the vicinity parameters."""
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        missing = [name for name in ("mean", "std", "num_classes", "image_size") if not hasattr(datamodule, name)]
        if missing:
            raise ValueError(f"ConditionalGAN needs a lit-kd DataModule; {type(datamodule).__name__} lacks {missing}")
        task = getattr(datamodule, "task", "classification")
        expected = None if task == "regression" else datamodule.num_classes
        if self.generator.num_classes != expected or self.generator.image_size != datamodule.image_size:
            raise ValueError(
                f"ConditionalGAN: {type(datamodule).__name__} is {task} at {datamodule.image_size}x"
                f"{datamodule.image_size}: set the networks' num_classes to {expected} and image_size to "
                f"{datamodule.image_size} (got {self.generator.num_classes}, {self.generator.image_size})"
            )
        self.data_mean = torch.tensor(datamodule.mean).view(1, 3, 1, 1)
        self.data_std = torch.tensor(datamodule.std).view(1, 3, 1, 1)
        train_set = getattr(datamodule, "train_set", None)
        if self.continuous and train_set is not None:
            targets = train_set.targets.float()
            self.real_pool = (train_set.images, targets, torch.unique(targets))  # CcGAN draws from the whole set
            self.augmentation = (getattr(datamodule, "crop_padding", 0), getattr(datamodule, "horizontal_flip", False))
            self.label_range = {
                "label_min": targets.min().item(),
                "label_max": targets.max().item(),
                "num_distinct_labels": len(targets.unique()),
            }
            if self.kernel_sigma is None:
                self.kernel_sigma = rule_of_thumb_sigma(train_set.targets)
            if self.kappa is None:
                self.kappa = default_kappa(train_set.targets, self.vicinity, self.kappa_multiplier)

    def configure_optimizers(self) -> list[Adam]:
        """Adam for the discriminator, then Adam for the generator."""
        return [
            Adam(self.discriminator.parameters(), lr=self.discriminator_lr, betas=self.betas),
            Adam(self.generator.parameters(), lr=self.generator_lr, betas=self.betas),
        ]

    def is_generator_step(self, step: int) -> bool:
        """Whether global step ``step`` updates the generator (the last of every ``discriminator_steps + 1``)."""
        return in_second_phase(step, self.discriminator_steps)

    def real_images(self, index: Tensor, device: torch.device) -> Tensor:
        """Training images ``index`` of the whole training set in ``[-1, 1]``, augmented as the DataModule does."""
        images = self.real_pool[0][index.cpu()].to(device)
        crop_padding, horizontal_flip = self.augmentation
        images = random_crop_flip(images, crop_padding, horizontal_flip)  # torch's generator, reseeded per batch
        return images.float() / 127.5 - 1

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """One discriminator or one generator update, by the schedule.

        Class labels: the batch's real images with their labels against generated images with the same labels.
        Continuous labels (CcGAN): conditioning labels are drawn uniformly from the distinct training labels plus noise
        (:func:`~lit_kd.losses.gan.draw_target_labels`), and the discriminator's real samples come from the whole
        training set in each target's vicinity (:func:`~lit_kd.losses.gan.sample_vicinal_batch`), as CcGAN does; the
        loader's batch then only sets the batch size.
        """
        images, labels = batch
        noise = torch.randn(len(labels), self.generator.latent_dim, device=images.device)
        discriminator_optimizer, generator_optimizer = self.optimizers()
        if self.continuous and self.real_pool is None:
            raise RuntimeError("ConditionalGAN: setup() gathers the training labels of a CcGAN; it has not run")
        if self.is_generator_step(self.global_step):
            if self.continuous:
                _, targets = draw_target_labels(self.real_pool[2].to(labels.device), len(labels), self.kernel_sigma)
            else:
                targets = labels
            loss = hinge_generator_loss(self.discriminator(self.generator(noise, targets), targets))
            optimizer, idle, name = generator_optimizer, self.discriminator, "g_loss"
        else:
            if self.continuous:
                pool_images, pool_labels, distinct = self.real_pool
                plan = sample_vicinal_batch(
                    pool_labels.to(labels.device),
                    distinct.to(labels.device),
                    len(labels),
                    self.kernel_sigma,
                    self.vicinity,
                    self.kappa,
                )
                real, targets, fake_labels = (
                    self.real_images(plan.real_index, images.device),
                    plan.targets,
                    plan.fake_labels,
                )
                weights = (plan.real_weights, plan.fake_weights)
            else:
                real = (images * self.data_std.to(images) + self.data_mean.to(images)) * 2 - 1
                targets, fake_labels, weights = labels, labels, (None, None)
            with torch.no_grad():
                fake = self.generator(noise, fake_labels)
            scores = self.discriminator(torch.cat([real, fake]), torch.cat([targets, targets]))
            real_scores, fake_scores = scores.split(len(labels))
            loss = hinge_discriminator_loss(real_scores, fake_scores, *weights)
            if self.trainer.world_size > 1:  # DDP: the generator joins the backward pass with weight 0
                loss = loss + zero_gradient_term(self.generator)
            optimizer, idle, name = discriminator_optimizer, self.generator, "d_loss"
            self.log_dict({"train/real_score": real_scores.mean(), "train/fake_score": fake_scores.mean()})
        discriminator_optimizer.zero_grad()
        generator_optimizer.zero_grad()
        step_on(self, optimizer, int(optimizer is generator_optimizer), loss, idle=[idle])  # 16-mixed: a scaler each
        self.log(f"train/{name}", loss.detach(), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store how to rebuild the networks and the vicinity parameters, for stage 2; and the gradient scalers."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["conditional_gan"] = {
            name: {"class_path": f"{type(net).__module__}.{type(net).__qualname__}", "init_args": dict(net.config)}
            for name, net in (("generator", self.generator), ("discriminator", self.discriminator))
        } | {"kernel_sigma": self.kernel_sigma, "kappa": self.kappa, "vicinity": self.vicinity, **self.label_range}
