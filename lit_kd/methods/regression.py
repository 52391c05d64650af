"""What a method needs for regression targets (e.g. UTKFace ages): the loss, and MAE/RMSE in the data's units.

Regression networks are ordinary zoo networks with one output (``num_classes=1``); their output ``[B, 1]`` is
squeezed to ``[B]`` and compared with targets scaled to ``[0, 1]`` by the DataModule (``target_scale`` turns them
back into e.g. years). :class:`~lit_kd.methods.StudentModule` uses these when its DataModule has
``task = "regression"``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
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
