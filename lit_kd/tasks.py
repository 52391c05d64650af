"""The learning tasks a method trains on: what the loss, the metrics and the predictions are for each.

A DataModule names its task (``task = "classification"`` or ``"regression"``); :func:`task_of` turns that into a
:class:`Classification` or :class:`Regression` object, and :class:`~lit_kd.methods.StudentModule` asks it for the
supervised loss, the epoch metrics and the predictions. Regression networks are ordinary zoo networks with one output
(``num_classes=1``); their output ``[B, 1]`` is squeezed to ``[B]`` and compared with targets scaled to ``[0, 1]`` by
the DataModule (``target_scale`` turns them back into e.g. years).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError
from torchmetrics.wrappers.transformations import MetricInputTransformer


def regression_predictions(outputs: Tensor) -> Tensor:
    """A regression network's outputs ``[B, 1]`` (or ``[B]``) as predictions ``[B]``.

    Raises:
        ValueError: the outputs have more than one value per sample.

    Example:
        >>> import torch
        >>> regression_predictions(torch.tensor([[0.5], [0.25]]))
        tensor([0.5000, 0.2500])
    """
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        return outputs[:, 0]
    if outputs.ndim == 1:
        return outputs
    raise ValueError(f"a regression network must output [B, 1] or [B], got {tuple(outputs.shape)}")


def regression_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error between the predictions and the scaled targets.

    The loss of the cGAN-KD regression CNNs (``nn.MSELoss()`` on labels divided by the maximum label in
    ``UTKFace/train_cnn.py`` of UBCDingXin/cGAN-KD).

    Example:
        >>> import torch
        >>> regression_loss(torch.tensor([[0.5], [0.25]]), torch.tensor([0.25, 0.25]))
        tensor(0.0312)
    """
    return F.mse_loss(regression_predictions(outputs), targets.to(outputs.dtype))


class ScaledRegressionInputs(MetricInputTransformer):
    """Feeds a regression metric predictions and targets in the data's units: squeezed and multiplied by ``scale``.

    Args:
        wrapped_metric: the metric (or collection) to feed.
        scale: the DataModule's ``target_scale`` (e.g. 60 for ages scaled by 1/60).
    """

    def __init__(self, wrapped_metric: MeanAbsoluteError | MeanSquaredError | MetricCollection, scale: float) -> None:
        super().__init__(wrapped_metric)
        self.scale = float(scale)

    def transform_pred(self, pred: Tensor) -> Tensor:
        """Squeeze ``[B, 1]`` to ``[B]`` and scale to the data's units."""
        return regression_predictions(pred).float() * self.scale

    def transform_target(self, target: Tensor) -> Tensor:
        """Scale to the data's units."""
        return target.float() * self.scale


def regression_metrics(prefix: str, target_scale: float) -> MetricCollection:
    """MAE and RMSE (keys ``mae``, ``rmse``) in the data's original units, accumulated over an epoch.

    RMSE is the square root of the epoch's mean squared error (not a mean of per-batch roots). Unlike the cGAN-KD
    evaluation code (``test_cnn`` in ``UTKFace/train_cnn.py``), predictions are not truncated to whole years.

    Example:
        >>> import torch
        >>> metrics = regression_metrics("val/", target_scale=60.0)
        >>> metrics.update(torch.tensor([[0.5], [0.25]]), torch.tensor([0.25, 0.25]))
        >>> {name: round(value.item(), 3) for name, value in metrics.compute().items()}
        {'val/mae': 7.5, 'val/rmse': 10.607}
    """
    return MetricCollection(
        {
            "mae": ScaledRegressionInputs(MeanAbsoluteError(), target_scale),
            "rmse": ScaledRegressionInputs(MeanSquaredError(squared=False), target_scale),
        },
        prefix=prefix,
        compute_groups=False,
    )


@dataclass(frozen=True)
class Classification:
    """Class labels: cross-entropy, top-1/top-5 accuracy, the predicted class and every class probability."""

    name: ClassVar[str] = "classification"
    target_scale: ClassVar[float] = 1.0

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy of the logits."""
        return F.cross_entropy(outputs, targets)

    def metrics(self, prefix: str, num_classes: int) -> MetricCollection:
        """Top-1 and top-5 accuracy (micro-averaged: the fraction of correct samples)."""
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            },
            prefix=prefix,
            compute_groups=False,
        )

    def predictions(self, outputs: Tensor) -> dict[str, Tensor]:
        """The predicted class, its probability and every class probability."""
        probabilities = outputs.float().softmax(dim=-1)
        probability, prediction = probabilities.max(dim=-1)
        return {"prediction": prediction, "probability": probability, "probabilities": probabilities}


@dataclass(frozen=True)
class Regression:
    """Targets in ``[0, 1]`` (``target_scale`` times them is the data's unit): MSE, MAE/RMSE and values in that unit.

    The loss is that of the cGAN-KD regression CNNs (:func:`regression_loss`).
    """

    target_scale: float = 1.0
    name: ClassVar[str] = "regression"

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean squared error on the scaled targets (:func:`regression_loss`)."""
        return regression_loss(outputs, targets)

    def metrics(self, prefix: str, num_classes: int) -> MetricCollection:
        """MAE and RMSE in the data's units (:func:`regression_metrics`)."""
        return regression_metrics(prefix, self.target_scale)

    def predictions(self, outputs: Tensor) -> dict[str, Tensor]:
        """The predicted value in the data's units (output times ``target_scale``)."""
        return {"value": regression_predictions(outputs).float() * self.target_scale}


Task = Classification | Regression


def make_task(name: str, target_scale: float = 1.0) -> Task:
    """The task called ``name`` (``"classification"`` or ``"regression"``, with its ``target_scale``)."""
    if name == Classification.name:
        return Classification()
    if name == Regression.name:
        return Regression(float(target_scale))
    raise ValueError(f"task must be 'classification' or 'regression', got {name!r}")


def task_of(datamodule: Any) -> Task:
    """The DataModule's task: its ``task`` (classification if it has none), with its ``target_scale`` for regression.

    Raises:
        ValueError: a regression DataModule has no ``target_scale``.
    """
    name = getattr(datamodule, "task", Classification.name)
    if name != Regression.name:
        return make_task(name)
    target_scale = getattr(datamodule, "target_scale", None)
    if target_scale is None:
        raise ValueError(
            f"{type(datamodule).__name__} has task='regression' but no target_scale (the factor that turns its "
            "[0, 1] targets back into the data's units)"
        )
    return Regression(float(target_scale))
