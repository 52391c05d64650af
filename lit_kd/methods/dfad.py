"""DFAD: data-free adversarial distillation; a generator poses hard samples, the student learns the teacher on them."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.func import functional_call
from torch.optim import SGD, Adam, Optimizer
from torch.optim.lr_scheduler import LRScheduler, MultiStepLR

from lit_kd.callbacks.generator_schedule import GeneratorUpdateSchedule
from lit_kd.losses.dfad import logit_discrepancy
from lit_kd.methods.base import DistillationModule
from lit_kd.models.probe import probe
from lit_kd.runtime.manual import step_on, zero_gradient_term
from lit_kd.runtime.optimization import override_learning_rate


def dfad_student_optimizer(parameters: Any) -> Optimizer:
    """SGD, lr 0.1, momentum 0.9, weight decay 5e-4, no Nesterov: the student optimiser of ``DFAD_cifar.py``."""
    return SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)


def dfad_generator_optimizer(parameters: Any) -> Optimizer:
    """Adam, lr 1e-3, PyTorch's default betas: the generator optimiser of ``DFAD_cifar.py``."""
    return Adam(parameters, lr=1e-3)


def dfad_lr_schedule(optimizer: Optimizer) -> LRScheduler:
    """Divide the learning rate by 10 after 99 and 199 epochs, as ``--scheduler`` of ``DFAD_cifar.py`` does.

    The official code builds ``MultiStepLR(optimizer, [100, 200], 0.1)`` (``DFAD_cifar.py:153-155``) and calls
    ``scheduler.step()`` at the *start* of each epoch (``:161-167``), so its 1-based epochs 1-99 run at the initial
    rate and epoch 100 already at a tenth. Lightning steps epoch schedulers at the end of each epoch, so the same
    drops need milestones ``[99, 199]`` here.
    """
    return MultiStepLR(optimizer, milestones=[99, 199], gamma=0.1)


