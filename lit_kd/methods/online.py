"""Shared mechanics of online distillation: several networks trained together, evaluated and exported one by one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn

from lit_kd.losses.dml import all_pairs, mutual_kl
from lit_kd.methods.base import StudentModule, default_optimizer


class PairSchedule(Protocol):
    """What an online module asks its pair schedule (e.g. :class:`~lit_kd.callbacks.CyclicPairSchedule`)."""

    def active_pairs(self) -> list[tuple[int, int]]:
        """The ``(student, mentor)`` pairs to train at the current step."""
        ...


class OnlineDistillationModule(StudentModule):
    """Base of online methods (DML, AFD): ``n >= 2`` networks trained together from scratch, no pretrained teacher.

    Every network gets cross-entropy plus the mutual soft-target KL to its mentors; which ``(student, mentor)`` pairs
    are active is :meth:`default_pairs` unless a pair schedule callback (:class:`~lit_kd.callbacks.CyclicPairSchedule`)
    attaches itself as ``pair_schedule``. Each network is evaluated and logged on its own (``val/net0/acc``,
    ``val/net1/acc``, ...), ``val/best_acc`` is the best of them (monitor it to checkpoint the best run), ``student``
    and ``forward`` are the network that was best at the last validation, and :meth:`export_network` writes any one
    network as a plain state dict that ``load_network_weights`` and every ``teacher_checkpoint`` accept.

    Args:
        networks: the networks, any ``nn.Module`` returning logits (zoo networks for feature-based methods).
        temperature: softening temperature of the mutual KL.
        kl_reduction: a network's KL terms over its mentors, ``"mean"`` or ``"sum"`` (see
            :func:`~lit_kd.losses.dml.mutual_kl`).
        num_classes: see :class:`StudentModule`.
        optimizer: builds the optimiser from the trainable parameters (or parameter groups).
        lr_scheduler: see :class:`StudentModule`.
        **kwargs: ``channels_last``, ``compile_student``, ``learning_rate``: see :class:`StudentModule`.
    """

    hparams_ignore: tuple[str, ...] = (*StudentModule.hparams_ignore, "networks")

    def __init__(
        self,
        networks: list[nn.Module],
        temperature: float = 1.0,
        kl_reduction: Literal["mean", "sum"] = "mean",
        num_classes: int | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        **kwargs: Any,
    ) -> None:
        if len(networks) < 2:
            raise ValueError(f"networks: online distillation needs at least 2 networks, got {len(networks)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(networks[0], num_classes=num_classes, optimizer=optimizer, lr_scheduler=lr_scheduler, **kwargs)
        self.networks = nn.ModuleList(networks)
        self.temperature = temperature
        self.kl_reduction = kl_reduction
        self.best_network = 0
        self.pair_schedule: PairSchedule | None = None
        self.network_metrics: nn.ModuleDict | None = None

    def register_student(self, student: nn.Module) -> None:
        """The networks live in :attr:`networks` only; :attr:`student` is a view of the best one."""

    @property
    def student(self) -> nn.Module:
        """The network with the best accuracy at the last validation (network 0 before any)."""
        return self.networks[self.best_network]

    @property
    def num_networks(self) -> int:
        """How many networks are trained together."""
        return len(self.networks)

    def networks_to_check(self) -> dict[str, nn.Module]:
        """Every network must output ``num_classes`` logits."""
        return {f"network {index}": network for index, network in enumerate(self.networks)}

    def setup(self, stage: str) -> None:
        """Resolve ``num_classes``, check the networks, build one metric collection per network and stage."""
        super().setup(stage)
        if self.network_metrics is None:
            template = self.configure_metrics("")
            self.network_metrics = nn.ModuleDict(
                {
                    f"{split}{index}": template.clone(prefix=f"{split}/net{index}/")
                    for split in ("train", "val", "test")
                    for index in range(self.num_networks)
                }
            )

    # -------------------------------------------------------------------------------------------- training
    def default_pairs(self) -> list[tuple[int, int]]:
        """``(student, mentor)`` pairs used without a pair schedule: every ordered pair (DML)."""
        return all_pairs(self.num_networks)

    def active_pairs(self) -> list[tuple[int, int]]:
        """The pairs trained at this step: the schedule's if one is attached, else :meth:`default_pairs`."""
        return self.pair_schedule.active_pairs() if self.pair_schedule is not None else self.default_pairs()

    def mutual_losses(self, logits: list[Tensor], targets: Tensor, pairs: list[tuple[int, int]]) -> dict[str, Tensor]:
        """Per-network cross-entropy and mutual KL (``net<i>/ce``, ``net<i>/kl``) and their sum as ``loss``."""
        kl_terms = mutual_kl(logits, pairs, self.temperature, self.kl_reduction)
        terms: dict[str, Tensor] = {}
        total = logits[0].new_zeros(())
        for index, (network_logits, kl) in enumerate(zip(logits, kl_terms, strict=True)):
            cross_entropy = F.cross_entropy(network_logits, targets)
            terms[f"net{index}/ce"], terms[f"net{index}/kl"] = cross_entropy, kl
            total = total + cross_entropy + kl
        return {"loss": total, **terms}

    def log_network_metrics(self, stage: str, logits: list[Tensor], targets: Tensor) -> None:
        """Update and log each network's accuracy under ``<stage>/net<i>/``."""
        if self.network_metrics is None:
            raise RuntimeError(f"{type(self).__name__}.setup() builds the metrics: it has not run")
        for index, network_logits in enumerate(logits):
            metrics = self.network_metrics[f"{stage}{index}"]
            metrics.update(network_logits.detach(), targets)
            self.log_dict(metrics, on_step=False, on_epoch=True)

    def training_losses(self, images: Tensor, targets: Tensor) -> tuple[dict[str, Tensor], list[Tensor]]:
        """CE + mutual KL of every network (:meth:`mutual_losses`); the loss terms and every network's logits."""
        logits = [network(images) for network in self.networks]
        return self.mutual_losses(logits, targets, self.active_pairs()), logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        """One optimisation step on every network (automatic optimisation)."""
        images, targets = batch
        losses, logits = self.training_losses(images, targets)
        self.log_loss_terms(losses, "train", batch_size=len(targets))
        self.log_network_metrics("train", logits, targets)
        return losses["loss"]

    # ------------------------------------------------------------------------------------------ evaluation
    def _evaluation_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        images, targets = batch
        logits = [network(images) for network in self.networks]
        losses = {f"net{index}/loss": F.cross_entropy(net_logits, targets) for index, net_logits in enumerate(logits)}
        self.log_loss_terms(losses, stage, batch_size=len(targets))
        self.log_network_metrics(stage, logits, targets)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/best_acc`` (max over networks) and ``val/best_net``; remember the best network."""
        if self.network_metrics is None:
            return
        accuracies = torch.stack([self.network_metrics[f"val{i}"]["acc"].compute() for i in range(self.num_networks)])
        self.best_network = int(accuracies.argmax())
        self.log("val/best_acc", accuracies.max(), prog_bar=True)
        self.log("val/best_net", float(self.best_network))

    def export_network(self, index: int, path: str | Path) -> Path:
        """Write network ``index``'s weights as a plain state dict (loadable as a student or a teacher)."""
        if not 0 <= index < self.num_networks:
            raise ValueError(f"index must be in [0, {self.num_networks}), got {index}")
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({key: value.detach().cpu() for key, value in self.networks[index].state_dict().items()}, path)
        return path

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember which network was best."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["best_network"] = self.best_network

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore which network was best."""
        super().on_load_checkpoint(checkpoint)
        self.best_network = int(checkpoint.get("best_network", 0))

    # ---------------------------------------------------------------------------------------- optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of the single optimiser (one group: every trainable parameter)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """One optimiser over :meth:`parameter_groups`, cosine-annealed per step unless ``lr_scheduler`` is given."""
        return self.configure_optimizers_for(self.parameter_groups())

    def configure_optimizers_for(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """``optimizer`` over ``groups`` with ``lr_scheduler`` (default: cosine annealing to 0, stepped per step)."""
        return self.with_lr_schedule(self.build_optimizer(self.optimizer_factory, groups))
