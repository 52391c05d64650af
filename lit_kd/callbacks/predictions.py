"""Writing a method's predictions to a CSV file: ``lit-kd predict`` and ``trainer.predict`` with any lit-kd method."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    """Writes the predictions of a ``trainer.predict`` run to a CSV file, one row per image.

    Columns: ``file`` (the image file, or ``test[<index>]`` for the test split), ``target`` (the label, when known),
    then for classification ``prediction`` (class index), ``label`` (class name, when the DataModule has ``classes``)
    and ``probability`` (of the predicted class), or for regression ``value`` (in the data's units). It reads the
    outputs of the methods' ``predict_step`` and the DataModule's ``predict_names``/``predict_targets``
    (:class:`~lit_kd.data.InMemoryImageDataModule`). Under DDP each process writes its own shard,
    ``<name>.rank<r>.csv``. ``lit-kd predict`` adds one writing ``<default_root_dir>/predictions.csv`` when the
    trainer has none.

    Args:
        output_file: the CSV file to write.
    """

    def __init__(self, output_file: str | Path = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.output_file = Path(output_file)

    def write_on_epoch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        """Write every prediction of this process."""
        outputs = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        merged = {
            key: torch.cat([output[key].cpu() for output in outputs]) for key in outputs[0] if key != "probabilities"
        }
        datamodule = trainer.datamodule
        names = getattr(datamodule, "predict_names", None) or []
        targets = getattr(datamodule, "predict_targets", None)
        classes = getattr(datamodule, "classes", None)
        path = self.output_file
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        scale = float(getattr(datamodule, "target_scale", 1.0))
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            columns = ["file", *(["target"] if targets is not None else [])]
            columns += (
                ["value"] if "value" in merged else ["prediction", *(["label"] if classes else []), "probability"]
            )
            writer.writerow(columns)
            for row, index in enumerate(merged["index"].tolist()):
                cells: list[Any] = [names[index] if index < len(names) else str(index)]
                if targets is not None:
                    target = targets[index]
                    cells.append(f"{float(target) * scale:.6g}" if target.is_floating_point() else int(target))
                if "value" in merged:
                    cells.append(f"{float(merged['value'][row]):.6g}")
                else:
                    prediction = int(merged["prediction"][row])
                    cells += [prediction, *([classes[prediction]] if classes else [])]
                    cells.append(f"{float(merged['probability'][row]):.6f}")
                writer.writerow(cells)
