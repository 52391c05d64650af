"""Reported numbers cannot flatter: no test-set model selection, seeds that vary the data, exact DDP evaluation
losses, a cache that cannot serve stale pixels, no duplicate across the UTKFace split, ``overfit_batches`` honoured,
and balanced subsets. One test per way a number could be wrong without any error."""

from __future__ import annotations

import copy
import importlib
import math
import os
import stat
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from PIL import Image

from lit_kd.data import CIFAR10DataModule, UTKFaceDataModule
from lit_kd.data.image_files import load_images_cached
from lit_kd.methods import SupervisedModule
from tests.support import paths
from tests.support.data import class_image, write_jpeg
from tests.support.networks import TinyNet
from tests.support.training import tiny_cifar, tiny_trainer

RECIPES = sorted(paths.RECIPES.glob("*/*.yaml"))


def monitored_checkpoints(recipe: dict) -> list[dict]:
    callbacks = (recipe.get("trainer") or {}).get("callbacks") or []
    return [
        c.get("init_args", {})
        for c in callbacks
        if c["class_path"].endswith("Checkpoint") and c.get("init_args", {}).get("monitor")
    ]


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_best_checkpoint_selection_never_reads_the_test_split(
    recipe_path: Path, cifar_folder: Path, tiny_imagenet_folder: Path, utkface_folder: Path, tmp_path: Path
) -> None:
    recipe = yaml.safe_load(recipe_path.read_text())
    if not monitored_checkpoints(recipe):
        return  # keeps last.ckpt only (or no checkpoint at all): nothing is selected
    folder = {"cifar10": cifar_folder, "tiny_imagenet": tiny_imagenet_folder, "utkface": utkface_folder}
    data_config = recipe["data"]
    assert data_config["class_path"] != "lit_kd.data.DataFreeDataModule", (
        f"{recipe_path}: a data-free run validates on the test split, so it must not select a best checkpoint"
    )
    module_name, class_name = data_config["class_path"].rsplit(".", 1)
    data_class = getattr(importlib.import_module(module_name), class_name)
    val_size = data_config["init_args"].get("val_size", 0)
    data = data_class(folder[recipe_path.parent.name], val_size=val_size, use_cache=False)
    data.setup("fit")
    assert data.val_set is not data.test_set, f"{recipe_path}: best.ckpt would be chosen on the test split"
    test_images = {bytes(image.numpy()) for image in data.load_split("test").images}
    assert not any(bytes(image.numpy()) in test_images for image in data.val_set.images)


def test_two_run_seeds_give_different_data_orders_and_a_data_seed_pins_them(cifar_folder: Path) -> None:
    def first_epoch(run_seed: int, data_seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        pl.seed_everything(run_seed)
        data = tiny_cifar(cifar_folder, batch_size=8, val_size=0.25, seed=data_seed)
        data.setup("fit")
        batches = torch.cat([targets for _, targets in data.train_dataloader()])
        return batches, data.val_set.images

    order0, val0 = first_epoch(0)
    order1, val1 = first_epoch(1)
    assert not torch.equal(order0, order1) and not torch.equal(val0, val1)
    assert torch.equal(first_epoch(0, data_seed=5)[0], first_epoch(1, data_seed=5)[0])


def frozen_sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.0)


