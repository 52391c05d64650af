"""The shared base of every lit-kd method: student, metrics, optimiser, frozen teacher, checkpoint hygiene."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_kd.checkpointing import load_network_weights
from lit_kd.methods.regression import regression_loss, regression_metrics
from lit_kd.models.normalization import declared_normalization, match_input_normalization


def default_optimizer(parameters: Any) -> Optimizer:
    """SGD, lr 0.1, momentum 0.9 (Nesterov), weight decay 5e-4: the usual CIFAR ResNet/WRN recipe."""
    return SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)


def reseed_for_batch(base_seed: int, epoch: int, batch_idx: int, rank: int) -> None:
    """Reseed torch from ``(seed, epoch, batch, rank)``: a run resumed mid-epoch then draws the same random numbers.

    Every lit-kd module calls this in ``on_train_batch_start`` with ``base_seed = torch.initial_seed()`` taken in
    ``on_fit_start`` (:class:`StudentModule` and modules that are not students, such as
    :class:`~lit_kd.methods.ConditionalGAN`).
    """
    seed = ((base_seed * 1_000_003 + epoch) * 1_000_003 + batch_idx) * 4099 + rank
    torch.manual_seed(seed % (2**63))


def broadcast_buffers(module: LightningModule) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) of ``module`` to every rank.

    DDP does this before each forward pass, except under Lightning's manual optimisation, which turns DDP's
    bookkeeping off (``require_backward_grad_sync``) and with it the buffer broadcast: ranks would then drift apart,
    each with the statistics of its own shard. Manual-optimisation modules call this from their batch-start,
    validation-start and train-end hooks (:class:`StudentModule` does). Buffers of layers whose parameters are all
    frozen (a teacher's BatchNorm) cannot drift and are skipped. Does nothing on a single process.
    """
    if module._trainer is None or module.trainer.world_size < 2 or not torch.distributed.is_initialized():
        return
    for layer in module.modules():
        parameters = list(layer.parameters(recurse=False))
        if parameters and not any(parameter.requires_grad for parameter in parameters):
            continue
        for buffer in layer.buffers(recurse=False):
            torch.distributed.broadcast(buffer, src=0)


def stop_on_non_finite_loss(module: LightningModule, loss: Tensor) -> None:
    """Raise ``FloatingPointError`` naming the method, step and batch if ``loss`` is NaN or infinite.

    Called from ``on_before_backward``, which every backward pass goes through (automatic and manual optimisation
    alike), so no optimiser step is taken with the bad loss. Under DDP the ranks agree first (one boolean
    all-reduce), so all of them stop together instead of waiting on each other.
    """
    finite = bool(torch.isfinite(loss.detach()).all())
    if module._trainer is not None:
        finite = module.trainer.strategy.reduce_boolean_decision(finite, all=True)
    if not finite:
        raise FloatingPointError(
            f"{type(module).__name__}: the training loss is not finite (NaN or inf; this rank's value: "
            f"{loss.detach().float().cpu().tolist()}) at global step {module.global_step} (epoch "
            f"{module.current_epoch}, batch {getattr(module, '_batch_idx', '?')}); training stopped before the "
            "weights were updated with it. Lower the learning rate, check the data, or clip gradients."
        )


