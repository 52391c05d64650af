"""CRD: contrastive representation distillation of the penultimate features, with a memory bank per sample."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lit_kd.data.base import InMemoryImageDataModule, LabelledImages
from lit_kd.losses import soft_target_kl
from lit_kd.losses.crd import CRDLoss
from lit_kd.methods.base import DistillationModule
from lit_kd.models.features import FeatureTaps, last_linear_layer
from lit_kd.models.probe import evaluation_mode, first_device


class ContrastiveRepresentationDistillation(DistillationModule):
    """CRD of Tian, Krishnan & Isola (2020), "Contrastive Representation Distillation" (ICLR).

    ``loss = ce_weight * CE + kd_weight * T^2 * KL + crd_weight * CRD``, where CRD (:class:`~lit_kd.losses.CRDLoss`)
    embeds the student's and the teacher's penultimate features and contrasts each sample against ``K`` others held
    in two memory banks, one row per training sample. Defaults are RepDistiller's CIFAR ones (HobbitLong/RepDistiller
    at b84f547): ``feature_dim`` 128, ``num_negatives`` 16384, ``contrast_temperature`` 0.07, ``momentum`` 0.5 and
    negatives from the other classes (``--mode exact``), ``train_student.py:81-85``; ``crd_weight`` 0.8 with
    ``kd_weight`` 0 (``scripts/run_cifar_distill.sh:29``: ``-a 0 -b 0.8``) and ``ce_weight`` 1 (``-r``, default 1,
    ``train_student.py:73``); ``temperature`` 4 for the optional KD term (``--kd_T``, ``train_student.py:78``; CRD+KD
    is ``-a 1 -b 0.8``, ``scripts/run_cifar_distill.sh:32``). The features are RepDistiller's ``feat[-1]``
    (``helper/loops.py:130-133``): the pooled, flattened features the classifier receives.

    The banks have one row per training sample, so the loss is built at setup, when the training set is known
    (``train_set`` of a lit-kd DataModule; else ``len(train_dataloader().dataset)``; else ``num_samples``), with its
    labels for the class-aware negatives (a lit-kd DataModule's targets, or the dataset's ``targets``). Training
    batches must carry each sample's index into the training set, ``(images, targets, indices)``: a lit-kd DataModule
    is switched to ``return_indices`` at setup; wrap your own training ``Dataset`` in :class:`lit_kd.data.WithIndices`.
    The banks are buffers: checkpoints hold them and a resumed run continues them exactly.

    Args:
        student: the network being trained (any ``nn.Module``).
        teacher: the teacher's architecture (any ``nn.Module``).
        student_layer: the module whose output (flattened) is the student's features; by default the input of the
            last ``nn.Linear`` to run (:func:`~lit_kd.models.features.last_linear_layer`; a zoo network's pooled
            embedding).
        teacher_layer: the same for the teacher.
        crd_weight: weight of the CRD loss.
        ce_weight: weight of the cross-entropy.
        kd_weight: weight of Hinton KD on the logits (0: off).
        temperature: the KD term's temperature.
        feature_dim: size of the shared embedding.
        num_negatives: ``K``, negatives per sample.
        contrast_temperature: temperature of the contrastive scores.
        momentum: weight of a bank row's old value in its update.
        class_negatives: draw negatives only from the other classes (``exact``) when the training labels are known;
            ``False`` (or no labels: a warning) draws them uniformly from the whole set.
        num_samples: training-set size, for data that shows it neither as ``train_set`` nor through a DataModule's
            ``train_dataloader()`` (e.g. ``trainer.fit(module, train_dataloaders=...)``).
        probe_size: image size of the dummy batch that sizes the embeddings (the training size is fine too).
        **kwargs: ``teacher_checkpoint``, ``save_teacher``, ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        student_layer: str | None = None,
        teacher_layer: str | None = None,
        crd_weight: float = 0.8,
        ce_weight: float = 1.0,
        kd_weight: float = 0.0,
        temperature: float = 4.0,
        feature_dim: int = 128,
        num_negatives: int = 16384,
        contrast_temperature: float = 0.07,
        momentum: float = 0.5,
        class_negatives: bool = True,
        num_samples: int | None = None,
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(student=student, teacher=teacher, **kwargs)
        for name, weight in (("crd_weight", crd_weight), ("ce_weight", ce_weight), ("kd_weight", kd_weight)):
            if not weight >= 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.crd_weight, self.ce_weight, self.kd_weight, self.temperature = (
            crd_weight,
            ce_weight,
            kd_weight,
            temperature,
        )
        self.contrast_settings = dict(
            feature_dim=feature_dim,
            num_negatives=num_negatives,
            temperature=contrast_temperature,
            momentum=momentum,
        )
        self.class_negatives = class_negatives
        self.num_samples = num_samples
        self.student_taps = _penultimate_taps(student, student_layer, "student_layer", probe_size)
        self.teacher_taps = _penultimate_taps(teacher, teacher_layer, "teacher_layer", probe_size)
        self.feature_sizes = (
            _feature_size(self.student_taps, probe_size),
            _feature_size(self.teacher_taps, probe_size),
        )
        self.crd: CRDLoss | None = None  # made at setup (configure_contrast), when the training set is known

    def configure_contrast(self, num_samples: int, labels: Tensor | None = None) -> CRDLoss:
        """Build the CRD loss (embeddings and banks) for ``num_samples`` training samples, on this module's device."""
        student_dim, teacher_dim = self.feature_sizes
        self.crd = CRDLoss(student_dim, teacher_dim, num_samples, **self.contrast_settings, labels=labels)
        self.crd.to(self.device)
        return self.crd

    def setup(self, stage: str) -> None:
        """The base's setup; for ``fit``, ask a lit-kd DataModule for sample indices and build the CRD loss."""
        super().setup(stage)
        if stage != "fit":
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if isinstance(datamodule, InMemoryImageDataModule):
            datamodule.return_indices = True
        num_samples, labels = self._training_set(datamodule)
        if not self.class_negatives:
            labels = None
        elif labels is None:
            rank_zero_warn(f"{type(self).__name__}: the training labels are unknown; negatives are drawn uniformly")
        if self.crd is None:
            self.configure_contrast(num_samples, labels)
        elif self.crd.memory.num_samples != num_samples:
            raise ValueError(
                f"{type(self).__name__}: the memory bank holds {self.crd.memory.num_samples} samples but the training "
                f"set has {num_samples}"
            )
        elif labels is not None:
            self.crd.memory.labels = torch.as_tensor(labels).reshape(-1).long().to(self.device)

    def _training_set(self, datamodule: Any) -> tuple[int, Tensor | None]:
        """The training-set size and labels (``None`` where unknown) from the data, checked against ``num_samples``."""
        size, labels = None, None
        train_set = getattr(datamodule, "train_set", None)
        if isinstance(train_set, LabelledImages):
            size, labels = len(train_set.targets), train_set.targets
        elif datamodule is not None and hasattr(datamodule, "train_dataloader"):
            dataset = getattr(datamodule.train_dataloader(), "dataset", None)
            if dataset is not None and hasattr(dataset, "__len__"):
                size, labels = len(dataset), getattr(dataset, "targets", None)
        if size is None and self.num_samples is None:
            raise ValueError(
                f"{type(self).__name__}: set num_samples (the training-set size) or use a DataModule whose "
                "train_dataloader() has a sized dataset"
            )
        if size is not None and self.num_samples is not None and size != self.num_samples:
            raise ValueError(f"{type(self).__name__}: num_samples={self.num_samples} but the training set has {size}")
        return (size if size is not None else self.num_samples), labels

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Build the CRD loss from the checkpoint's bank size when setup has not (``load_from_checkpoint``, test)."""
        super().on_load_checkpoint(checkpoint)
        bank = checkpoint["state_dict"].get("crd.memory.student_bank")
        if self.crd is None and bank is not None:
            self.configure_contrast(bank.shape[0])

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        """Like the base's, for batches ``(images, targets, indices)``; other batches fail with what to do."""
        if not isinstance(batch, tuple | list) or len(batch) != 3:
            found = f"{len(batch)} items" if isinstance(batch, tuple | list) else type(batch).__name__
            raise ValueError(
                f"{type(self).__name__} needs training batches (images, targets, sample indices), got {found}: use a "
                "lit-kd DataModule (indices are turned on at setup) or wrap your training Dataset in "
                "lit_kd.data.WithIndices"
            )
        images, targets, sample_indices = batch
        losses, logits = self.training_losses(images, targets, sample_indices)
        self.log_loss_terms(losses, "train", batch_size=len(targets))
        self.update_and_log_metrics("train", logits.detach(), targets)
        return losses["loss"]

    def training_losses(
        self,
        images: Tensor,
        targets: Tensor,
        sample_indices: Tensor | None = None,
        contrast_indices: Tensor | None = None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """CE, the CRD loss of the samples ``sample_indices`` (negatives ``contrast_indices``, else drawn) and KD."""
        if sample_indices is None:
            raise ValueError(f"{type(self).__name__}.training_losses needs the batch's sample indices")
        if self.crd is None:
            raise RuntimeError(f"{type(self).__name__}: setup() (or configure_contrast) builds the CRD loss first")
        student_logits, (student_features,) = self.student_taps(images)
        teacher = self.frozen_teacher  # made here, outside teacher_forward's inference mode (ordinary weights)
        teacher_logits, (teacher_features,) = self.teacher_forward(
            lambda batch: self.teacher_taps(batch, teacher), images
        )
        cross_entropy = F.cross_entropy(student_logits, targets)
        contrast = self.crd(student_features, teacher_features, sample_indices, contrast_indices)
        losses = {"ce": cross_entropy, "crd": contrast}
        loss = self.ce_weight * cross_entropy + self.crd_weight * contrast
        if self.kd_weight > 0:
            losses["kd"] = soft_target_kl(student_logits, teacher_logits, self.temperature)
            loss = loss + self.kd_weight * losses["kd"]
        return {"loss": loss, **losses}, student_logits


def _penultimate_taps(network: nn.Module, layer: str | None, argument: str, probe_size: int) -> FeatureTaps:
    """Taps on ``layer``'s output, or on the input of ``network``'s last linear layer when ``layer`` is ``None``."""
    if layer is None:
        return FeatureTaps(network, [last_linear_layer(network, argument, probe_size)], argument, record="input")
    return FeatureTaps(network, [layer], argument)


@torch.no_grad()
def _feature_size(taps: FeatureTaps, probe_size: int) -> int:
    """The flattened size of the tapped features on a zero batch ``[2, 3, probe_size, probe_size]``."""
    with evaluation_mode(taps.network):
        _, (features,) = taps(torch.zeros(2, 3, probe_size, probe_size, device=first_device(taps.network)))
    return features[0].numel()
