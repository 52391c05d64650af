from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from lit_kd.data import (
    CIFAR10DataModule,
    CorruptDatasetError,
    ShardedBatchSampler,
    TinyImageNetDataModule,
    normalize,
    random_crop_flip,
)


# ------------------------------------------------------------------------------------------ augmentation
def test_crop_is_a_window_of_the_zero_padded_image() -> None:
    image = torch.arange(1, 17, dtype=torch.uint8).reshape(1, 1, 4, 4)
    batch = image.repeat(64, 1, 1, 1)
    cropped = random_crop_flip(batch, padding=1, horizontal_flip=False, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1))[0, 0]
    windows = {tuple(padded[y : y + 4, x : x + 4].flatten().tolist()) for y in range(3) for x in range(3)}
    seen = {tuple(crop[0].flatten().tolist()) for crop in cropped}
    assert seen <= windows
    assert len(seen) > 4  # offsets are drawn per image, not once per batch


def test_flip_mirrors_about_half_the_images() -> None:
    batch = torch.arange(2, dtype=torch.uint8).reshape(1, 1, 1, 2).repeat(1000, 1, 1, 1)
    out = random_crop_flip(batch, padding=0, horizontal_flip=True, generator=torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == 1).float().mean().item()
    assert 0.45 < flipped < 0.55
    assert set(map(tuple, out[:, 0, 0].tolist())) == {(0, 1), (1, 0)}


def test_normalize_matches_hand_computation() -> None:
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).reshape(1, 3, 1, 1)
    out = normalize(images, mean=(0.0, 0.1, 0.5), std=(1.0, 0.2, 0.5))
    assert torch.allclose(out.flatten(), torch.tensor([0.0, (0.2 - 0.1) / 0.2, 1.0]))


# ------------------------------------------------------------------------------------------ sampler
def test_shards_partition_the_data_and_change_every_epoch() -> None:
    samplers = [ShardedBatchSampler(10, 2, shuffle=True, drop_last=False, seed=3, rank=r, world_size=2) for r in (0, 1)]
    epoch0 = [torch.cat(list(s)) for s in samplers]
    assert sorted(torch.cat(epoch0).tolist()) == list(range(10))
    for sampler in samplers:
        sampler.set_epoch(1)
    epoch1 = [torch.cat(list(s)) for s in samplers]
    assert not torch.equal(epoch0[0], epoch1[0])
    again = ShardedBatchSampler(10, 2, shuffle=True, drop_last=False, seed=3, rank=0, world_size=2)
    assert torch.equal(torch.cat(list(again)), epoch0[0])


def test_even_shards_give_every_rank_the_same_number_of_batches() -> None:
    lengths = [
        len(list(ShardedBatchSampler(11, 2, True, False, even_shards=True, rank=r, world_size=3))) for r in range(3)
    ]
    assert lengths == [2, 2, 2]
    assert len(ShardedBatchSampler(11, 2, True, False, even_shards=True, rank=2, world_size=3)) == 2


def test_skip_consumed_resumes_inside_the_epoch_once() -> None:
    sampler = ShardedBatchSampler(12, 3, shuffle=True, drop_last=True, seed=0)
    full = list(sampler)
    sampler.skip_consumed(epoch=0, batches=2)
    resumed = list(sampler)
    assert [b.tolist() for b in resumed] == [b.tolist() for b in full[2:]]
    assert len(list(sampler)) == 4  # only once


# ------------------------------------------------------------------------------------------ CIFAR-10
def test_cifar_image_folder_loads_with_labels_from_folders(cifar_folder: Path, cache_dir: Path) -> None:
    dm = CIFAR10DataModule(cifar_folder, batch_size=16, cache_dir=cache_dir)
    dm.setup("fit")
    assert dm.train_set.images.shape == (80, 3, 32, 32)
    assert dm.train_set.images.dtype == torch.uint8
    assert torch.equal(dm.train_set.targets.bincount(), torch.full((10,), 8))
    assert dm.val_set is dm.test_set and len(dm.test_set.targets) == 40
    # the class colour survives: label 3's mean red value is (3 * 37) % 256
    red = dm.train_set.images[dm.train_set.targets == 3][:, 0].float().mean()
    assert abs(red.item() - 111) < 8


def test_validation_split_and_subset_are_disjoint_and_seeded(cifar_folder: Path, cache_dir: Path) -> None:
    dm = CIFAR10DataModule(cifar_folder, val_size=0.25, subset_size=30, seed=5, cache_dir=cache_dir)
    dm.setup("fit")
    assert len(dm.val_set.targets) == 20 and len(dm.train_set.targets) == 30
    train = {tuple(x.flatten()[:40].tolist()) for x in dm.train_set.images}
    val = {tuple(x.flatten()[:40].tolist()) for x in dm.val_set.images}
    assert not train & val
    same = CIFAR10DataModule(cifar_folder, val_size=0.25, subset_size=30, seed=5, cache_dir=cache_dir)
    same.setup("fit")
    assert torch.equal(same.train_set.images, dm.train_set.images)


