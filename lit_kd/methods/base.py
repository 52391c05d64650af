"""The contract of every lit-kd method: a student trained on a task, and for distillation a frozen teacher.

A method subclasses :class:`StudentModule` (or :class:`DistillationModule`) and implements
:meth:`~StudentModule.training_losses`. What every method runs on lives in named modules: the shared hooks
(reseeding, guards, DDP sync) in :class:`~lit_kd.runtime.RuntimeModule`, the task's loss and metrics in
:mod:`lit_kd.tasks`, optimiser defaults in :mod:`lit_kd.runtime.optimization`, the teacher's loading and running in
:mod:`lit_kd.runtime.teacher`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MeanMetric, MetricCollection

from lit_kd.checkpointing import refuse_trust_setting
from lit_kd.models.normalization import convert_inputs_for_networks
from lit_kd.models.probe import probe
from lit_kd.runtime.manual import step_schedulers
from lit_kd.runtime.memo import MEMO_DTYPES, TeacherMemo, describe, memoised_outputs, open_teacher_memo
from lit_kd.runtime.module import RuntimeModule
from lit_kd.runtime.optimization import default_optimizer, override_learning_rate, with_lr_schedule
from lit_kd.runtime.speed import use_channels_last_where_safe
from lit_kd.runtime.teacher import TeacherPrecision, TeacherRunner, load_teacher, resolve_precision
from lit_kd.tasks import Classification, Task, make_task, task_of

__all__ = ["DistillationModule", "StudentModule", "default_optimizer"]


class StudentModule(RuntimeModule):
    """Base for every lit-kd method: one network being trained, with metrics per stage and optimiser defaults.

    A method subclasses this (or :class:`DistillationModule`) and implements :meth:`training_losses`; this base
    owns logging (``train/``, ``val/``, ``test/`` prefixes), the task's metrics, the optimiser and the learning-rate
    schedule, and the check that the networks' outputs match the data's number of classes; reseeding, the guards and
    DDP sync come from :class:`~lit_kd.runtime.RuntimeModule`.

    The task comes from the DataModule's ``task`` at setup (:func:`~lit_kd.tasks.task_of`): for ``"regression"``
    (targets scaled to ``[0, 1]``, networks with one output) the metrics are MAE and RMSE in the data's units and
    :meth:`task_loss` is MSE (:class:`~lit_kd.tasks.Regression`). A method declares the tasks it can train in
    :attr:`supported_tasks` (classification only by default; setup refuses others with an error naming the method).

    Args:
        student: the network being trained (any ``nn.Module`` returning logits ``[B, num_classes]``).
        num_classes: number of classes; by default taken from the DataModule's ``num_classes``.
        optimizer: builds the optimiser from the trainable parameters (default:
            :func:`~lit_kd.runtime.optimization.default_optimizer`).
        lr_scheduler: builds the scheduler from the optimiser, stepped every epoch; by default cosine annealing to
            0 over all training steps, stepped every batch (ours: :mod:`lit_kd.runtime.optimization`).
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
        self.register_student(student)
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.learning_task: Task = Classification()  # resolved from the DataModule at setup
        self.train_metrics: MetricCollection | None = None
        self.val_metrics: MetricCollection | None = None
        self.test_metrics: MetricCollection | None = None
        self.evaluation_means = nn.ModuleDict()  # weighted means of the evaluation losses, made on first use

    def register_student(self, student: nn.Module) -> None:
        """Make ``student`` the submodule ``student`` (an online method keeps its networks in a list instead)."""
        self.student = student

    @property
    def task(self) -> str:
        """The name of the task (``"classification"`` or ``"regression"``); setting it sets :attr:`learning_task`."""
        return self.learning_task.name

    @task.setter
    def task(self, name: str) -> None:
        self.learning_task = make_task(name, self.learning_task.target_scale)

    @property
    def target_scale(self) -> float:
        """What turns a regression output back into the data's units (1 for classification)."""
        return self.learning_task.target_scale

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        """Resolve the task and ``num_classes`` from the DataModule, check the networks, build the metrics."""
        super().setup(stage)
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
        """Take the task from the DataModule (:func:`~lit_kd.tasks.task_of`); refuse one this method cannot train.

        Without a DataModule the task stays as it is (classification unless set by hand).

        Raises:
            ValueError: this method's :attr:`supported_tasks` do not include the task, or a regression DataModule
                has no ``target_scale``.
        """
        if datamodule is not None:
            self.learning_task = task_of(datamodule)
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
        """Convert the data's normalisation for networks that declare their own (:mod:`lit_kd.models.normalization`)."""
        convert_inputs_for_networks(self, datamodule)

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
        """Apply ``channels_last`` (weights and network inputs, where safe) and ``compile_student`` (once)."""
        if self.channels_last:
            use_channels_last_where_safe(self, list(self.networks_to_check().values()), self.on_cpu())
        if self.compile_student and not self._compiled:
            for network in self.trained_networks():
                network.compile()
            self._compiled = True

    def check_output_sizes(self, input_shape: tuple[int, ...]) -> None:
        """Run each network of :meth:`networks_to_check` on a dummy batch and compare its output to the data."""
        for name, network in self.networks_to_check().items():
            output = probe(network, input_shape)
            logits = output[0] if isinstance(output, tuple) else output
            if logits.shape[-1] != self.num_classes:
                raise ValueError(
                    f"{type(self).__name__}: the {name} ({type(network).__name__}) outputs {logits.shape[-1]} "
                    f"classes but the data has {self.num_classes}; set num_classes of the {name} to "
                    f"{self.num_classes}"
                )

    def configure_metrics(self, prefix: str) -> MetricCollection:
        """The task's metrics: top-1 and top-5 accuracy, or MAE and RMSE in the data's units (:mod:`lit_kd.tasks`)."""
        return self.learning_task.metrics(prefix, self.num_classes)

    # -------------------------------------------------------------------------------------------- training
    def forward(self, images: Tensor) -> Tensor:
        """Student logits."""
        return self.student(images)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The method itself: loss terms for one batch (``"loss"`` is optimised, all are logged) and the logits."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_losses(images, targets)")

    def step_schedulers(self, interval: str) -> None:
        """Step the LR schedulers whose interval is ``interval`` (manual optimisation steps them itself)."""
        step_schedulers(self, interval)

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
            # a NaN loss is reported as NaN: torchmetrics' default drops it and averages the rest (with a warning), and
            # its "disable" drops the weights (torchmetrics 1.9 aggregation.py:106-107); a float strategy replaces a
            # NaN by that float and keeps the weights, so NaN stays NaN
            self.evaluation_means[name] = MeanMetric(nan_strategy=float("nan")).to(self.device)
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
        outputs and the targets scaled to ``[0, 1]`` (:class:`~lit_kd.tasks.Regression`). Override it to change both.
        """
        return self.learning_task.loss(outputs, targets)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """The student's predictions for a batch ``(images, indices)`` of a DataModule's ``predict_dataloader``.

        Classification: the predicted class, its probability and every class probability; regression: the value in
        the data's units (output times ``target_scale``). :class:`~lit_kd.callbacks.PredictionWriter` writes them.
        """
        images, index = batch
        return {"index": index, **self.learning_task.predictions(self(images))}

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
        return override_learning_rate(factory(parameters), self.learning_rate)

    def with_lr_schedule(self, optimizer: Optimizer) -> dict[str, Any]:
        """``optimizer``'s config with ``lr_scheduler`` (default: cosine annealing to 0 over all steps, per step)."""
        return with_lr_schedule(optimizer, self.lr_scheduler_factory, self.trainer)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Optimise every parameter that requires a gradient (never the frozen teacher's)."""
        parameters = [p for p in self.parameters() if p.requires_grad]
        return self.with_lr_schedule(self.build_optimizer(self.optimizer_factory, parameters))


class DistillationModule(StudentModule):
    """Base for methods that distil a frozen, pretrained teacher into the student.

    The teacher is loaded from ``teacher_checkpoint`` (a lit-kd/Lightning checkpoint or a state dict), has
    ``requires_grad`` off, is kept in eval mode even after Lightning switches the module back to training, is
    never given to the optimiser, and is left out of saved checkpoints unless ``save_teacher=True`` (on resume
    the weights loaded from ``teacher_checkpoint`` are put back). A :class:`~lit_kd.runtime.TeacherRunner` runs it
    (:attr:`frozen_teacher`, :meth:`teacher_forward`).

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
            feature maps for the losses) under autocast in that precision, e.g. on a GPU; ``"32"`` in the trainer's
            precision; ``"auto"`` (default) bf16 on a CPU with native bf16 kernels (AVX512-BF16 or AMX), where it
            is measured about 2x faster with 99.54% top-1 agreement, else the trainer's precision
            (:func:`~lit_kd.runtime.teacher.resolve_precision`; ``LIT_KD_TEACHER_PRECISION=32`` keeps float32).
            Passes that back-propagate through the teacher's input (BSS's attack, DFAD's generator step, AMA's
            adapted teacher) always use the trainer's precision.
        teacher_memo: a file memoising the teacher's logits per (training sample, augmentation view), exact
            (:mod:`lit_kd.runtime.memo`): each is computed on first use and read back afterwards, in this run and in
            later runs with the same teacher and data (other seeds, methods, settings); ``lit-kd teacher-memo``
            fills it beforehand. Only for methods whose teacher reads only clean training images' logits
            (:attr:`memoizes_teacher_logits`) and lit-kd DataModules. ``None`` (default) recomputes the teacher.
        teacher_memo_dtype: the memo's storage: ``"float32"`` (the logits exactly) or ``"float16"`` (half the size).
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``, ``channels_last``, ``compile_student``: see
            :class:`StudentModule`.
    """

    #: Whether :meth:`teacher_logits` on a training batch's images is all this method asks of the teacher there
    #: (so ``teacher_memo`` can serve it): the logit methods say so; feature methods and generated inputs do not.
    memoizes_teacher_logits: ClassVar[bool] = False

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_checkpoint: str | None = None,
        save_teacher: bool = False,
        fast_teacher: bool = True,
        compile_teacher: bool = False,
        teacher_precision: TeacherPrecision = "auto",
        teacher_memo: str | Path | None = None,
        teacher_memo_dtype: str = "float32",
        **kwargs: Any,
    ) -> None:
        refuse_trust_setting(kwargs)
        if teacher_memo is not None and not self.memoizes_teacher_logits:
            raise ValueError(
                f"{type(self).__name__} cannot use teacher_memo: its teacher sees more than the training images' "
                "logits (memoised methods: HintonKD, DecoupledKD, DISTDistillation, BSSDistillation, "
                "EnsembleDistillation, SelfDistillation)"
            )
        if teacher_memo_dtype not in MEMO_DTYPES:
            raise ValueError(f"teacher_memo_dtype must be one of {sorted(MEMO_DTYPES)}, got {teacher_memo_dtype!r}")
        super().__init__(student=student, **kwargs)
        runner = TeacherRunner(teacher, fast_teacher, compile_teacher, teacher_precision, share=(self,))
        self.teacher = load_teacher(teacher, teacher_checkpoint, type(self).__name__)
        self.save_teacher = save_teacher
        self.teacher_runner = runner
        if teacher_memo is not None:  # a Path in the hyperparameters would not load with weights_only
            teacher_memo = self.hparams["teacher_memo"] = str(teacher_memo)
        self.teacher_memo_path, self.teacher_memo_dtype = teacher_memo, teacher_memo_dtype
        self.teacher_memo: TeacherMemo | None = None  # opened at setup for fit
        self._memo_batch: tuple[Tensor, Tensor, Tensor] | None = None  # (images, samples, views) of this step

    def setup(self, stage: str) -> None:
        """The base's setup; for ``fit`` with ``teacher_memo``, open the memo and ask the DataModule for view ids.

        The teacher is in eval mode by design: Lightning's warning about eval-mode modules is silenced here, before
        any callback's ``on_fit_start`` (the learning-rate finder trains from there).
        """
        super().setup(stage)
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
        if stage == "fit" and self.teacher_memo_path is not None:
            datamodule = getattr(self.trainer, "datamodule", None)
            self.teacher_memo = self.open_teacher_memo(datamodule, str(self.trainer.precision))
            datamodule.return_views = True

    def open_teacher_memo(self, datamodule: Any, trainer_precision: str) -> TeacherMemo:
        """Open ``teacher_memo`` for this teacher, as it runs here (in ``trainer_precision``), on ``datamodule``."""
        runner = self.teacher_runner
        teacher_run = {
            "precision": resolve_precision(runner.precision, self.device),  # "auto" as it resolves here
            "trainer_precision": trainer_precision,
            "fast": runner.fast,
            "channels_last": self.channels_last,
        }
        memo = open_teacher_memo(
            self.teacher_memo_path, self.teacher, teacher_run, datamodule, self.num_classes, self.teacher_memo_dtype
        )
        rank_zero_info(describe(memo))
        return memo

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        """The base's step; a batch ``(images, targets, indices, views)`` keys the teacher memo's entries."""
        images, targets, *keys = batch
        if self.teacher_memo is not None and len(keys) == 2:
            sources = self.trainer.datamodule.train_sources
            self._memo_batch = (images, sources[keys[0].cpu()], keys[1])
        try:
            return super().training_step((images, targets), batch_idx)
        finally:
            self._memo_batch = None

    def on_train_epoch_end(self) -> None:
        """The base's hook; then save the teacher memo's new entries (every process's, under DDP)."""
        super().on_train_epoch_end()
        memo = self.teacher_memo
        if memo is None:
            return
        if self.trainer.world_size > 1:
            strategy = self.trainer.strategy
            memo.share_new_entries(
                lambda tensor: tensor.copy_(strategy.reduce(tensor.to(self.device), reduce_op="sum").cpu())
            )
        if self.trainer.is_global_zero:
            memo.save()
        memo.new.zero_()

    @property
    def frozen_teacher(self) -> nn.Module:
        """The teacher to run: its inference copy with ``fast_teacher``, else the teacher (:class:`TeacherRunner`)."""
        return self.teacher_runner.network

    def _apply(self, fn: Any, recurse: bool = True) -> DistillationModule:
        """Moving or casting the module (``.to``, ``.half``, ...) drops the teacher's inference copy (made again)."""
        if "teacher_runner" in self.__dict__:
            self.teacher_runner.invalidate()
        return super()._apply(fn, recurse)

    def apply_speed_options(self) -> None:
        """The base's options, then a fresh inference copy of the teacher (with any new hooks and memory format)."""
        super().apply_speed_options()
        self.teacher_runner.invalidate()

    def networks_to_check(self) -> dict[str, nn.Module]:
        """The student and the teacher must both output ``num_classes`` logits."""
        return {"student": self.student, "teacher": self.teacher}

    def train(self, mode: bool = True) -> DistillationModule:
        """Switch to train/eval mode, keeping the teacher in eval mode (frozen BN statistics, no dropout)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_logits(self, images: Tensor) -> Tensor:
        """Teacher logits without a graph: the inference copy under ``torch.inference_mode`` (``teacher_precision``).

        On the images of a training batch keyed for ``teacher_memo``, the memo's entries
        (:func:`~lit_kd.runtime.memo.memoised_outputs`: computed only where not stored).
        """
        if self._memo_batch is not None and images is self._memo_batch[0]:
            _, samples, views = self._memo_batch
            compute = lambda batch: self.teacher_forward(self.frozen_teacher, batch)  # noqa: E731
            return memoised_outputs(self.teacher_memo, samples, views, images, compute)
        return self.teacher_forward(self.frozen_teacher, images)

    def teacher_forward(self, network: Any, images: Tensor) -> Any:
        """``network(images)`` (the teacher, or a callable running it) as a loss target, without a graph.

        See :meth:`~lit_kd.runtime.TeacherRunner.targets`.
        """
        return self.teacher_runner.targets(network, images)

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
