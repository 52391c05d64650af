"""CRD as a method: its loss by hand, where gradients go, the bank, and sample indices from any data."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lit_kd.data import WithIndices
from lit_kd.methods import ContrastiveRepresentationDistillation
from lit_kd.models import create_model
from tests.support.networks import TinyNet
from tests.support.training import tiny_cifar, tiny_trainer

NUM_SAMPLES = 20


def tiny_crd(**kwargs) -> ContrastiveRepresentationDistillation:
    torch.manual_seed(0)
    module = ContrastiveRepresentationDistillation(
        TinyNet(), TinyNet(width=16), feature_dim=8, num_negatives=6, channels_last=False, **kwargs
    )
    module.configure_contrast(NUM_SAMPLES, labels=torch.arange(NUM_SAMPLES) % 10)
    return module


def banks(module: ContrastiveRepresentationDistillation) -> list[torch.Tensor]:
    return [module.crd.memory.student_bank.clone(), module.crd.memory.teacher_bank.clone()]


@pytest.mark.filterwarnings("ignore:.*teacher_checkpoint is None")
def test_training_losses_equal_ce_plus_weighted_crd_by_hand() -> None:
    module = tiny_crd()
    images, targets, indices = torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 3, 4])
    contrast_indices = module.crd.memory.sample_contrast_indices(indices, torch.Generator().manual_seed(1))
    by_hand = copy.deepcopy(module.crd)  # the same embeddings and banks, before this batch updates them
    losses, logits = module.training_losses(images, targets, indices, contrast_indices)

    student, teacher = module.student, module.teacher
    expected_crd = by_hand(student.body(images), teacher.body(images).detach(), indices, contrast_indices)
    expected = F.cross_entropy(student(images), targets) + 0.8 * expected_crd
    torch.testing.assert_close(losses["crd"], expected_crd)
    torch.testing.assert_close(losses["loss"], expected)
    torch.testing.assert_close(logits, student(images))
    for ours, theirs in zip(banks(module), [by_hand.memory.student_bank, by_hand.memory.teacher_bank], strict=True):
        torch.testing.assert_close(ours, theirs)  # both updated the banks with the same batch


@pytest.mark.filterwarnings("ignore:.*teacher_checkpoint is None")
def test_features_are_the_classifier_input_or_a_named_layer() -> None:
    student, teacher = create_model("resnet8", num_classes=10), TinyNet(width=16)
    module = ContrastiveRepresentationDistillation(student, teacher, teacher_layer="body.4", num_negatives=4)
    assert module.student_taps.layers == ["classifier"] and module.teacher_taps.layers == ["body.4"]
    assert module.feature_sizes == (student.embedding_dim, 16)
    images = torch.randn(2, 3, 32, 32)
    student.eval()
    _, (features,) = module.student_taps(images)
    torch.testing.assert_close(features, student.forward_features(images).embedding)


@pytest.mark.filterwarnings("ignore:.*teacher_checkpoint is None")
def test_gradients_reach_the_student_and_both_embeddings_never_the_teacher() -> None:
    module = tiny_crd(ce_weight=0.0)  # only the CRD term: the student's gradient comes through it
    losses, _ = module.training_losses(torch.randn(4, 3, 32, 32), torch.arange(4), torch.arange(4))
    losses["loss"].backward()
    for name, parameter in module.named_parameters():
        if name.startswith("teacher."):
            assert parameter.grad is None, name
        elif name.startswith(("student.body", "crd.")):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.filterwarnings("ignore:.*teacher_checkpoint is None")
def test_the_bank_changes_only_in_training_mode() -> None:
    module = tiny_crd()
    before = banks(module)
    batch = (torch.randn(4, 3, 32, 32), torch.arange(4), torch.arange(4))
    module.eval()
    module.training_losses(*batch)
    assert all(torch.equal(a, b) for a, b in zip(before, banks(module), strict=True))
    module.train()
    module.training_losses(*batch)
    after = banks(module)
    for old, new in zip(before, after, strict=True):
        assert not torch.equal(old[:4], new[:4]) and torch.equal(old[4:], new[4:])  # only the batch's rows


class RecordBatches(pl.Callback):
    def __init__(self) -> None:
        self.train: list[tuple] = []
        self.val: list[tuple] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.train.append(tuple(batch))

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        self.val.append(tuple(batch))


def crd_for_cifar(work_dir: Path, **kwargs) -> ContrastiveRepresentationDistillation:
    torch.manual_seed(3)
    teacher = TinyNet(width=16)
    torch.save(teacher.state_dict(), work_dir / "teacher.pt")
    return ContrastiveRepresentationDistillation(
        TinyNet(),
        TinyNet(width=16),
        feature_dim=8,
        num_negatives=16,
        teacher_checkpoint=str(work_dir / "teacher.pt"),
        **kwargs,
    )


def test_indices_flow_from_a_lit_kd_datamodule_and_the_banks_resume(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    module, data, record = crd_for_cifar(tmp_path), tiny_cifar(cifar_folder), RecordBatches()
    trainer = tiny_trainer(tmp_path, limit_val_batches=1, callbacks=[record])
    trainer.fit(module, data)
    assert data.return_indices and len(record.train) == 5 and all(len(batch) == 2 for batch in record.val)
    seen = torch.cat([indices for _, _, indices in record.train])
    assert sorted(seen.tolist()) == list(range(80))  # every training sample once, by its index into train_set
    for _, targets, indices in record.train:
        assert torch.equal(targets, data.train_set.targets[indices])
    assert module.crd.memory.num_samples == 80 and torch.equal(module.crd.memory.labels, data.train_set.targets)
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in module.crd.parameters())  # configure_optimizers ran after setup
    assert module.crd.memory.student_normalizer > 0

    trainer.save_checkpoint(tmp_path / "crd.ckpt")
    loaded = ContrastiveRepresentationDistillation.load_from_checkpoint(
        tmp_path / "crd.ckpt", student=TinyNet(), teacher=TinyNet(width=16), weights_only=True
    )
    for key, value in module.crd.state_dict().items():
        assert torch.equal(loaded.crd.state_dict()[key], value), key


class OwnData(pl.LightningDataModule):
    """A user's DataModule over a torch Dataset (normalised float images), optionally wrapped in WithIndices."""

    num_classes = 10

    def __init__(self, with_indices: bool) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.dataset = TensorDataset(torch.randn(24, 3, 32, 32, generator=generator), torch.arange(24) % 10)
        self.dataset.targets = self.dataset.tensors[1]  # as torchvision's datasets have
        self.with_indices = with_indices

    def train_dataloader(self) -> DataLoader:
        dataset = WithIndices(self.dataset) if self.with_indices else self.dataset
        return DataLoader(dataset, batch_size=8, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=8)  # evaluation batches stay (images, targets)


def test_indices_flow_from_a_users_dataset_wrapped_in_with_indices(tmp_path: Path) -> None:
    pl.seed_everything(0)
    module, record = crd_for_cifar(tmp_path), RecordBatches()
    before = module.crd
    trainer = tiny_trainer(tmp_path, limit_val_batches=1, callbacks=[record])
    trainer.fit(module, OwnData(with_indices=True))
    assert all(len(batch) == 2 for batch in record.val)
    assert before is None and module.crd.memory.num_samples == 24
    assert torch.equal(module.crd.memory.labels, torch.arange(24) % 10)
    assert sorted(torch.cat([indices for _, _, indices in record.train]).tolist()) == list(range(24))
    for images, _, indices in record.train:
        torch.testing.assert_close(images, OwnData(with_indices=True).dataset.tensors[0][indices])


def test_a_batch_without_indices_fails_at_the_first_training_batch_in_one_line(tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, num_sanity_val_steps=0)
    with pytest.raises(ValueError, match=r"got 2 items: .*lit_kd\.data\.WithIndices$") as error:
        trainer.fit(crd_for_cifar(tmp_path), OwnData(with_indices=False))
    assert "\n" not in str(error.value)
    assert trainer.global_step == 0