def test_batches_are_augmented_only_in_training(cifar_folder: Path, cache_dir: Path) -> None:
    dm = CIFAR10DataModule(cifar_folder, batch_size=8, cache_dir=cache_dir)
    dm.setup("fit")
    images, targets = next(iter(dm.val_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
    out, _ = dm.on_after_batch_transfer((images, targets), 0)  # no trainer: evaluation path
    assert out.dtype == torch.float32
    assert torch.allclose(out, normalize(images, dm.mean, dm.std))


def test_return_indices_gives_training_batches_their_indices_into_the_train_set(
    cifar_folder: Path, cache_dir: Path
) -> None:
    """Training batches become (images, targets, indices), sharded and resumable like the rest; evaluation unchanged."""
    shards = []
    for rank in (0, 1):
        dm = CIFAR10DataModule(cifar_folder, batch_size=8, cache_dir=cache_dir, return_indices=True)
        dm.setup("fit")
        dm._rank_and_world = lambda rank=rank: (rank, 2)
        batches = list(dm.train_dataloader())
        assert all(len(batch) == 3 for batch in batches)
        for images, targets, indices in batches:
            assert torch.equal(images, dm.train_set.images[indices]) and torch.equal(
                targets, dm.train_set.targets[indices]
            )
        shards.append(torch.cat([indices for _, _, indices in batches]))
        assert all(len(batch) == 2 for batch in dm.val_dataloader())
        dm.load_state_dict({"epoch": 0, "batches": 2})  # a resumed run skips the batches already consumed
        assert [b[2].tolist() for b in dm.train_dataloader()] == [b[2].tolist() for b in batches[2:]]
    assert sorted(torch.cat(shards).tolist()) == list(range(80))
    images, targets, indices = batches[0]
    out = dm.on_after_batch_transfer((images, targets, indices), 0)
    assert len(out) == 3 and out[1] is targets and out[2] is indices and out[0].dtype == torch.float32


def test_decoded_cache_is_reused_and_invalidated(cifar_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(cifar_folder, data)
    cache = tmp_path / "cache"
    CIFAR10DataModule(data, cache_dir=cache).setup("fit")
    assert len(list(cache.glob("cifar10-*.pt"))) == 2
    victim = data / "cifar10" / "train" / "cat" / "0000.jpg"
    shutil.copy(data / "cifar10" / "train" / "dog" / "0000.jpg", victim)
    dm = CIFAR10DataModule(data, cache_dir=cache)
    dm.setup("fit")
    assert len(list(cache.glob("cifar10-train-*.pt"))) == 2  # the edited file invalidated the old entry


def test_missing_data_names_the_path_and_the_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*cifar10/\{train,test\}"):
        CIFAR10DataModule(tmp_path / "nowhere").setup("fit")


def test_corrupt_image_is_named(cifar_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(cifar_folder, data)
    broken = data / "cifar10" / "train" / "bird" / "0003.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(CorruptDatasetError, match="bird/0003.jpg"):
        CIFAR10DataModule(data, use_cache=False).setup("fit")


def test_wrong_image_size_is_named(cifar_folder: Path, tmp_path: Path) -> None:
    from tests.support.data import write_jpeg

    data = tmp_path / "data"
    shutil.copytree(cifar_folder, data)
    write_jpeg(torch.zeros(3, 28, 28, dtype=torch.uint8), str(data / "cifar10" / "train" / "frog" / "0001.jpg"))
    with pytest.raises(CorruptDatasetError, match=r"frog/0001.jpg is \(28, 28\) pixels, expected \(32, 32\)"):
        CIFAR10DataModule(data, use_cache=False).setup("fit")


def test_unexpected_class_folder_is_refused(cifar_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(cifar_folder, data)
    (data / "cifar10" / "train" / "unicorn").mkdir()
    with pytest.raises(CorruptDatasetError, match="unicorn"):
        CIFAR10DataModule(data, use_cache=False).setup("fit")


def _write_official_batches(root: Path) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(20)]
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels}, handle)
    with open(folder / CIFAR10.meta["filename"], "wb") as handle:
        pickle.dump({"label_names": list(range(10))}, handle)
    return data, labels


def test_official_batches_are_read_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, labels = _write_official_batches(tmp_path)
    # our fake batches have other checksums than the official ones
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    dm = CIFAR10DataModule(tmp_path)
    dm.setup("fit")
    assert dm.train_set.images.shape == (100, 3, 32, 32)
    raw = dm.load_split("train")  # the file's order; setup stores it in a stratified order
    expected = torch.from_numpy(data[0].reshape(3, 32, 32))
    assert torch.equal(raw.images[0], expected)
    assert raw.targets[:20].tolist() == labels


def test_official_batches_with_bad_checksums_are_refused(tmp_path: Path) -> None:
    _write_official_batches(tmp_path)
    with pytest.raises(CorruptDatasetError, match="checksum"):
        CIFAR10DataModule(tmp_path).setup("fit")


# ------------------------------------------------------------------------------------------ Tiny-ImageNet
def test_tiny_imagenet_official_layout(tiny_imagenet_folder: Path, cache_dir: Path) -> None:
    dm = TinyImageNetDataModule(tiny_imagenet_folder, cache_dir=cache_dir)
    dm.setup("fit")
    assert dm.train_set.images.shape == (200, 3, 64, 64)
    assert dm.load_split("test").targets.tolist() == list(range(200))  # val_i is labelled with the i-th sorted wnid
    assert dm.input_shape == (3, 64, 64)


def test_tiny_imagenet_bad_annotation_line_is_named(tiny_imagenet_folder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_imagenet_folder, data)
    annotations = data / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    lines[4] = "val_4.JPEG\tn99999999\t0\t0\t1\t1"
    annotations.write_text("\n".join(lines))
    with pytest.raises(CorruptDatasetError, match=r"val_annotations.txt:5"):
        TinyImageNetDataModule(data, use_cache=False).setup("test")


def test_tiny_imagenet_missing_wnids(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="wnids.txt"):
        TinyImageNetDataModule(tmp_path).setup("fit")