class StudentModule(LightningModule):
    """Base for every lit-kd method: one network being trained, with metrics per stage and optimiser defaults.

    A method subclasses this (or :class:`DistillationModule`) and implements :meth:`training_losses`; this base
    owns logging (``train/``, ``val/``, ``test/`` prefixes), top-1/top-5 accuracy, the optimiser and the
    learning-rate schedule, the check that the networks' outputs match the data's number of classes, and
    per-batch reseeding so that a run resumed from a checkpoint draws the same random numbers.

    The task comes from the DataModule's ``task`` at setup (see :meth:`resolve_task`): for ``"regression"``
    (targets scaled to ``[0, 1]``, networks with one output) the metrics are MAE and RMSE in the data's units and
    :meth:`task_loss` is MSE. A method declares the tasks it can train in :attr:`supported_tasks` (classification
    only by default; setup refuses others with an error naming the method).

    Args:
        student: the network being trained (any ``nn.Module`` returning logits ``[B, num_classes]``).
        num_classes: number of classes; by default taken from the DataModule's ``num_classes``.
        optimizer: builds the optimiser from the trainable parameters (default: :func:`default_optimizer`).
        lr_scheduler: builds the scheduler from the optimiser, stepped every epoch; by default cosine annealing to
            0 over all training steps (stepped every batch).
    """

    #: Constructor arguments kept out of ``hparams`` (networks and factories): checkpoints then hold only plain
    #: values and load with ``weights_only=True``; pass these again to ``load_from_checkpoint``.
    hparams_ignore: tuple[str, ...] = ("student", "teacher", "optimizer", "lr_scheduler")
    #: Tasks (the DataModule's ``task``) this method can train on; setup refuses others. A method whose losses all
    #: go through :meth:`task_loss` (e.g. :class:`~lit_kd.methods.SupervisedModule`) adds ``"regression"``.
    supported_tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(
        self,
        student: nn.Module,
        num_classes: int | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.hparams_ignore))
        self.student = student
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.task = "classification"  # resolved from the DataModule at setup, with target_scale
        self.target_scale = 1.0
        self.train_metrics: MetricCollection | None = None
        self.val_metrics: MetricCollection | None = None
        self.test_metrics: MetricCollection | None = None
        self.evaluation_means = nn.ModuleDict()  # weighted means of the evaluation losses, made on first use
        self._base_seed = 0

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        """Resolve ``task`` and ``num_classes`` from the DataModule, check the networks, build the metrics."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        self.resolve_task(datamodule)
        data_classes = getattr(datamodule, "num_classes", None)
        if self.num_classes is None:
            if data_classes is None:
                raise ValueError(f"{type(self).__name__}: set num_classes (the DataModule does not expose it)")
            self.num_classes = int(data_classes)
        elif data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"{type(self).__name__}: num_classes={self.num_classes} but {type(datamodule).__name__} has "
                f"{data_classes} classes"
            )
        self.convert_inputs_for_networks(datamodule)
        input_shape = getattr(datamodule, "input_shape", None)
        if input_shape is not None:
            self.check_output_sizes(tuple(input_shape))
        if self.train_metrics is None:
            self.train_metrics = self.configure_metrics("train/")
            self.val_metrics = self.train_metrics.clone(prefix="val/")
            self.test_metrics = self.train_metrics.clone(prefix="test/")

    def resolve_task(self, datamodule: Any) -> None:
        """Take ``task`` (and for regression ``target_scale``) from the DataModule; refuse an unsupported task.

        A DataModule without ``task`` means classification; without a DataModule, ``self.task`` and
        ``self.target_scale`` stay as they are (``"classification"`` and 1 unless set by hand).

        Raises:
            ValueError: this method's :attr:`supported_tasks` do not include the task, or a regression DataModule
                has no ``target_scale``.
        """
        if datamodule is not None:
            self.task = getattr(datamodule, "task", "classification")
            if self.task == "regression":
                target_scale = getattr(datamodule, "target_scale", None)
                if target_scale is None:
                    raise ValueError(
                        f"{type(datamodule).__name__} has task='regression' but no target_scale (the factor that "
                        "turns its [0, 1] targets back into the data's units)"
                    )
                self.target_scale = float(target_scale)
        if self.task not in self.supported_tasks:
            source = "set on the module"
            if datamodule is not None:
                source = f"{type(datamodule).__name__} is a {self.task} dataset"
            hint = "; use lit_kd.methods.SupervisedModule for regression" if self.task == "regression" else ""
            raise ValueError(
                f"{type(self).__name__} supports only {' and '.join(self.supported_tasks)}, not {self.task!r} "
                f"({source}){hint}"
            )

    def convert_inputs_for_networks(self, datamodule: Any) -> None:
        """Feed every network that declares its own input normalisation batches converted from the data's.

        A network with ``input_mean``/``input_std`` (e.g. a :class:`~lit_kd.models.PretrainedNetwork` trained with
        ImageNet statistics) gets a forward pre-hook converting the DataModule's normalisation (``mean``/``std``)
        into its own (:func:`~lit_kd.models.normalization.match_input_normalization`); the outermost declaring
        module of each branch is converted (a teacher, a student, an ensemble member, an online network). Without
        the data's ``mean``/``std`` the batches are assumed to be in the network's normalisation already (a warning
        says so).
        """
        mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
        declaring: list[str] = []

        def visit(prefix: str, module: nn.Module) -> None:
            for name, child in module.named_children():
                path = f"{prefix}{name}"
                if declared_normalization(child) is not None:
                    match_input_normalization(child, mean, std)
                    declaring.append(path)
                else:
                    visit(f"{path}.", child)

        visit("", self)
        if declaring and (mean is None or std is None):
            rank_zero_warn(
                f"{type(self).__name__}: {declaring} declare their input normalisation (input_mean/input_std) but "
                f"{type(datamodule).__name__} has no mean/std: its batches are fed to them unconverted"
            )

    def networks_to_check(self) -> dict[str, nn.Module]:
        """Networks whose output size must equal ``num_classes`` (checked once at setup)."""
        return {"student": self.student}

    @torch.no_grad()
    def check_output_sizes(self, input_shape: tuple[int, ...]) -> None:
        """Run each network of :meth:`networks_to_check` on a dummy batch and compare its output to the data."""
        for name, network in self.networks_to_check().items():
            was_training = network.training
            network.eval()
            try:
                parameter = next(network.parameters(), None)
                device = parameter.device if parameter is not None else torch.device("cpu")
                output = network(torch.zeros(2, *input_shape, device=device))
            finally:
                network.train(was_training)
            logits = output[0] if isinstance(output, tuple) else output
            if logits.shape[-1] != self.num_classes:
                raise ValueError(
                    f"{type(self).__name__}: the {name} ({type(network).__name__}) outputs {logits.shape[-1]} "
                    f"classes but the data has {self.num_classes}; set num_classes of the {name} to "
                    f"{self.num_classes}"
                )

    def configure_metrics(self, prefix: str) -> MetricCollection:
        """Top-1 and top-5 accuracy (micro-averaged: the fraction of correct samples); MAE and RMSE for regression.

        Regression metrics are in the data's units (predictions and targets times ``target_scale``, e.g. years):
        see :func:`~lit_kd.methods.regression.regression_metrics`.
        """
        if self.task == "regression":
            return regression_metrics(prefix, self.target_scale)
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(self.num_classes, top_k=1, average="micro"),
                "acc_top5": MulticlassAccuracy(self.num_classes, top_k=min(5, self.num_classes), average="micro"),
            },
            prefix=prefix,
            compute_groups=False,
        )

    # -------------------------------------------------------------------------------------------- training
    def forward(self, images: Tensor) -> Tensor:
        """Student logits."""
        return self.student(images)

    @abstractmethod
    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The method itself: loss terms for one batch (``"loss"`` is optimised, all are logged) and the logits."""

    def on_fit_start(self) -> None:
        """Remember the run's seed (set by ``seed_everything``) as the base of the per-batch seeds."""
        self._base_seed = torch.initial_seed()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed torch from ``(seed, epoch, batch, rank)`` so that random draws survive a resume unchanged."""
        reseed_for_batch(self._base_seed, self.current_epoch, batch_idx, self.global_rank)
        self._batch_idx = batch_idx
        if not self.automatic_optimization:
            broadcast_buffers(self)

    def on_validation_start(self) -> None:
        """Evaluate every rank with rank 0's buffers (manual optimisation; DDP does it for automatic)."""
        if not self.automatic_optimization:
            broadcast_buffers(self)

    def on_train_end(self) -> None:
        """Leave every rank with rank 0's buffers (manual optimisation; DDP does it for automatic)."""
        if not self.automatic_optimization:
            broadcast_buffers(self)

    def on_train_epoch_end(self) -> None:
        """Step epoch-interval LR schedulers under manual optimisation (Lightning steps them for automatic)."""
        if not self.automatic_optimization:
            self.step_schedulers("epoch")

    def step_schedulers(self, interval: str) -> None:
        """Step the LR schedulers whose interval is ``interval`` (manual optimisation steps them itself)."""
        for config in self.trainer.lr_scheduler_configs:
            counter = self.trainer.global_step if interval == "step" else self.current_epoch + 1
            if config.interval == interval and counter % config.frequency == 0:
                config.scheduler.step()

    def on_before_backward(self, loss: Tensor) -> None:
        """Stop before a NaN or infinite loss reaches the weights (see :func:`stop_on_non_finite_loss`)."""
        stop_on_non_finite_loss(self, loss)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Compute the method's losses, log them and the training metrics, return the loss to optimise."""
        images, targets = batch
        losses, logits = self.training_losses(images, targets)
        self.log_loss_terms(losses, "train", batch_size=len(targets))
        self.update_and_log_metrics("train", logits.detach(), targets)
        return losses["loss"]

    def log_loss_terms(self, losses: dict[str, Tensor], stage: str, batch_size: int) -> None:
        """Log each loss term as ``<stage>/<name>``; ``loss`` also goes to the progress bar.

        Evaluation losses go through a ``MeanMetric`` weighted by the batch size (:meth:`evaluation_mean`), so the
        epoch value is the mean over every sample seen by every DDP process, exactly (evaluation shards are not
        padded, and Lightning's own ``sync_dist`` mean divides by a truncated average batch size).
        """
        for name, value in losses.items():
            key = f"{stage}/{name}"
            if stage == "train":
                self.log(key, value.detach(), prog_bar=name == "loss", batch_size=batch_size)
                continue
            attribute = self.evaluation_mean(key)
            metric = self.get_submodule(attribute)
            metric.update(value.detach(), weight=batch_size)
            self.log(key, metric, prog_bar=name == "loss", on_step=False, on_epoch=True, metric_attribute=attribute)

    def evaluation_mean(self, key: str) -> str:
        """The attribute path of the sample-weighted ``MeanMetric`` of evaluation loss ``key`` (made on first use)."""
        name = key.replace("/", "__").replace(".", "_")
        if name not in self.evaluation_means:
            self.evaluation_means[name] = MeanMetric().to(self.device)
        return f"evaluation_means.{name}"

    def update_and_log_metrics(self, stage: str, logits: Tensor, targets: Tensor) -> None:
        """Update the stage's metric collection and log it (accumulated over the epoch)."""
        metrics: MetricCollection | None = getattr(self, f"{stage}_metrics")
        if metrics is None:
            raise RuntimeError(f"{type(self).__name__}.setup() builds the metrics: it has not run")
        metrics.update(logits, targets)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def task_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The supervised loss of the data's task, used for evaluation and by :class:`SupervisedModule`.

        Cross-entropy for classification; for regression, the mean squared error between the squeezed ``[B, 1]``
        outputs and the targets scaled to ``[0, 1]`` (the loss of the cGAN-KD regression CNNs:
        :func:`~lit_kd.methods.regression.regression_loss`). Override it to change both.
        """
        if self.task == "regression":
            return regression_loss(outputs, targets)
        return F.cross_entropy(outputs, targets)

    def _evaluation_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        images, targets = batch
        logits = self(images)
        self.log_loss_terms({"loss": self.task_loss(logits, targets)}, stage, batch_size=len(targets))
        self.update_and_log_metrics(stage, logits, targets)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Task loss (cross-entropy or MSE) and metrics of the student on a validation batch."""
        self._evaluation_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Task loss (cross-entropy or MSE) and metrics of the student on a test batch."""
        self._evaluation_step(batch, "test")

    # ---------------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Optimise every parameter that requires a gradient (never the frozen teacher's)."""
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.lr_scheduler_factory is not None:
            return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = CosineAnnealingLR(optimizer, T_max=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class DistillationModule(StudentModule):
    """Base for methods that distil a frozen, pretrained teacher into the student.

    The teacher is loaded from ``teacher_checkpoint`` (a lit-kd/Lightning checkpoint or a state dict), has
    ``requires_grad`` off, is kept in eval mode even after Lightning switches the module back to training, is
    never given to the optimiser, and is left out of saved checkpoints unless ``save_teacher=True`` (on resume
    the weights loaded from ``teacher_checkpoint`` are put back).

    Args:
        student: the network being trained.
        teacher: the teacher's architecture (its weights come from ``teacher_checkpoint``).
        teacher_checkpoint: where the teacher's weights are; ``None`` keeps the weights the teacher was built with
            (a :class:`~lit_kd.models.PretrainedNetwork`, or a teacher already trained in Python; a warning unless
            it is pretrained). Read without running code (:func:`~lit_kd.checkpointing.safe_load`).
        save_teacher: also store the teacher's weights in this module's checkpoints.
        trust_checkpoint: load a legacy pickle at ``teacher_checkpoint`` in full (it can run code: only for files
            from a trusted source; ``LIT_KD_TRUST_CHECKPOINTS=1`` does the same). A warning names the file.
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``: see :class:`StudentModule`.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_checkpoint: str | None = None,
        save_teacher: bool = False,
        trust_checkpoint: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, **kwargs)
        if teacher_checkpoint is not None:
            load_network_weights(teacher, teacher_checkpoint, trust=trust_checkpoint, argument="teacher_checkpoint")
        elif getattr(teacher, "weights_name", None) is None:
            rank_zero_warn(
                f"{type(self).__name__}: teacher_checkpoint is None, so the teacher keeps the weights it was built "
                "with; distilling from an untrained teacher teaches nothing useful."
            )
        self.teacher = teacher.requires_grad_(False).eval()
        self.save_teacher = save_teacher

    def networks_to_check(self) -> dict[str, nn.Module]:
        """The student and the teacher must both output ``num_classes`` logits."""
        return {"student": self.student, "teacher": self.teacher}

    def train(self, mode: bool = True) -> DistillationModule:
        """Switch to train/eval mode, keeping the teacher in eval mode (frozen BN statistics, no dropout)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def on_fit_start(self) -> None:
        """The teacher is in eval mode by design: silence Lightning's warning about eval-mode modules."""
        super().on_fit_start()
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")

    @torch.no_grad()
    def teacher_logits(self, images: Tensor) -> Tensor:
        """Teacher logits, computed without building a graph."""
        return self.teacher(images)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the frozen teacher's weights from the checkpoint unless ``save_teacher``."""
        if not self.save_teacher:
            state_dict = checkpoint["state_dict"]
            for key in [key for key in state_dict if key.startswith("teacher.")]:
                del state_dict[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the current teacher weights back where a checkpoint left them out."""
        state_dict = checkpoint["state_dict"]
        for key, value in self.teacher.state_dict().items():
            state_dict.setdefault(f"teacher.{key}", value)
