"""The shared base of every lit-kd method: student, metrics, optimiser, frozen teacher, checkpoint hygiene."""

from __future__ import annotations

import contextlib
import warnings
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import LearningRateFinder
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils._pytree import tree_map
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_kd.checkpointing import check_finite_weights, load_network_weights, refuse_trust_setting
from lit_kd.methods.regression import regression_loss, regression_metrics, regression_predictions
from lit_kd.models.inference import (
    CHANNELS_LAST_MIN_CPU_CHANNELS,
    channels_last_cpu_hazards,
    inference_copy,
    use_channels_last,
)
from lit_kd.models.normalization import declaring_submodules, match_input_normalization


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


SCALERS_KEY = "lit_kd_gradient_scalers"


@contextlib.contextmanager
def optimizer_scaler(module: LightningModule, index: int) -> Iterator[None]:
    """Inside, the backward pass and the step of optimiser ``index`` use that optimiser's own ``GradScaler``.

    Under ``16-mixed`` precision Lightning keeps one ``GradScaler``; a manual-optimisation module that steps several
    optimisers on losses of different sizes (a generator and a discriminator, a student and a generator) is better
    served by one scaler each, so that an overflow in one does not shrink the scale of the others. Optimiser 0 uses
    Lightning's scaler (saved with the precision plugin's state); the others get their own, made like it, saved in the
    checkpoint under :data:`SCALERS_KEY` (:func:`save_scalers`). Without a scaler (32-bit, bf16) this does nothing.
    """
    plugin = module.trainer.precision_plugin if module._trainer is not None else None
    main = getattr(plugin, "scaler", None)
    if main is None or index == 0:
        yield
        return
    scalers = module.__dict__.setdefault("_scalers", {})
    if index not in scalers:
        scalers[index] = torch.amp.GradScaler(
            device=main._device,
            init_scale=main._init_scale,
            growth_factor=main._growth_factor,
            backoff_factor=main._backoff_factor,
            growth_interval=main._growth_interval,
        )
        pending = module.__dict__.get("_pending_scaler_states", {})
        if index in pending:
            scalers[index].load_state_dict(pending.pop(index))
    plugin.scaler = scalers[index]
    try:
        yield
    finally:
        plugin.scaler = main