def test_two_process_evaluation_loss_equals_the_single_process_loss(tmp_path: Path, cifar_folder: Path) -> None:
    """13 validation images over 2 processes (7 + 6, in batches of 4): the logged loss is the mean over all 13.

    One training step at learning rate 0 (a network without BatchNorm, so nothing moves), then validation.
    """
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    )
    results = []
    for settings in ({}, {"strategy": "ddp_spawn", "devices": 2}):
        pl.seed_everything(0)
        data = tiny_cifar(cifar_folder, batch_size=4, val_size=13, seed=0)
        trainer = tiny_trainer(tmp_path, limit_train_batches=1, **settings)
        module = SupervisedModule(copy.deepcopy(network), num_classes=10, optimizer=frozen_sgd)
        trainer.fit(module, data)
        results.append({key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")})
    single, double = results
    assert double["val/loss"] == pytest.approx(single["val/loss"], rel=1e-6)
    assert double["val/acc"] == pytest.approx(single["val/acc"], rel=1e-6)


class NaNOnShortBatches(torch.nn.Module):
    """A classifier whose logits are NaN on batches of 3 images (a model that diverged on part of a split)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.linear(images.float().mean(dim=(2, 3)))
        return logits * float("nan") if len(images) == 3 else logits


def test_a_nan_evaluation_loss_is_reported_as_nan_not_dropped(tmp_path: Path, cifar_folder: Path) -> None:
    """7 validation images in batches of 4 and 3, the second with NaN logits: val/loss is NaN, not the first's."""
    data = tiny_cifar(cifar_folder, batch_size=4, val_size=7, seed=0)
    (metrics,) = tiny_trainer(tmp_path).validate(SupervisedModule(NaNOnShortBatches(), num_classes=10), data)
    assert math.isnan(metrics["val/loss"])


# ---------------------------------------------------------------------------------------------------- cache
def write_png(path: Path, image: torch.Tensor) -> None:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, compress_level=0)  # same size for same dimensions


def test_same_size_same_mtime_rewrite_is_decoded_again(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    first, second = class_image(1, 32, generator), class_image(7, 32, generator)
    path = tmp_path / "image.png"
    write_png(path, first)
    before = os.stat(path)
    assert torch.equal(load_images_cached([path], (32, 32), tmp_path / "cache", "x")[0], first)
    replacement = tmp_path / "replacement.png"
    write_png(replacement, second)
    path.write_bytes(replacement.read_bytes())  # in place, as cp -p / rsync -a / tar do, then the mtime put back
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert torch.equal(load_images_cached([path], (32, 32), tmp_path / "cache", "x")[0], second)


def test_truncated_cache_file_is_decoded_again_and_cache_files_are_group_readable(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    write_png(path, class_image(2, 32, torch.Generator().manual_seed(1)))
    images = load_images_cached([path], (32, 32), tmp_path / "cache", "x")
    (cache_file,) = (tmp_path / "cache").glob("x-*.pt")
    assert os.stat(cache_file).st_mode & stat.S_IRGRP  # under the usual umask, like the folder's other files
    cache_file.write_bytes(cache_file.read_bytes()[:64])
    with pytest.warns(UserWarning, match="unreadable"):
        assert torch.equal(load_images_cached([path], (32, 32), tmp_path / "cache", "x"), images)


def test_a_failed_cache_save_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "image.png"
    write_png(path, class_image(3, 32, torch.Generator().manual_seed(2)))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        load_images_cached([path], (32, 32), tmp_path / "cache", "x")
    assert list((tmp_path / "cache").iterdir()) == []


# ----------------------------------------------------------------------------------------------- UTKFace
def test_utkface_duplicates_are_removed_before_the_split(tmp_path: Path) -> None:
    """Six pixel-identical pairs (three with different ages): no test face is also a training face."""
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    faces = [class_image(index, 64, generator) for index in range(40)]
    for index, face in enumerate(faces):
        write_jpeg(face, str(folder / f"{20 + index % 30}_0_0_2017{index:010d}.jpg.chip.jpg"))
    for copy_index, index in enumerate(range(6)):  # copies of faces 0..5; the first three with another age
        age = 20 + index % 30 + (1 if copy_index < 3 else 0)
        write_jpeg(faces[index], str(folder / f"{age}_1_0_2018{index:010d}.jpg.chip.jpg"))
    with pytest.warns(UserWarning, match="removed 9 of 46 images.*3 exact duplicates.*6 pixel-identical"):
        data = UTKFaceDataModule(tmp_path, test_size=0.5, use_cache=False)
        data.setup("fit")
    assert data.num_duplicates_removed == 3 and data.num_conflicting_removed == 6
    train = {bytes(image.numpy()) for image in data.train_set.images}
    assert not any(bytes(image.numpy()) in train for image in data.test_set.images)
    assert len(data.train_set.targets) + len(data.test_set.targets) == 37


# ---------------------------------------------------------------------------------------------- overfit
class RecordBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.batches.append(batch[0].clone())


def test_overfit_batches_repeats_identical_unaugmented_batches(tmp_path: Path, cifar_folder: Path) -> None:
    record = RecordBatches()
    data = tiny_cifar(cifar_folder, batch_size=8)
    trainer = tiny_trainer(tmp_path, overfit_batches=2, max_epochs=3, callbacks=[record])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(SupervisedModule(TinyNet()), data)
    # lit-kd's loaders stop shuffling themselves: Lightning's false "enabled ... shuffling" warnings are not shown
    assert not [w for w in caught if "You requested to overfit" in str(w.message)]
    assert len(record.batches) == 6
    for epoch in (1, 2):
        for index in (0, 1):
            assert torch.equal(record.batches[2 * epoch + index], record.batches[index])
    from lit_kd.data.augmentation import normalize

    assert torch.equal(record.batches[0], normalize(data.train_set.images[:8], data.mean, data.std))  # not augmented


# ---------------------------------------------------------------------------------------------- balance
def test_subsets_and_validation_splits_are_balanced_within_one_image_per_class(tmp_path: Path) -> None:
    from lit_kd.data.cifar import CIFAR10_CLASSES
    from tests.support.data import write_class_folders

    write_class_folders(tmp_path / "cifar10" / "train", CIFAR10_CLASSES, per_class=30, size=32, seed=0)
    write_class_folders(tmp_path / "cifar10" / "test", CIFAR10_CLASSES, per_class=1, size=32, seed=1)
    for seed in range(3):
        data = CIFAR10DataModule(tmp_path, subset_size=57, val_size=43, seed=seed, use_cache=False)
        data.setup("fit")
        for split in (data.train_set, data.val_set):
            counts = split.targets.bincount(minlength=10)
            assert counts.max() - counts.min() <= 1, counts.tolist()
        fraction = CIFAR10DataModule(tmp_path, train_fraction=0.5, val_size=0.2, seed=seed, use_cache=False)
        fraction.setup("fit")
        assert fraction.val_set.targets.bincount().tolist() == [3] * 10
        assert fraction.train_set.targets.bincount().tolist() == [12] * 10
