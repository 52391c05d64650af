"""Weights & Biases logging: every recipe runs with ``WandbLogger``; offline runs hold what README promises.

What wandb 0.31 writes for an offline run: ``wandb/offline-run-*/run-<id>.wandb`` (the run's records: config,
history, summary, artifacts; no ``files/config.yaml`` or ``files/wandb-summary.json`` any more) and logged media
under ``files/media/``. :func:`read_offline_run` reads the records (LevelDB log format, protobuf ``Record``s).

Tests that need wandb skip without it; :func:`test_cli_and_default_logger_work_without_wandb` needs it absent
and blocks it in a fresh interpreter.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.utilities.model_helpers import is_overridden
from PIL import Image

from lit_kd.callbacks import BoundarySampleGallery
from lit_kd.lightning_cli import LitKDCLI
from tests.support.training import tiny_cifar, tiny_trainer
from tests.test_recipes import DATA_FIXTURES, RECIPES, recipe_args

#: One epoch, every step logged, no sanity check. Unlike ``fast_dev_run``, which replaces the loggers by a no-op
#: logger and turns checkpointing off, this logs and checkpoints.
ONE_EPOCH = ("--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0", "--trainer.log_every_n_steps", "1")
#: A run short enough for tests: one epoch of two training batches and two validation batches.
LOGGED_RUN = (*ONE_EPOCH, "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2")
WANDB_LOGGER = ("--trainer.logger", "WandbLogger")


class OneBatchCLI(LitKDCLI):
    """``lit-kd`` running one training and one validation batch, with logging and checkpointing on.

    The limits are set on the trainer because the command line cannot express them: LightningCLI parses
    ``--trainer.limit_train_batches 1`` as 1.0, i.e. the whole epoch.
    """

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.limit_train_batches = trainer.limit_val_batches = 1
        return trainer


def recipe_named(name: str) -> Path:
    return next(recipe for recipe in RECIPES if f"{recipe.parent.name}/{recipe.stem}" == name)


# ----------------------------------------------------------------------------------------- offline run reader
@dataclass
class OfflineRun:
    """What an offline W&B run holds: its config, history rows, model artifacts and local files."""

    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    files_dir: Path = Path()

    def history_keys(self) -> set[str]:
        return {key for row in self.history for key in row}


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of a ``.wandb`` file: header ``:W&B``, magic 0xBEE1, version 0, then a LevelDB log
    (32 KiB blocks of chunks: checksum u32, length u16, type u8 = full 1 / first 2 / middle 3 / last 4)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0), f"{path}: not a .wandb log"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # a block's tail too short for a chunk header is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def set_nested(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def read_offline_run(root: Path) -> OfflineRun:
    """The one offline run under ``root/wandb``."""
    runs = sorted((root / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline run under {root / 'wandb'}, found {runs}"
    run = OfflineRun(files_dir=runs[0] / "files")
    for record in wandb_records(next(runs[0].glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                set_nested(run.config, list(item.nested_key) or [item.key], json.loads(item.value_json))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                set_nested(row, list(item.nested_key) or [item.key], json.loads(item.value_json))
            run.history.append(row)
        elif kind == "artifact":
            metadata = json.loads(record.artifact.metadata)
            run.artifacts.append({"type": record.artifact.type, "aliases": set(record.artifact.aliases), **metadata})
    return run


def finished_offline_run(root: Path) -> OfflineRun:
    """Finish the current run, stop wandb's service (it may still buffer the run's file after ``finish``), read it."""
    import wandb

    wandb.finish()
    wandb.teardown()
    return read_offline_run(root)


#: Every recipe; the Tiny-ImageNet ones (the CIFAR-10 methods again, at 64x64: the logging path is the same) only
#: with ``pytest -m slow``, to keep the default run short. tests/test_recipes.py runs all of them by default.
WANDB_RECIPES = [
    pytest.param(recipe, marks=pytest.mark.slow) if recipe.parent.name == "tiny_imagenet" else recipe
    for recipe in RECIPES
]


# ------------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("recipe", WANDB_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_recipe_logs_config_and_metrics_to_wandb(
    recipe: Path, tmp_path: Path, wandb_mode: Callable[[str], None], request: pytest.FixtureRequest
) -> None:
    from lightning.pytorch.loggers import WandbLogger

    wandb_mode("disabled")
    data_dir = request.getfixturevalue(DATA_FIXTURES[recipe.parent.name])
    cli = OneBatchCLI(args=recipe_args(recipe, data_dir, tmp_path, run_length=ONE_EPOCH + WANDB_LOGGER))
    logger = cli.trainer.logger
    assert isinstance(logger, WandbLogger) and cli.trainer.num_training_batches == 1
    recipe_config = yaml.safe_load(recipe.read_text())
    config = dict(logger.experiment.config)  # disabled mode keeps config and summary in memory, writes nothing
    assert config["model"]["class_path"] == recipe_config["model"]["class_path"]
    assert config["data"]["init_args"]["batch_size"] == 4  # the resolved config: command-line overrides included
    monitored = {
        callback["init_args"]["monitor"]
        for callback in recipe_config["trainer"].get("callbacks", [])
        if callback["class_path"].endswith("Checkpoint") and callback["init_args"].get("monitor")
    }
    summary = dict(logger.experiment.summary)
    assert monitored <= set(summary), f"{sorted(monitored - set(summary))} not logged to W&B"
    assert any(key.startswith("train/") for key in summary)
    if is_overridden("validation_step", cli.model):  # GANs (cGAN-KD stage 1) have no validation
        assert any(key.startswith("val/") for key in summary)
    assert not (tmp_path / "wandb").exists()


def test_offline_distillation_run_holds_config_metrics_and_checkpoint_artifacts(
    tmp_path: Path, wandb_mode: Callable[[str], None], cifar_folder: Path
) -> None:
    wandb_mode("offline")
    recipe = recipe_named("cifar10/kd_resnet56_resnet20")
    # README's flags for checkpoints as artifacts; under WANDB_MODE=offline they are kept for `wandb sync`
    flags = (*LOGGED_RUN, *WANDB_LOGGER, "--trainer.logger.init_args.log_model", "true")
    LitKDCLI(args=recipe_args(recipe, cifar_folder, tmp_path, run_length=flags))
    run = finished_offline_run(tmp_path)
    saved_config = yaml.safe_load((tmp_path / "config.yaml").read_text())  # LightningCLI's file, in save_dir "."
    assert run.config["model"]["class_path"] == "lit_kd.methods.HintonKD"
    assert run.config["model"]["init_args"]["temperature"] == 4.0
    assert {key: run.config[key] for key in saved_config} == saved_config  # the whole resolved config
    assert run.config["alpha"] == 0.9  # the module's own hyperparameters, logged by Lightning, sit next to it
    keys = run.history_keys()
    assert {"train/loss", "train/ce", "train/kd", "train/acc", "val/loss", "val/acc", "val/acc_top5"} <= keys
    assert [row["trainer/global_step"] for row in run.history if "train/loss" in row] == [0, 1]
    assert {artifact["original_filename"] for artifact in run.artifacts} == {"best.ckpt", "last.ckpt"}
    assert all(artifact["type"] == "model" and "latest" in artifact["aliases"] for artifact in run.artifacts)
    best = next(artifact for artifact in run.artifacts if artifact["original_filename"] == "best.ckpt")
    assert (
        "best" in best["aliases"] and best["ResumableCheckpoint"]["monitor"] == "val/acc"
    )  # the recipes' callback class


def test_offline_online_distillation_run_logs_every_network(
    tmp_path: Path, wandb_mode: Callable[[str], None], cifar_folder: Path
) -> None:
    wandb_mode("offline")
    recipe = recipe_named("cifar10/afd_cyclic3_resnet20_resnet32_wrn_16_2")
    LitKDCLI(args=recipe_args(recipe, cifar_folder, tmp_path, run_length=LOGGED_RUN + WANDB_LOGGER))
    run = finished_offline_run(tmp_path)
    assert run.config["model"]["class_path"] == "lit_kd.methods.OnlineAdversarialFeatureKD"
    assert len(run.config["model"]["init_args"]["networks"]) == 3
    per_network = {f"{stage}/net{index}/acc" for stage in ("train", "val") for index in range(3)}
    assert per_network | {"val/best_acc", "val/best_net", "train/loss"} <= run.history_keys()
    assert run.artifacts == []  # log_model is off by default


def test_offline_run_holds_the_boundary_sample_gallery(
    tmp_path: Path, wandb_mode: Callable[[str], None], cifar_folder: Path
) -> None:
    from lightning.pytorch.loggers import WandbLogger

    from tests.methods.test_bss import make_bss

    wandb_mode("offline")
    # two epochs: BSS mines in the first (r_bss = 2/3) and not in the second; the colour teacher is right on the
    # generated images, so there are samples to attack
    trainer = tiny_trainer(
        tmp_path,
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=1,
        logger=WandbLogger(save_dir=tmp_path),
        callbacks=[BoundarySampleGallery()],
    )
    trainer.fit(make_bss(tmp_path), tiny_cifar(cifar_folder, crop_padding=0))
    run = finished_offline_run(tmp_path)
    galleries = [row["bss/boundary_samples"] for row in run.history if "bss/boundary_samples" in row]
    assert len(galleries) == 1  # logged after epoch 0 only: no samples once the boundary weight is 0
    gallery = galleries[0]
    assert gallery["_type"] == "images/separated" and gallery["count"] == 1
    assert " -> " in gallery["captions"][0]
    (filename,) = gallery["filenames"]
    assert filename.startswith("media/images/bss/boundary_samples_")
    with Image.open(run.files_dir / filename) as picture:
        assert picture.size == (gallery["width"], gallery["height"])
        assert picture.width % 98 == 2  # one 96-pixel column per sample plus 2-pixel padding (render_boundary_samples)


NO_WANDB = """
import sys
sys.modules["wandb"] = None  # `import wandb` now raises ImportError, as without the package
from lit_kd.cli import main
main(sys.argv[1:])
assert sys.modules["wandb"] is None
"""


def test_cli_and_default_logger_work_without_wandb(
    tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = recipe_named("cifar10/kd_resnet56_resnet20")
    monkeypatch.chdir(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", NO_WANDB, *recipe_args(recipe, cifar_folder, tmp_path, run_length=LOGGED_RUN)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the default logger (TensorBoard) got the resolved config and the metrics
    (log_dir,) = (tmp_path / "runs" / "cifar10" / "kd_resnet56_resnet20" / "lightning_logs").iterdir()
    hparams = yaml.safe_load((log_dir / "hparams.yaml").read_text())
    assert hparams["model"]["class_path"] == "lit_kd.methods.HintonKD" and hparams["temperature"] == 4.0
    assert yaml.safe_load((log_dir / "config.yaml").read_text())["model"] == hparams["model"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(log_dir)).Reload().Tags()["scalars"]
    assert {"train/loss", "val/acc"} <= set(scalars)
    assert (tmp_path / "checkpoints" / "cifar10" / "kd_resnet56_resnet20" / "last.ckpt").is_file()
