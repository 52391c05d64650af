"""Regression support: UTKFace parsing, MAE/RMSE in years, regression training end to end, limited labels."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import lit_kd.methods
from lit_kd.data import (
    CIFAR10DataModule,
    CorruptDatasetError,
    InMemoryImageDataModule,
    LabelledImages,
    UTKFaceDataModule,
)
from lit_kd.data.fraction import fraction_indices
from lit_kd.methods import HintonKD, SupervisedModule, load_network_weights
from lit_kd.models import CifarResNet, available_models, create_model
from lit_kd.tasks import regression_metrics
from tests.support.data import UTKFACE_AGES, UTKFACE_MALFORMED
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer

IN_RANGE_AGES = sorted(age for age in UTKFACE_AGES if 1 <= age <= 60)


def utkface(root: Path, cache_dir: Path | None = None, **kwargs) -> UTKFaceDataModule:
    kwargs.setdefault("batch_size", 4)
    return UTKFaceDataModule(root, cache_dir=cache_dir, use_cache=cache_dir is not None, **kwargs)


# -------------------------------------------------------------------------------------------------- UTKFace
def test_utkface_reads_ages_from_names_and_scales_them_by_max_age(utkface_folder: Path, cache_dir: Path) -> None:
    dm = utkface(utkface_folder, cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup("fit")
        dm.setup("test")
    train, test = dm.train_set, dm.test_set
    assert dm.task == "regression" and dm.num_classes == 1 and dm.target_scale == 60.0
    assert train.images.shape[1:] == (3, 64, 64) and train.targets.dtype == torch.float32
    assert (len(train.targets), len(test.targets)) == (16, 4)  # test_size 0.2 of the 20 ages in [1, 60]
    ages = sorted(torch.cat([train.targets, test.targets]).mul(60).round().int().tolist())
    assert ages == IN_RANGE_AGES  # 80 is left out: CcGAN keeps ages 1..60
    assert dm.num_out_of_range == 1
    assert float(torch.cat([train.targets, test.targets]).max()) == 1.0  # age 60 / max_age 60
    for image, target in zip(test.images, test.targets, strict=True):  # each image comes with its own file's age
        (path,) = (utkface_folder / "UTKFace").glob(f"{round(target.item() * 60)}_*")  # one file per age
        assert torch.equal(image, torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))


def test_utkface_split_is_seeded_and_independent_of_the_training_seed(utkface_folder: Path) -> None:
    def test_ages(**kwargs) -> list[float]:
        dm = utkface(utkface_folder, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sorted(dm.load_split("test").targets.tolist())

    assert test_ages(split_seed=0) == test_ages(split_seed=0, seed=7)
    assert test_ages(split_seed=0) != test_ages(split_seed=1)
    assert len(test_ages(test_size=0.5)) == 10


def test_malformed_names_are_counted_and_skipped_with_one_warning(utkface_folder: Path) -> None:
    dm = utkface(utkface_folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
        dm.setup("test")
    messages = [str(warning.message) for warning in caught if "break" in str(warning.message)]
    assert len(messages) == 1 and "skipped 2 file(s)" in messages[0]
    assert dm.skipped_files == sorted(UTKFACE_MALFORMED)
    assert len(dm.train_set.targets) + len(dm.test_set.targets) == 20  # README.txt ignored, nothing guessed


def test_utkface_errors_name_the_folder_and_the_bad_values(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="UTKFace"):
        utkface(tmp_path).setup("fit")
    (tmp_path / "UTKFace").mkdir()
    (tmp_path / "UTKFace" / "61_1_20170109142408075.jpg.chip.jpg").write_bytes(b"")
    with pytest.raises(CorruptDatasetError, match="1 malformed names"):
        utkface(tmp_path).setup("fit")
    with pytest.raises(ValueError, match="test_size"):
        UTKFaceDataModule(tmp_path, test_size=1.0)
    with pytest.raises(ValueError, match="max_age"):
        UTKFaceDataModule(tmp_path, min_age=30, max_age=20)


class GeneratedRegression(InMemoryImageDataModule):
    """A regression DataModule whose targets are given in memory (for checks of the base class)."""

    task = "regression"
    num_classes = 1
    image_size = 32
    mean = std = (0.5, 0.5, 0.5)

    def __init__(self, targets: torch.Tensor, **kwargs) -> None:
        super().__init__(use_cache=False, **kwargs)
        self.targets = targets

    def load_split(self, split: str) -> LabelledImages:
        return LabelledImages(torch.zeros(len(self.targets), 3, 32, 32, dtype=torch.uint8), self.targets)


def test_regression_targets_must_be_finite_floats_and_need_a_target_scale(tmp_path: Path) -> None:
    with pytest.raises(CorruptDatasetError, match="dtype torch.int64"):
        GeneratedRegression(torch.arange(4)).setup("fit")
    with pytest.raises(CorruptDatasetError, match="non-finite"):
        GeneratedRegression(torch.tensor([0.5, float("nan")])).setup("fit")
    module = SupervisedModule(TinyNet(num_classes=1))
    with pytest.raises(ValueError, match="no target_scale"):
        tiny_trainer(tmp_path, fast_dev_run=1).fit(module, GeneratedRegression(torch.rand(8), batch_size=4))


# -------------------------------------------------------------------------------------------------- metrics
def test_mae_and_rmse_are_in_years_and_accumulate_over_the_epoch() -> None:
    metrics = regression_metrics("val/", target_scale=60.0)
    metrics.update(torch.tensor([[0.5], [0.25]]), torch.tensor([0.25, 0.25]))  # errors 15 and 0 years
    metrics.update(torch.tensor([[1.0]]), torch.tensor([0.5]))  # error 30 years
    result = {name: value.item() for name, value in metrics.compute().items()}
    assert result["val/mae"] == pytest.approx(15.0)
    assert result["val/rmse"] == pytest.approx(math.sqrt((15**2 + 0**2 + 30**2) / 3))


def test_task_loss_is_mse_on_scaled_targets_for_regression_and_cross_entropy_otherwise() -> None:
    module = SupervisedModule(TinyNet(num_classes=1))
    outputs, targets = torch.tensor([[0.5], [0.25]]), torch.tensor([0.25, 0.75])
    assert module.task_loss(torch.randn(3, 10), torch.tensor([1, 2, 3])).item() > 0  # classification by default
    module.task = "regression"
    assert module.task_loss(outputs, targets).item() == pytest.approx((0.25**2 + 0.5**2) / 2)
    logits, labels = torch.randn(3, 10), torch.tensor([1, 2, 3])
    module.task = "classification"
    assert torch.equal(module.task_loss(logits, labels), F.cross_entropy(logits, labels))


# -------------------------------------------------------------------------------------------------- models
def test_every_zoo_network_is_a_one_output_regressor() -> None:
    for name in available_models():
        with torch.device("meta"):  # built without initialising the weights (seconds for wrn_28_10), then allocated
            network = create_model(name, num_classes=1)
        network = network.to_empty(device="cpu").eval()
        for size in (32, 64) if isinstance(network, CifarResNet) else (32,):
            with torch.no_grad():
                assert network(torch.zeros(1, 3, size, size)).shape == (1, 1), (name, size)
    network = create_model("resnet8", num_classes=1).eval()
    with torch.no_grad():
        assert network(torch.rand(2, 3, 64, 64)).shape == (2, 1)
    SupervisedModule(network, num_classes=1).check_output_sizes((3, 64, 64))
    with pytest.raises(ValueError, match="outputs 10 classes but the data has 1"):
        SupervisedModule(create_model("resnet8", num_classes=10), num_classes=1).check_output_sizes((3, 64, 64))


# -------------------------------------------------------------------------------------------------- training
def test_supervised_regression_end_to_end_logs_mae_in_years(utkface_folder: Path, tmp_path: Path) -> None:
    module = SupervisedModule(create_model("resnet8", num_classes=1))
    dm = utkface(utkface_folder, batch_size=8, eval_batch_size=4)
    trainer = tiny_trainer(tmp_path, fast_dev_run=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, dm)
    assert module.task == "regression" and module.target_scale == 60.0
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/mae", "val/rmse", "train/mae"} <= set(metrics)
    images, targets = next(iter(dm.val_dataloader()))  # fast_dev_run validates on one batch
    images, targets = dm.on_after_batch_transfer((images, targets), 0)
    module.eval()
    with torch.no_grad():
        predictions = module(images)[:, 0]
    assert metrics["val/mae"].item() == pytest.approx((predictions - targets).abs().mean().item() * 60, rel=1e-4)
    assert metrics["val/loss"].item() == pytest.approx(F.mse_loss(predictions, targets).item(), rel=1e-4)
    trainer.save_checkpoint(tmp_path / "teacher.ckpt")  # a regression teacher for a later stage
    teacher = create_model("resnet8", num_classes=1)
    load_network_weights(teacher, tmp_path / "teacher.ckpt")
    with torch.no_grad():
        assert torch.allclose(teacher.eval()(images)[:, 0], predictions)


def test_regression_gradients_reach_every_student_parameter() -> None:
    module = SupervisedModule(TinyNet(num_classes=1))
    module.task = "regression"
    losses, outputs = module.training_losses(torch.randn(4, 3, 64, 64), torch.rand(4))
    losses["loss"].backward()
    assert outputs.shape == (4, 1)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.student.parameters())


def test_hinton_kd_refuses_a_regression_datamodule(utkface_folder: Path, tmp_path: Path) -> None:
    teacher = save_state_dict(TinyNet(num_classes=1), tmp_path / "teacher.pt")
    module = HintonKD(TinyNet(num_classes=1), TinyNet(num_classes=1), teacher_checkpoint=str(teacher))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"HintonKD supports only classification.*UTKFaceDataModule"):
            tiny_trainer(tmp_path, fast_dev_run=1).fit(module, utkface(utkface_folder))


@pytest.mark.parametrize(
    "method",
    [
        "HintonKD",
        "SelfDistillation",
        "BSSDistillation",
        "DeepMutualLearning",
        "OnlineAdversarialFeatureKD",
        "EnsembleDistillation",
        "SeedEnsembleModule",
        "FitNets",
        "AttentionTransfer",
        "ActivationMapAdaptation",
    ],
)
def test_methods_built_on_cross_entropy_or_softmax_refuse_regression(method: str) -> None:
    cls = getattr(lit_kd.methods, method)
    assert cls.supported_tasks == ("classification",)
    assert "regression" in SupervisedModule.supported_tasks


# -------------------------------------------------------------------------------------------------- limited labels
def test_train_fraction_keeps_the_same_share_of_every_class(cifar_folder: Path, cache_dir: Path) -> None:
    full = tiny_cifar(cifar_folder, cache_dir=cache_dir, use_cache=True)
    full.setup("fit")
    half = tiny_cifar(cifar_folder, cache_dir=cache_dir, use_cache=True, train_fraction=0.5, seed=3)
    half.setup("fit")
    assert torch.equal(half.train_set.targets.bincount(), torch.full((10,), 4))  # 8 per class -> 4
    assert len(half.val_set.targets) == 40  # val_size 0: the test split, untouched
    again = tiny_cifar(cifar_folder, cache_dir=cache_dir, use_cache=True, train_fraction=0.5, seed=3)
    again.setup("fit")
    assert torch.equal(again.train_set.images, half.train_set.images)
    one = tiny_cifar(cifar_folder, cache_dir=cache_dir, use_cache=True, train_fraction=1.0)
    one.setup("fit")
    assert torch.equal(one.train_set.images, full.train_set.images)  # fraction 1 changes nothing
    held_out = tiny_cifar(cifar_folder, cache_dir=cache_dir, use_cache=True, train_fraction=0.5, val_size=10)
    held_out.setup("fit")
    assert len(held_out.train_set.targets) + len(held_out.val_set.targets) == 40  # val comes out of the kept half


def test_fraction_indices_stratify_classes_and_not_regression_targets() -> None:
    targets = torch.tensor([0] * 50 + [1] * 30 + [2] * 4)
    kept = fraction_indices(targets, 0.1, seed=0, stratified=True)
    assert targets[kept].bincount().tolist() == [5, 3, 1]  # 0.4 rounds to 0: at least one kept
    assert torch.equal(kept, kept.sort().values) and len(kept.unique()) == len(kept)
    assert not torch.equal(kept, fraction_indices(targets, 0.1, seed=1, stratified=True))
    assert len(fraction_indices(torch.rand(84), 0.25, seed=0, stratified=False)) == 21


def test_train_fraction_on_regression_and_its_validation(utkface_folder: Path) -> None:
    dm = utkface(utkface_folder, train_fraction=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup("fit")
    assert len(dm.train_set.targets) == 8  # half of the 16 training images
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="train_fraction"):
            CIFAR10DataModule("data", train_fraction=bad)


# -------------------------------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_real_utkface_counts(tmp_path: Path) -> None:
    root = Path("~/.cache/lit-kd").expanduser()
    if not (root / "UTKFace").is_dir():
        pytest.skip(f"{root / 'UTKFace'} is not on this machine (extract ../shared/data/utkface-64.tar.gz there)")
    dm = UTKFaceDataModule(root, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match="skipped 2 file"):
        dm.setup("fit")
    assert dm.skipped_files == ["61_1_20170109142408075.jpg.chip.jpg", "61_3_20170109150557335.jpg.chip.jpg"]
    assert dm.num_out_of_range == 1313  # 9,778 well-named files, 8,465 aged 1..60
    assert (len(dm.train_set.targets), len(dm.test_set.targets)) == (6772, 1693)
    assert dm.train_set.images.shape[1:] == (3, 64, 64)
    ages = dm.train_set.targets * dm.target_scale
    assert ages.min() == 1 and ages.max() == 60
