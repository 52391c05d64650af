"""Ensemble distillation, K seeds in one run, and born-again self-distillation."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
import yaml

from lit_kd.born_again import run_generations
from lit_kd.losses import soft_target_kl
from lit_kd.methods import EnsembleDistillation, LogitEnsemble, SeedEnsembleModule, SelfDistillation
from lit_kd.models import create_model
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


def test_ensemble_logits_are_the_mean_of_member_logits() -> None:
    members = [TinyNet(width=4), TinyNet(width=8), create_model("resnet8", num_classes=10)]
    ensemble = LogitEnsemble(members).eval()
    images = torch.randn(3, 3, 32, 32)
    expected = (members[0](images) + members[1](images) + members[2](images)) / 3
    assert torch.allclose(ensemble(images), expected, atol=1e-6)
    assert ensemble.member_logits(images).shape == (3, 3, 10)
    with pytest.raises(ValueError, match="at least one"):
        LogitEnsemble([])


def test_ensemble_distillation_loads_each_member_and_matches_soft_targets_only(tmp_path: Path) -> None:
    members = [TinyNet(width=4), TinyNet(width=8)]
    paths = [save_state_dict(member, tmp_path / f"m{i}.pt") for i, member in enumerate(members)]
    module = EnsembleDistillation(TinyNet(), [TinyNet(width=4), TinyNet(width=8)], teacher_checkpoints=paths)
    for loaded, original in zip(module.teacher.members, members, strict=True):
        assert all(
            torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), original.state_dict().values(), strict=True)
        )
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    module.student.eval()
    losses, logits = module.training_losses(images, targets)
    teacher_mean = (members[0].eval()(images) + members[1].eval()(images)) / 2
    assert torch.allclose(losses["loss"], soft_target_kl(logits, teacher_mean, 4.0), atol=1e-6)  # ce_weight 0
    losses["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in module.teacher.parameters())
    with pytest.raises(ValueError, match="not both"):
        EnsembleDistillation(TinyNet(), [TinyNet()], teacher_checkpoints=[paths[0]], teacher_checkpoint=paths[0])
    with pytest.raises(ValueError, match="2 entries for 1 teachers"):
        EnsembleDistillation(TinyNet(), [TinyNet()], teacher_checkpoints=paths)


def accuracy(network: torch.nn.Module, datamodule) -> float:
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            images, targets = datamodule.on_after_batch_transfer(batch, 0)
            correct += (network(images).argmax(-1) == targets).sum().item()
            total += len(targets)
    return correct / total


def test_seed_ensemble_trains_members_independently_and_loads_as_the_ensemble_teacher(
    tmp_path: Path, cifar_folder: Path
) -> None:
    torch.manual_seed(0)
    module = SeedEnsembleModule([TinyNet(width=8) for _ in range(3)])
    first, second = (member.body[0].weight for member in module.student.members[:2])
    assert not torch.equal(first, second)  # different initialisations
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    losses, _ = module.training_losses(images, targets)
    losses["loss"].backward()
    alone = [p.grad.clone() for p in module.student.members[1].parameters()]
    module.zero_grad()
    F.cross_entropy(module.student.members[1](images), targets).backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(alone, module.student.members[1].parameters(), strict=True))

    trainer = tiny_trainer(tmp_path, max_epochs=2)
    data = tiny_cifar(cifar_folder)
    trainer.fit(module, data)
    metrics = trainer.validate(module, data, verbose=False)[0]
    module.eval()
    for index, member in enumerate(module.student.members):
        assert metrics[f"val/member{index}_acc"] == pytest.approx(accuracy(member, data))
    assert metrics["val/ensemble_acc"] == pytest.approx(accuracy(module.student, data))
    assert metrics["val/acc"] == pytest.approx(metrics["val/ensemble_acc"])

    trainer.save_checkpoint(tmp_path / "seeds.ckpt")
    distill = EnsembleDistillation(
        TinyNet(), [TinyNet(width=8) for _ in range(3)], teacher_checkpoint=tmp_path / "seeds.ckpt"
    )
    for key, value in module.student.state_dict().items():
        assert torch.equal(distill.teacher.state_dict()[key], value)
    distill_trainer = tiny_trainer(tmp_path, max_steps=1)
    distill_trainer.fit(distill, data)
    distill_metrics = distill_trainer.validate(distill, data, verbose=False)[0]
    assert distill_metrics["val/ensemble_acc"] == pytest.approx(metrics["val/ensemble_acc"])
    assert distill_metrics["val/member2_acc"] == pytest.approx(metrics["val/member2_acc"])


def test_self_distillation_defaults_are_born_again_and_need_the_same_architecture(tmp_path: Path) -> None:
    path = save_state_dict(TinyNet(), tmp_path / "generation0.pt")
    module = SelfDistillation(TinyNet(), TinyNet(), teacher_checkpoint=path)
    module.student.eval()
    images = torch.randn(4, 3, 32, 32)
    first, logits = module.training_losses(images, torch.zeros(4, dtype=torch.long))
    second, _ = module.training_losses(images, torch.ones(4, dtype=torch.long))
    assert torch.allclose(first["loss"], second["loss"])  # labels play no part (alpha = 1)
    assert torch.allclose(first["loss"], soft_target_kl(logits, module.teacher(images), temperature=1.0))
    with pytest.raises(ValueError, match="student's architecture"):
        SelfDistillation(TinyNet(), TinyNet(width=16), teacher_checkpoint=path)


def test_born_again_generation_learns_from_the_previous_generation(tmp_path: Path, cifar_folder: Path) -> None:
    network = {"class_path": "lit_kd.models.CifarResNet", "init_args": {"depth": 8, "num_classes": 10}}
    generation0_teacher = save_state_dict(create_model("resnet8", num_classes=10), tmp_path / "vanilla.pt")
    recipe = {
        "seed_everything": 3,
        "trainer": {
            "max_steps": 2,
            "limit_val_batches": 0,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "accelerator": "cpu",
        },
        "model": {
            "class_path": "lit_kd.methods.SelfDistillation",
            "init_args": {
                "student": network,
                "teacher": network,
                "teacher_checkpoint": str(generation0_teacher),
                "save_teacher": True,
            },
        },
        "data": {
            "class_path": "lit_kd.data.CIFAR10DataModule",
            "init_args": {"data_dir": str(cifar_folder), "batch_size": 16, "use_cache": False},
        },
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(ValueError, match="not in cli_args"):
        run_generations(tmp_path / "recipe.yaml", 2, tmp_path / "out", ["--model.teacher_checkpoint", "x.ckpt"])
    records = run_generations(tmp_path / "recipe.yaml", 2, tmp_path / "out", ["--trainer.max_steps", "3"])
    assert [r["teacher_checkpoint"] for r in records] == [str(generation0_teacher), records[0]["checkpoint"]]
    assert json.loads((tmp_path / "out" / "generations.json").read_text()) == records
    assert all(0 <= r["test"]["test/acc"] <= 1 for r in records)
    generation0 = torch.load(records[0]["checkpoint"], weights_only=False)
    generation1 = torch.load(records[1]["checkpoint"], weights_only=False)
    assert generation0["global_step"] == generation1["global_step"] == 3  # the extra CLI option was applied
    for key, value in generation0["state_dict"].items():
        if key.startswith("student."):  # generation 1's teacher is generation 0's student
            assert torch.equal(generation1["state_dict"]["teacher." + key.removeprefix("student.")], value)
    assert not torch.equal(
        generation0["state_dict"]["student.stem.0.weight"], generation1["state_dict"]["student.stem.0.weight"]
    )


class SaveMemberWeightsPerRank(pl.Callback):
    """Writes each rank's member weights at the end of training (ddp_spawn workers import it from this module)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        weights = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in module.student.members]
        torch.save(weights, self.out_dir / f"rank{trainer.global_rank}.pt")


def test_seed_ensemble_under_ddp_keeps_ranks_in_sync_and_reduces_member_accuracy(
    tmp_path: Path, cifar_folder: Path
) -> None:
    torch.manual_seed(0)
    module = SeedEnsembleModule([TinyNet(width=4) for _ in range(2)])
    trainer = tiny_trainer(
        tmp_path, strategy="ddp_spawn", devices=2, max_epochs=1, callbacks=[SaveMemberWeightsPerRank(tmp_path)]
    )
    data = tiny_cifar(cifar_folder)
    trainer.fit(module, data)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(ranks[0], ranks[1], strict=True))
    assert not torch.equal(ranks[0][0], ranks[0][1])
    data.setup("validate")
    module.eval()
    for index, member in enumerate(module.student.members):  # each rank saw half the validation set
        expected = accuracy(member, data)
        assert trainer.callback_metrics[f"val/member{index}_acc"].item() == pytest.approx(expected)