def save_scalers(module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Store the per-optimiser scalers of :func:`optimizer_scaler` in ``checkpoint``."""
    scalers = module.__dict__.get("_scalers")
    if scalers:
        checkpoint[SCALERS_KEY] = {index: scaler.state_dict() for index, scaler in scalers.items()}


def load_scalers(module: LightningModule, checkpoint: dict[str, Any]) -> None:
    """Restore the scalers saved by :func:`save_scalers` (applied when each is first used)."""
    module.__dict__["_pending_scaler_states"] = dict(checkpoint.get(SCALERS_KEY, {}))
    module.__dict__["_scalers"] = {}


def check_learning_rates(optimizers: list[Optimizer], owner: str) -> None:
    """Refuse a negative or non-finite learning rate in any parameter group, before the first update.

    Raises:
        ValueError: naming ``owner``, the optimiser (index and class), the group and the rate.
    """
    for index, optimizer in enumerate(optimizers):
        for group_index, group in enumerate(optimizer.param_groups):
            rate = group.get("lr")
            if isinstance(rate, Tensor):
                rate = float(rate)
            if isinstance(rate, float | int) and not (rate >= 0 and rate < float("inf")):
                raise ValueError(
                    f"{owner}: optimiser {index} ({type(optimizer).__name__}), parameter group {group_index} has "
                    f"learning rate {rate}: it must be a finite number >= 0"
                )


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
        channels_last: keep the networks' weights and input batches in channels-last memory format: faster
            convolutions (on by default: +27% images/s for a KD step on this project's 2-core CPU,
            ``benchmarks/results/speed_options.md``; GPUs with tensor cores gain too). Outputs and losses are equal to
            float tolerance; checkpoints hold the same tensors (they load into a network in either format).
        compile_student: compile the trained networks with ``torch.compile`` (``nn.Module.compile``: the module tree,
            its state dict and its hooks stay as they are). Off by default: see the README's performance section.
        learning_rate: overrides the learning rate the optimiser factory gives (every parameter group at the
            factory's default rate; groups with a rate of their own keep it). ``None``: the factory's. This is the
            field ``Tuner(trainer).lr_find`` reads and sets (automatic-optimisation methods; the others refuse it).
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
        channels_last: bool = True,
        compile_student: bool = False,
        learning_rate: float | None = None,
    ) -> None:
        super().__init__()
        if learning_rate is not None and not learning_rate > 0:
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
        self.save_hyperparameters(ignore=list(self.hparams_ignore))
        self.learning_rate = learning_rate
        self.channels_last = channels_last
        self.compile_student = compile_student
        self._compiled = False
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
        self.refuse_lr_find()
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
        self.apply_speed_options()
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
        declaring = list(declaring_submodules(self))
        for path in declaring:
            match_input_normalization(self.get_submodule(path), mean, std)
        if declaring and (mean is None or std is None):
            rank_zero_warn(
                f"{type(self).__name__}: {declaring} declare their input normalisation (input_mean/input_std) but "
                f"{type(datamodule).__name__} has no mean/std: its batches are fed to them unconverted"
            )

    def networks_to_check(self) -> dict[str, nn.Module]:
        """Networks whose output size must equal ``num_classes`` (checked once at setup)."""
        return {"student": self.student}

    def trained_networks(self) -> list[nn.Module]:
        """The networks being trained (the student; every network of an online method)."""
        return [network for name, network in self.networks_to_check().items() if name != "teacher"]

    def on_cpu(self) -> bool:
        """Whether this module runs on a CPU (its trainer's device once attached, else where its weights are)."""
        device = self._trainer.strategy.root_device if self._trainer is not None else self.device
        return device.type == "cpu"

    def apply_speed_options(self) -> None:
        """Apply ``channels_last`` (weights and network inputs) and ``compile_student`` (once)."""
        hazards = channels_last_cpu_hazards(self) if self.channels_last and self.on_cpu() else []
        if hazards:
            rank_zero_warn(
                f"channels_last is off for this CPU run: the weight gradient of a strided 1x1 convolution with "
                f"fewer than {CHANNELS_LAST_MIN_CPU_CHANNELS} input channels never returns in that format on a CPU "
                f"(a oneDNN fault), and this model has {len(hazards)}: {', '.join(hazards[:3])}"
            )
        elif self.channels_last:
            self.to(memory_format=torch.channels_last)
            for network in self.networks_to_check().values():
                use_channels_last(network)
        if self.compile_student and not self._compiled:
            for network in self.trained_networks():
                network.compile()
            self._compiled = True

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
        """Refuse negative or NaN learning rates; remember the run's seed as the base of the per-batch seeds."""
        check_learning_rates(self.trainer.optimizers, type(self).__name__)
        self._base_seed = torch.initial_seed()

    def refuse_lr_find(self) -> None:
        """Refuse ``Tuner.lr_find`` under manual optimisation, with a message saying why and what to do instead.

        Its search reads the loss each ``training_step`` returns and drives one optimiser, while these methods step
        several optimisers themselves (or one in several steps) and return nothing.
        """
        if self.automatic_optimization or self._trainer is None:
            return
        if any(isinstance(callback, LearningRateFinder) for callback in self.trainer.callbacks):
            raise RuntimeError(
                f"{type(self).__name__} optimises with manual optimisation (several optimisers, several steps per "
                "batch), which Tuner.lr_find cannot search: set the learning rates in its optimiser arguments instead"
            )

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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the per-optimiser gradient scalers of manual optimisation under 16-mixed (:func:`optimizer_scaler`)."""
        save_scalers(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the per-optimiser gradient scalers."""
        load_scalers(self, checkpoint)

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

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """The student's predictions for a batch ``(images, indices)`` of a DataModule's ``predict_dataloader``.

        Classification: the predicted class, its probability and every class probability; regression: the value in
        the data's units (output times ``target_scale``). :class:`~lit_kd.callbacks.PredictionWriter` writes them.
        """
        images, index = batch
        outputs = self(images)
        if self.task == "regression":
            return {"index": index, "value": regression_predictions(outputs).float() * self.target_scale}
        probabilities = outputs.float().softmax(dim=-1)
        probability, prediction = probabilities.max(dim=-1)
        return {"index": index, "prediction": prediction, "probability": probability, "probabilities": probabilities}

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
    def build_optimizer(self, factory: OptimizerCallable, parameters: Any) -> Optimizer:
        """``factory(parameters)`` with :attr:`learning_rate` (if set) on the groups at the factory's default rate."""
        optimizer = factory(parameters)
        if self.learning_rate is not None:
            for group in optimizer.param_groups:
                if group["lr"] == optimizer.defaults["lr"]:
                    group["lr"] = self.learning_rate
            optimizer.defaults["lr"] = self.learning_rate
        return optimizer

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Optimise every parameter that requires a gradient (never the frozen teacher's)."""
        optimizer = self.build_optimizer(self.optimizer_factory, [p for p in self.parameters() if p.requires_grad])
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
            it is pretrained). Read without running code (:func:`~lit_kd.checkpointing.safe_load`; a legacy pickle
            only when the process runs with ``LIT_KD_TRUST_CHECKPOINTS=1``, the one switch that trusts a file).
        save_teacher: also store the teacher's weights in this module's checkpoints.
        fast_teacher: run the teacher as an inference copy with every BatchNorm folded into the convolution before
            it (:func:`~lit_kd.models.inference.inference_copy`; same outputs to float tolerance, fewer operations),
            under ``torch.inference_mode`` where no gradient is needed. ``teacher``'s own weights, its state dict and
            the checkpoints keep their original form; the copy follows them.
        compile_teacher: compile the teacher's inference copy with ``torch.compile``.
        teacher_precision: ``"16"`` or ``"bf16"`` run the teacher's gradient-free forward passes (its logits and
            feature maps for the losses) under autocast in that precision, e.g. on a GPU; ``"32"`` (default) in the
            trainer's precision. Passes that back-propagate through the teacher's input (BSS's attack, DFAD's
            generator step, AMA's adapted teacher) always use the trainer's precision.
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``, ``channels_last``, ``compile_student``: see
            :class:`StudentModule`.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_checkpoint: str | None = None,
        save_teacher: bool = False,
        fast_teacher: bool = True,
        compile_teacher: bool = False,
        teacher_precision: Literal["32", "16", "bf16"] = "32",
        **kwargs: Any,
    ) -> None:
        refuse_trust_setting(kwargs)
        super().__init__(student=student, **kwargs)
        if teacher_precision not in ("32", "16", "bf16"):
            raise ValueError(f"teacher_precision must be '32', '16' or 'bf16', got {teacher_precision!r}")
        if teacher_checkpoint is not None:
            load_network_weights(teacher, teacher_checkpoint, argument="teacher_checkpoint")
            check_finite_weights(teacher.state_dict(), f"teacher_checkpoint: {teacher_checkpoint}")
        elif getattr(teacher, "weights_name", None) is None:
            rank_zero_warn(
                f"{type(self).__name__}: teacher_checkpoint is None, so the teacher keeps the weights it was built "
                "with; distilling from an untrained teacher teaches nothing useful."
            )
        self.teacher = teacher.requires_grad_(False).eval()
        self.save_teacher = save_teacher
        self.fast_teacher, self.compile_teacher, self.teacher_precision = (
            fast_teacher,
            compile_teacher,
            teacher_precision,
        )
        self.__dict__["_inference_teacher"] = None  # a plain attribute: not a submodule, not in the state dict
        self._inference_signature: tuple[Any, ...] = ()

    @property
    def frozen_teacher(self) -> nn.Module:
        """The teacher to run: its inference copy with ``fast_teacher``, else the teacher itself.

        The copy is rebuilt whenever the teacher's weights, buffers or device change (e.g. a checkpoint was loaded).
        It is made outside ``torch.inference_mode`` even when first asked for inside it (e.g. in a callable given to
        :meth:`teacher_forward`), so its weights are ordinary tensors that a later pass can differentiate through.
        """
        if not self.fast_teacher:
            return self.teacher
        tensors = [*self.teacher.parameters(), *self.teacher.buffers()]
        signature = tuple((tensor._version, tensor.data_ptr(), tensor.device) for tensor in tensors)
        if self.__dict__["_inference_teacher"] is None or signature != self._inference_signature:
            with torch.inference_mode(False):
                copied = inference_copy(self.teacher, share=(self,))
            if self.compile_teacher:
                copied.compile()
            self.__dict__["_inference_teacher"], self._inference_signature = copied, signature
        return self.__dict__["_inference_teacher"]

    def _apply(self, fn: Any, recurse: bool = True) -> DistillationModule:
        """Moving or casting the module (``.to``, ``.half``, ...) drops the teacher's inference copy (made again)."""
        self.__dict__["_inference_teacher"] = None
        return super()._apply(fn, recurse)

    def apply_speed_options(self) -> None:
        """The base's options, then a fresh inference copy of the teacher (with any new hooks and memory format)."""
        super().apply_speed_options()
        self.__dict__["_inference_teacher"] = None

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

    def teacher_logits(self, images: Tensor) -> Tensor:
        """Teacher logits without a graph: the inference copy under ``torch.inference_mode`` (``teacher_precision``)."""
        return self.teacher_forward(self.frozen_teacher, images)

    def teacher_forward(self, network: Any, images: Tensor) -> Any:
        """``network(images)`` (the teacher, or a callable running it) as a loss target: no graph.

        Under ``torch.inference_mode`` when ``fast_teacher`` (the outputs are cloned into ordinary tensors, which a
        loss can save for its backward pass), else under ``torch.no_grad``.
        """
        dtype = {"16": torch.float16, "bf16": torch.bfloat16}.get(self.teacher_precision)
        autocast = torch.autocast(images.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with torch.inference_mode() if self.fast_teacher else torch.no_grad(), autocast:
            output = network(images)
        if self.fast_teacher or dtype is not None:
            output = tree_map(lambda value: value.float().clone() if dtype else value.clone(), output)
        return output

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the frozen teacher's weights from the checkpoint unless ``save_teacher``."""
        super().on_save_checkpoint(checkpoint)
        if not self.save_teacher:
            state_dict = checkpoint["state_dict"]
            for key in [key for key in state_dict if key.startswith("teacher.")]:
                del state_dict[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the current teacher weights back where a checkpoint left them out."""
        super().on_load_checkpoint(checkpoint)
        state_dict = checkpoint["state_dict"]
        for key, value in self.teacher.state_dict().items():
            state_dict.setdefault(f"teacher.{key}", value)