class DataFreeAdversarialDistillation(DistillationModule):
    """DFAD of Fang, Song, Shen, Wang, Chen & Song, "Data-Free Adversarial Distillation" (arXiv:1912.11006, 2019).

    No real training image is used: a generator maps latent noise (:class:`~lit_kd.data.DataFreeDataModule`) to
    images, the student minimises the mean absolute error between its logits and the frozen teacher's on them, and
    the generator maximises it (hard samples). Real data only measures the student (validation/test). Defaults are
    those of ``DFAD_cifar.py`` (VainF/Data-Free-Adversarial-Distillation): student SGD 0.1/0.9/5e-4, generator Adam
    1e-3, both /10 from (1-based) epochs 100 and 200 on (its README's ``--scheduler``, :func:`dfad_lr_schedule`;
    ``None`` keeps a rate constant), 5 student
    steps then 1 generator step (:class:`~lit_kd.callbacks.GeneratorUpdateSchedule`, added when the trainer has
    none); networks stay in training mode in both steps, as in the official loop.

    Each ``training_step`` is *one* update, of the student or the generator as the schedule says for the global step
    (a data-free epoch is ``iterations x (student_steps + generator_steps)`` batches). A generator step back-propagates
    ``-L1`` through the teacher (eval mode, frozen: its input gets gradients, its parameters none) and the student
    (detached parameters). Every trainable parameter is in every backward pass (the idle network through
    :func:`~lit_kd.runtime.manual.zero_gradient_term`), so DDP needs no ``find_unused_parameters``; the idle
    network's zero gradients are dropped and only the active optimiser steps, through Lightning (AMP-correct).
    Manual optimisation: Lightning refuses trainer-level gradient clipping and accumulation; the base steps the LR
    schedulers once per epoch.
    Logs ``train/student_l1`` and ``train/generator_l1`` (the discrepancy before each update).

    Args:
        student: the network being trained.
        teacher: the teacher's architecture (weights from ``teacher_checkpoint``).
        generator: maps ``[B, latent_dim]`` noise to images of the data's shape (e.g.
            :class:`~lit_kd.models.DFADGenerator` for 32x32, :class:`~lit_kd.models.DCGANGenerator` for 64x64).
        optimizer: builds the student's optimiser (default :func:`dfad_student_optimizer`).
        lr_scheduler: builds the student's per-epoch scheduler (default :func:`dfad_lr_schedule`; ``None``: constant).
        generator_optimizer: builds the generator's optimiser (default :func:`dfad_generator_optimizer`).
        generator_lr_scheduler: the generator's per-epoch scheduler (default :func:`dfad_lr_schedule`).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``: see :class:`DistillationModule`.
    """

    hparams_ignore = (*DistillationModule.hparams_ignore, "generator", "generator_optimizer", "generator_lr_scheduler")

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        generator: nn.Module,
        optimizer: OptimizerCallable = dfad_student_optimizer,
        lr_scheduler: LRSchedulerCallable | None = dfad_lr_schedule,
        generator_optimizer: OptimizerCallable = dfad_generator_optimizer,
        generator_lr_scheduler: LRSchedulerCallable | None = dfad_lr_schedule,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, optimizer=optimizer, lr_scheduler=lr_scheduler, **kwargs)
        self.generator = generator
        self.generator_optimizer_factory = generator_optimizer
        self.generator_lr_scheduler_factory = generator_lr_scheduler
        self.generator_schedule: GeneratorUpdateSchedule | None = None  # attached by the callback at setup
        self.student_lr: float | None = None  # set by the schedule to override the optimisers' learning rates
        self.generator_lr: float | None = None
        self.automatic_optimization = False

    def configure_callbacks(self) -> list[Callback]:
        """When fitting, add a :class:`GeneratorUpdateSchedule` with the official defaults if the trainer has none."""
        if self.trainer.state.fn != "fit" or any(
            isinstance(c, GeneratorUpdateSchedule) for c in self.trainer.callbacks
        ):
            return []
        rank_zero_info(f"{type(self).__name__}: adding GeneratorUpdateSchedule() with the official DFAD defaults")
        return [GeneratorUpdateSchedule()]

    def setup(self, stage: str) -> None:
        """Check the networks and that the data is latent noise the generator takes, making images the teacher reads."""
        super().setup(stage)
        if stage != "fit":
            return
        GeneratorUpdateSchedule.find(self.trainer)  # exactly one, attached to this module by its own setup
        datamodule = self.trainer.datamodule
        latent_dim = getattr(datamodule, "latent_dim", None)
        if latent_dim is None:
            raise ValueError(
                f"{type(self).__name__} trains on latent noise, not images: fit it with lit_kd.data.DataFreeDataModule "
                f"(got {type(datamodule).__name__})"
            )
        try:
            shape = tuple(probe(self.generator, (latent_dim,)).shape[1:])
        except RuntimeError as error:
            raise ValueError(f"the generator does not take the data's latent_dim={latent_dim}: {error}") from error
        if shape != tuple(datamodule.input_shape):
            raise ValueError(f"the generator makes images of shape {shape}, the data's are {datamodule.input_shape}")

    # -------------------------------------------------------------------------------------------- training
    def training_losses(self, images: Tensor, targets: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
        """The student's side of DFAD on any batch of images: L1 between its logits and the teacher's (no labels)."""
        student_logits = self.student(images)
        discrepancy = logit_discrepancy(student_logits, self.teacher_logits(images))
        return {"loss": discrepancy, "discrepancy": discrepancy}, student_logits

    def adversarial_losses(self, latent: Tensor, generator_step: bool) -> dict[str, Tensor]:
        """``loss`` to back-propagate and the ``discrepancy`` for a student step or a generator step on ``latent``."""
        if not generator_step:
            with torch.no_grad():
                images = self.generator(latent)
            losses, _ = self.training_losses(images)
            return {"loss": losses["loss"] + zero_gradient_term(self.generator), "discrepancy": losses["discrepancy"]}
        images = self.generator(latent)
        frozen = {name: parameter.detach() for name, parameter in self.student.named_parameters()}
        discrepancy = logit_discrepancy(functional_call(self.student, frozen, (images,)), self.frozen_teacher(images))
        return {"loss": -discrepancy + zero_gradient_term(self.student), "discrepancy": discrepancy}

    def training_step(self, latent: Tensor, batch_idx: int) -> None:
        """One update: of the student or of the generator, as the :class:`GeneratorUpdateSchedule` says."""
        if self.generator_schedule is None:
            raise RuntimeError(
                f"{type(self).__name__} needs a GeneratorUpdateSchedule: fit it with a Trainer (it adds one)"
            )
        generator_step = self.generator_schedule.is_generator_step(self.global_step)
        losses = self.adversarial_losses(latent, generator_step)
        student_optimizer, generator_optimizer = self.optimizers()
        optimizer, idle = (generator_optimizer, self.student) if generator_step else (student_optimizer, self.generator)
        step_on(self, optimizer, int(generator_step), losses["loss"], idle=[idle])
        name = "train/generator_l1" if generator_step else "train/student_l1"
        self.log(name, losses["discrepancy"].detach(), prog_bar=True, batch_size=len(latent))

    # ---------------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> OptimizerLRScheduler:
        """The student's optimiser, then the generator's, each with its per-epoch scheduler (if any)."""
        configs = []
        for network, make_optimizer, make_scheduler, lr in (
            (self.student, self.optimizer_factory, self.lr_scheduler_factory, self.student_lr),
            (self.generator, self.generator_optimizer_factory, self.generator_lr_scheduler_factory, self.generator_lr),
        ):
            parameters = [p for p in network.parameters() if p.requires_grad]
            is_student = network is self.student
            optimizer = self.build_optimizer(make_optimizer, parameters) if is_student else make_optimizer(parameters)
            override_learning_rate(optimizer, lr)  # the schedule's rate, before the scheduler records the rates
            config: dict[str, Any] = {"optimizer": optimizer}
            if make_scheduler is not None:
                config["lr_scheduler"] = {"scheduler": make_scheduler(optimizer), "interval": "epoch"}
            configs.append(config)
        return configs
