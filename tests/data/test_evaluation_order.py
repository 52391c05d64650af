"""Partial evaluation does not lie: every split is stored in a seeded, stratified order.

The data is generated with class-sorted (or age-sorted) file names, the order that made the first CIFAR-10 test
batches all airplanes. The first evaluation batch must then hold every class in its share of the split (within one
image), or an age spread close to the whole split's; full-split metrics must not change.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_kd.data import CIFAR10DataModule, DataFreeDataModule, TinyImageNetDataModule, UTKFaceDataModule
from lit_kd.data.augmentation import normalize
from lit_kd.data.cifar import CIFAR10_CLASSES
from lit_kd.data.order import stratified_order
from tests.support.data import class_image, write_class_folders, write_jpeg
from tests.support.networks import TinyNet


def first_batch_counts(data, batch_size: int, loader: str = "test_dataloader") -> torch.Tensor:
    _, targets = next(iter(getattr(data, loader)()))
    return targets.bincount(minlength=data.num_classes)


@pytest.fixture(scope="module")
def sorted_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-10 folders, 12 train and 20 test images per class, listed class after class."""
    root = tmp_path_factory.mktemp("sorted_cifar")
    write_class_folders(root / "cifar10" / "train", CIFAR10_CLASSES, per_class=12, size=32, seed=0)
    write_class_folders(root / "cifar10" / "test", CIFAR10_CLASSES, per_class=20, size=32, seed=1)
    return root


def test_cifar_folders_first_test_batch_holds_every_class(sorted_cifar: Path) -> None:
    data = CIFAR10DataModule(sorted_cifar, batch_size=20, use_cache=False)
    data.setup("test")
    counts = first_batch_counts(data, 20)
    assert counts.tolist() == [2] * 10  # 20 images of 10 balanced classes: 2 each (sorted order: 20 airplanes)


def test_cifar_held_out_validation_prefix_holds_every_class(sorted_cifar: Path) -> None:
    data = CIFAR10DataModule(sorted_cifar, batch_size=10, val_size=0.5, use_cache=False)
    data.setup("fit")
    assert data.val_set.targets.bincount().tolist() == [6] * 10
    assert first_batch_counts(data, 10, "val_dataloader").tolist() == [1] * 10


def test_cifar_pickles_are_stored_in_a_stratified_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Official-format batches whose labels come sorted (the real ones are mixed): the stored order mixes them."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.random.default_rng(0).integers(0, 256, (40, 3072), dtype=np.uint8)
    labels = sorted(i % 10 for i in range(40))
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels}, handle)
    with open(folder / CIFAR10.meta["filename"], "wb") as handle:
        pickle.dump({"label_names": list(range(10))}, handle)
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    dm = CIFAR10DataModule(tmp_path, batch_size=10)
    dm.setup("test")
    assert first_batch_counts(dm, 10).tolist() == [1] * 10


def test_tiny_imagenet_first_test_batch_holds_every_class(tmp_path: Path) -> None:
    """Two validation images per class, annotated class after class: the first 200 hold each class once."""
    root = tmp_path / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(200)]
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    write_class_folders(root / "train", wnids, per_class=1, size=64, seed=2, inner_dir="images")
    (root / "val" / "images").mkdir(parents=True)
    generator, lines = torch.Generator().manual_seed(3), []
    for index, wnid in enumerate(wnids):
        for copy in range(2):
            name = f"val_{2 * index + copy}.JPEG"
            write_jpeg(class_image(index, 64, generator), str(root / "val" / "images" / name))
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    data = TinyImageNetDataModule(tmp_path, batch_size=200, use_cache=False)
    data.setup("test")
    assert first_batch_counts(data, 200).tolist() == [1] * 200


def write_utkface(folder: Path, ages: list[int]) -> None:
    """UTKFace-named faces, named (and so listed) in order of age."""
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(5)
    for index, age in enumerate(ages):
        write_jpeg(class_image(index, 64, generator), str(folder / f"{age}_0_0_2017{index:010d}.jpg.chip.jpg"))


def test_utkface_first_test_batch_spans_the_ages(tmp_path: Path) -> None:
    write_utkface(tmp_path / "UTKFace", [age for age in range(1, 61) for _ in range(2)])  # 120 faces
    data = UTKFaceDataModule(tmp_path, batch_size=8, test_size=0.5, use_cache=False)
    data.setup("test")
    whole = data.test_set.targets * 60
    _, first = next(iter(data.test_dataloader()))
    first = first * 60
    # 8 ages from each tenth of the age range, as the whole split has them: spread close to the whole split's
    assert abs(first.mean() - whole.mean()) < 6 and abs(first.std() - whole.std()) < 5
    assert first.min() < whole.quantile(0.2) and first.max() > whole.quantile(0.8)


def test_data_free_evaluation_uses_the_stratified_test_split(sorted_cifar: Path) -> None:
    data = DataFreeDataModule(CIFAR10DataModule(sorted_cifar, eval_batch_size=20, use_cache=False), latent_dim=4)
    data.setup("fit")
    _, targets = next(iter(data.val_dataloader()))
    assert targets.bincount(minlength=10).tolist() == [2] * 10


def test_stored_order_is_seeded_and_independent_of_the_listing(sorted_cifar: Path) -> None:
    first = CIFAR10DataModule(sorted_cifar, use_cache=False)
    first.setup("test")
    raw = first.load_split("test")
    shuffled = torch.randperm(len(raw.targets), generator=torch.Generator().manual_seed(7))
    # the same split listed in another order gets the same stored order of classes, and the same images
    order = stratified_order(raw.targets[shuffled], seed=0)
    assert torch.equal(raw.targets[shuffled][order], first.test_set.targets)
    other = CIFAR10DataModule(sorted_cifar, use_cache=False, order_seed=1)
    other.setup("test")
    assert not torch.equal(other.test_set.images, first.test_set.images)


def test_full_split_accuracy_is_unchanged_by_the_order(sorted_cifar: Path) -> None:
    torch.manual_seed(0)
    network = TinyNet(num_classes=10).eval()
    data = CIFAR10DataModule(sorted_cifar, use_cache=False)
    data.setup("test")

    def accuracy(images: torch.Tensor, targets: torch.Tensor) -> float:
        with torch.no_grad():
            return (network(normalize(images, data.mean, data.std)).argmax(1) == targets).float().mean().item()

    raw = data.load_split("test")  # the listing's order
    assert accuracy(*data.test_set) == accuracy(*raw)
    assert sorted(map(bytes, data.test_set.images.flatten(1).numpy())) == sorted(
        map(bytes, raw.images.flatten(1).numpy())
    )
