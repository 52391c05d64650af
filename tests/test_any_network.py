"""Any network, any DataModule: every method trains torchvision networks on a user's own DataModule.

The data is what a user of another Lightning project brings (tests/support/data.UserFolderData): a torchvision
``ImageFolder`` with its own transforms and normalisation and a plain ``DataLoader``, with none of lit-kd's DataModule
attributes. The networks are torchvision's ResNet-18 and MobileNetV3-Small; feature-based methods name their layers by
module path (``layer2``, ``features.3``).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_kd.callbacks import BoundarySampleMining
from lit_kd.data import DataFreeDataModule
from lit_kd.methods import (
    ActivationMapAdaptation,
    AttentionTransfer,
    BSSDistillation,
    DataFreeAdversarialDistillation,
    DeepMutualLearning,
    EnsembleDistillation,
    FitNets,
    HintonKD,
    OnlineAdversarialFeatureKD,
    SeedEnsembleModule,
    SelfDistillation,
    SupervisedModule,
)
from lit_kd.models import DFADGenerator, create_model
from lit_kd.models.features import spatial_stages
from tests.support.data import UserFolderData
from tests.support.networks import torchvision_network
from tests.support.training import tiny_cifar, tiny_trainer


def saved_teacher(work_dir: Path, name: str = "resnet18", seed: int = 100) -> str:
    path = work_dir / f"{name}_{seed}.pt"
    if not path.exists():
        torch.save(torchvision_network(name, seed).state_dict(), path)
    return str(path)


def resnet(seed: int = 0) -> torch.nn.Module:
    return torchvision_network("resnet18", seed)


def mobilenet(seed: int = 0) -> torch.nn.Module:
    return torchvision_network("mobilenet_v3_small", seed)


def fitnets_case(work_dir: Path, student: torch.nn.Module | None = None) -> FitNets:
    """FitNets from a torchvision ResNet-18 into MobileNetV3 (or ``student``), hint and guided layer by path."""
    return FitNets(
        mobilenet() if student is None else student,
        resnet(),
        hint_layer="features.3",
        guided_layer="layer2",
        teacher_checkpoint=saved_teacher(work_dir),
        num_classes=10,
    )


CASES: dict[str, Callable[[Path], tuple[pl.LightningModule, list[pl.Callback]]]] = {
    "supervised": lambda d: (SupervisedModule(mobilenet(), num_classes=10), []),
    "hinton": lambda d: (HintonKD(mobilenet(), resnet(), teacher_checkpoint=saved_teacher(d), num_classes=10), []),
    "bss": lambda d: (
        BSSDistillation(mobilenet(), resnet(), teacher_checkpoint=saved_teacher(d), num_classes=10),
        [BoundarySampleMining(max_samples=4, num_steps=2)],
    ),
    "fitnets": lambda d: (fitnets_case(d), []),
    "attention_transfer": lambda d: (
        AttentionTransfer(
            mobilenet(),
            resnet(),
            student_layers=["features.1", "features.3", "features.8"],
            teacher_layers=["layer1", "layer2", "layer3"],
            teacher_checkpoint=saved_teacher(d),
            num_classes=10,
        ),
        [],
    ),
    "ama": lambda d: (
        ActivationMapAdaptation(
            resnet(1), resnet(), adapted_layer="layer3", teacher_checkpoint=saved_teacher(d), num_classes=10
        ),
        [],
    ),
    "ensemble": lambda d: (
        EnsembleDistillation(
            mobilenet(),
            [resnet(), resnet()],
            num_classes=10,
            teacher_checkpoints=[saved_teacher(d, seed=1), saved_teacher(d, seed=2)],
        ),
        [],
    ),
    "self_distillation": lambda d: (
        SelfDistillation(
            mobilenet(), mobilenet(), teacher_checkpoint=saved_teacher(d, "mobilenet_v3_small"), num_classes=10
        ),
        [],
    ),
    "seeds": lambda d: (SeedEnsembleModule([mobilenet(1), mobilenet(2)], num_classes=10), []),
    "dml": lambda d: (DeepMutualLearning([mobilenet(), resnet()], num_classes=10), []),
    "afd": lambda d: (
        OnlineAdversarialFeatureKD([mobilenet(), resnet()], feature_layers=["features.12", "layer4"], num_classes=10),
        [],
    ),
    # no layer named: each method takes the stage outputs found by a probe pass (issue 24)
    "fitnets_unnamed": lambda d: (
        FitNets(mobilenet(), resnet(), teacher_checkpoint=saved_teacher(d), num_classes=10),
        [],
    ),
    "attention_transfer_unnamed": lambda d: (
        AttentionTransfer(mobilenet(), resnet(), teacher_checkpoint=saved_teacher(d), num_classes=10),
        [],
    ),
    "ama_unnamed": lambda d: (
        ActivationMapAdaptation(mobilenet(1), resnet(), teacher_checkpoint=saved_teacher(d), num_classes=10),
        [],
    ),
    "afd_unnamed": lambda d: (OnlineAdversarialFeatureKD([mobilenet(), resnet()], num_classes=10), []),
}


def parameters_of(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("name", list(CASES))
def test_every_method_trains_torchvision_networks_on_a_users_datamodule(
    name: str, tmp_path: Path, cifar_folder: Path
) -> None:
    module, callbacks = CASES[name](tmp_path)
    trained = module.networks if hasattr(module, "networks") else module.student
    teacher = getattr(module, "teacher", None)
    before = parameters_of(trained)
    teacher_before = parameters_of(teacher) if teacher is not None else None
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1, callbacks=callbacks)
    if name == "bss":  # the user's DataModule declares no normalisation: BSS says it cannot clamp its samples
        with pytest.warns(UserWarning, match="boundary samples are not clamped"):
            trainer.fit(module, UserFolderData(cifar_folder))
    else:
        trainer.fit(module, UserFolderData(cifar_folder))
    assert trainer.global_step == 3
    assert not torch.equal(before, parameters_of(trained))
    assert all(torch.isfinite(value) for key, value in trainer.callback_metrics.items() if "loss" in key)
    assert "val/acc" in trainer.callback_metrics or "val/best_acc" in trainer.callback_metrics
    if teacher is not None:
        assert torch.equal(teacher_before, parameters_of(teacher)) and not teacher.training
    for taps in [
        getattr(module, "student_taps", None),
        getattr(module, "teacher_taps", None),
        *getattr(module, "taps", []),
    ]:
        assert taps is None or taps.maps == {}  # no feature map is held after the step


def test_data_free_distillation_of_torchvision_networks(tmp_path: Path, cifar_folder: Path) -> None:
    module = DataFreeAdversarialDistillation(
        mobilenet(), resnet(), DFADGenerator(latent_dim=8, base_channels=4), teacher_checkpoint=saved_teacher(tmp_path)
    )
    before = parameters_of(module.student)
    data = DataFreeDataModule(tiny_cifar(cifar_folder), batch_size=8, latent_dim=8, batches_per_epoch=6)
    trainer = tiny_trainer(tmp_path, limit_val_batches=1)
    trainer.fit(module, data)
    assert trainer.global_step == 6 and not torch.equal(before, parameters_of(module.student))


def test_wrong_layer_names_fail_at_construction_listing_valid_paths(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"hint_layer: MobileNetV3 has no submodule 'layer2'; valid module paths include \[features"
    ):
        FitNets(mobilenet(), resnet(), hint_layer="layer2", guided_layer="layer2")
    with pytest.raises(
        ValueError, match=r"guided_layer: ResNet has no submodule 'layer9'; .*layer1.*\.\.\. \(\d+ more\)"
    ):
        FitNets(mobilenet(), resnet(), hint_layer="features.3", guided_layer="layer9")
    with pytest.raises(ValueError, match="feature_layers.*a feature index needs a lit_kd.models.FeatureNet"):
        OnlineAdversarialFeatureKD([mobilenet(), resnet()], feature_layers=-1)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(
        ValueError, match=r"Sequential has no \[B, C, H, W\] feature maps.*name the feature layers"
    ) as error:
        AttentionTransfer(mlp, resnet())
    assert "\n" not in str(error.value)


def test_maps_that_cannot_be_paired_fail_at_construction() -> None:
    # a 1x1 student map cannot be regressed onto a 4x4 teacher map (only a half-size map can be upsampled)
    with pytest.raises(ValueError, match="student map of 1x1 cannot be regressed onto a teacher map of 4x4"):
        FitNets(mobilenet(), resnet(), hint_layer="features.12", guided_layer="layer2")
    with pytest.raises(
        ValueError, match=r"'avgpool' of ResNet outputs shape \(2, 512, 1, 1\)|'fc' of ResNet outputs shape"
    ):
        FitNets(mobilenet(), resnet(), hint_layer="features.3", guided_layer="fc")
    with pytest.raises(ValueError, match="pair up one to one"):
        AttentionTransfer(mobilenet(), resnet(), student_layers=["features.3"], teacher_layers=["layer2", "layer3"])


def test_feature_maps_are_not_kept_after_the_step(tmp_path: Path) -> None:
    module = fitnets_case(tmp_path)
    seen: list[weakref.ref] = []
    module.student.features[3].register_forward_hook(lambda m, i, output: seen.append(weakref.ref(output)))
    losses, _ = module.training_losses(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    losses["loss"].backward()
    del losses
    gc.collect()
    assert len(seen) == 1 and seen[0]() is None and module.student_taps.maps == {}


def test_hooks_work_on_a_compiled_student(tmp_path: Path) -> None:
    """torch.compile (aot_eager backend: no C++ toolchain needed) keeps the hooks and the loss."""
    student = mobilenet()
    reference = fitnets_case(tmp_path, student).eval()
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    expected, _ = reference.training_losses(images, targets)
    compiled = fitnets_case(tmp_path, torch.compile(student, backend="aot_eager")).eval()
    compiled.regressor.load_state_dict(reference.regressor.state_dict())
    losses, _ = compiled.training_losses(images, targets)
    torch.testing.assert_close(losses["hint"], expected["hint"], rtol=1e-4, atol=1e-5)


def test_a_hook_based_method_resumes_exactly(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{epoch}", every_n_epochs=1, save_top_k=-1)
    data = UserFolderData(cifar_folder, batch_size=16, shuffle=False, augment=False)
    uninterrupted = fitnets_case(tmp_path)
    trainer = tiny_trainer(
        tmp_path,
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=0,
        callbacks=[checkpoints],
        enable_checkpointing=True,
    )
    trainer.fit(uninterrupted, data)
    pl.seed_everything(0)
    resumed = fitnets_case(tmp_path)
    tiny_trainer(tmp_path, max_epochs=2, limit_train_batches=3, limit_val_batches=0).fit(
        resumed,
        UserFolderData(cifar_folder, batch_size=16, shuffle=False, augment=False),
        ckpt_path=tmp_path / "ckpt" / "epoch=0.ckpt",
    )
    for key, value in uninterrupted.state_dict().items():
        if not key.startswith("teacher."):
            torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)


class SaveWeights(pl.Callback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, module) -> None:
        torch.save(
            {k: v.detach().cpu() for k, v in module.state_dict().items()}, self.folder / f"rank{trainer.global_rank}.pt"
        )


def test_a_hook_based_method_keeps_two_ddp_processes_in_sync(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    module = fitnets_case(tmp_path)
    initial = {k: v.clone() for k, v in module.student.state_dict().items()}
    trainer = tiny_trainer(  # validation after the last step: DDP's forward takes rank 0's BatchNorm statistics
        tmp_path,
        strategy="ddp_spawn",
        devices=2,
        limit_train_batches=2,
        limit_val_batches=1,
        callbacks=[SaveWeights(tmp_path)],
    )
    trainer.fit(module, UserFolderData(cifar_folder))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    for key, value in ranks[0].items():
        torch.testing.assert_close(ranks[1][key], value, rtol=0, atol=0, msg=key)
    assert any(not torch.equal(initial[k], ranks[0][f"student.{k}"]) for k in initial)


def test_a_deep_copy_of_a_hook_based_method_reads_its_own_networks(tmp_path: Path) -> None:
    """What EMA/SWA helpers do (copy.deepcopy of the module): the copy's taps run and read the copy's networks."""
    import copy

    module = fitnets_case(tmp_path)
    twin = copy.deepcopy(module)
    assert twin.student_taps is not module.student_taps and twin.student_taps.network is twin.student
    with torch.no_grad():
        next(twin.student.parameters()).add_(1.0)
    images = torch.randn(2, 3, 32, 32)
    _, (original,) = module.student_taps(images)
    _, (copied,) = twin.student_taps(images)
    assert not torch.allclose(original, copied)


def test_unnamed_layers_are_the_stage_outputs_paired_from_the_deepest(tmp_path: Path) -> None:
    """A probe pass finds each network's stage outputs; zoo networks keep their exact defaults."""
    assert spatial_stages(resnet()) == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert spatial_stages(mobilenet()) == ["features.0", "features.1", "features.3", "features.8", "features"]
    teacher = saved_teacher(tmp_path)
    at = AttentionTransfer(mobilenet(), resnet(), teacher_checkpoint=teacher)
    assert at.student_taps.layers == ["features.0", "features.1", "features.3", "features.8", "features"]
    assert at.teacher_taps.layers == ["relu", "layer1", "layer2", "layer3", "layer4"]
    shallow = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU())
    paired = AttentionTransfer(shallow, resnet(), teacher_checkpoint=teacher, num_classes=10)
    assert paired.student_taps.layers == ["1"] and paired.teacher_taps.layers == ["layer4"]  # the deepest pair
    fitnets = FitNets(mobilenet(), resnet(), teacher_checkpoint=teacher)
    assert (fitnets.student_taps.layers, fitnets.teacher_taps.layers) == (["features.3"], ["layer2"])  # middle
    ama = ActivationMapAdaptation(mobilenet(), resnet(), teacher_checkpoint=teacher)
    assert (ama.adapted_layer, ama.student_taps.layers) == ("layer2", ["features.3"])
    afd = OnlineAdversarialFeatureKD([mobilenet(), resnet()])
    assert [taps.layers for taps in afd.taps] == [["features"], ["layer4"]]  # the last stage

    zoo_student, zoo_teacher = create_model("resnet8", num_classes=10), create_model("resnet20", num_classes=10)
    assert AttentionTransfer(zoo_student, zoo_teacher).student_taps.layers == ["stages.0", "stages.1", "stages.2"]
    assert FitNets(zoo_student, zoo_teacher).student_taps.layers == ["stages.1"]  # hint_layer 2, as before
    assert ActivationMapAdaptation(zoo_student, zoo_teacher).adapted_layer == "stages.1"
    assert [t.layers for t in OnlineAdversarialFeatureKD([zoo_student, zoo_teacher]).taps] == [["stages.2"]] * 2


def test_the_chosen_layers_are_logged_once_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        FitNets(mobilenet(), resnet(), teacher_checkpoint=saved_teacher(tmp_path))
    chosen = [record.getMessage() for record in caplog.records if "no layer named" in record.getMessage()]
    assert chosen == [
        "guided_layer: ResNet has no layer named; using its stage outputs ['layer2']",
        "hint_layer: MobileNetV3 has no layer named; using its stage outputs ['features.3']",
    ]
