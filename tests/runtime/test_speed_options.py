"""Speed options: the folded frozen teacher, channels-last, torch.compile, teacher precision, per-optimiser scalers.

Each option must leave the results as they were, to float tolerance: the teacher's logits (1e-4 relative in float32),
the input gradients of the methods that differentiate through the teacher, the weights a run ends with, and the
teacher's state dict and checkpoints, which keep their original form.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from lit_kd.callbacks.bss import boundary_attack
from lit_kd.methods import BSSDistillation, DataFreeAdversarialDistillation, FitNets, HintonKD
from lit_kd.models import CifarResNet, DFADGenerator, create_model
from lit_kd.models.inference import channels_last_cpu_hazards, fold_batchnorm, inference_copy
from lit_kd.runtime import teacher as teacher_runtime
from tests.support.networks import TinyNet, save_state_dict, torchvision_network
from tests.support.training import tiny_cifar, tiny_trainer


def randomised_batchnorm(network: nn.Module) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) - 0.5)
    return network.eval()


@pytest.mark.parametrize(
    "build",
    [
        lambda: create_model("resnet56", num_classes=10),
        lambda: create_model("wrn_16_2", num_classes=10),
        lambda: torchvision_network("resnet18"),
        lambda: torchvision_network("mobilenet_v3_small"),
    ],
    ids=["resnet56", "wrn_16_2", "torchvision_resnet18", "torchvision_mobilenet_v3_small"],
)
def test_folded_teacher_gives_the_same_logits_to_float_tolerance(build) -> None:
    network = randomised_batchnorm(build())
    images = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        reference = network(images)
        folded = inference_copy(network)
        output = folded(images)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) or isinstance(network, nn.Module)
    relative = (output - reference).abs().max() / reference.abs().max()
    assert relative < 1e-4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in network.modules()) > 0  # the original keeps its BatchNorms


def test_pre_activation_batchnorms_are_not_folded() -> None:
    """A BatchNorm that reads a sum (or a ReLU) is not after a convolution: it must stay."""
    network = randomised_batchnorm(create_model("wrn_16_2", num_classes=10))
    before = sum(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    folded = copy.deepcopy(network)
    count = fold_batchnorm(folded)
    assert 0 < count < before  # WideResNet's blocks are pre-activation: some BatchNorms read additions
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == before - count


def make_kd(tmp_path: Path, **kwargs) -> HintonKD:
    torch.manual_seed(0)
    teacher = randomised_batchnorm(create_model("resnet14", num_classes=10))
    path = save_state_dict(teacher, tmp_path / "teacher.pt")
    torch.manual_seed(1)
    return HintonKD(
        create_model("resnet8", num_classes=10),
        create_model("resnet14", num_classes=10),
        teacher_checkpoint=str(path),
        **kwargs,
    )


def test_teacher_state_dict_and_checkpoints_keep_their_original_form(tmp_path: Path, cifar_folder: Path) -> None:
    module = make_kd(tmp_path, save_teacher=True)
    original = {key: value.clone() for key, value in module.teacher.state_dict().items()}
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(module, tiny_cifar(cifar_folder))
    assert module.teacher.state_dict().keys() == original.keys()
    assert all(torch.equal(module.teacher.state_dict()[key], value) for key, value in original.items())
    trainer.save_checkpoint(tmp_path / "kd.ckpt")
    saved = torch.load(tmp_path / "kd.ckpt", weights_only=True)["state_dict"]
    assert {key[len("teacher.") :] for key in saved if key.startswith("teacher.")} == set(original)
    assert any(".bn1." in key for key in saved)


def test_the_inference_copy_follows_the_teachers_weights(tmp_path: Path) -> None:
    module = make_kd(tmp_path)
    images = torch.randn(4, 3, 32, 32)
    first = module.teacher_logits(images)
    replacement = randomised_batchnorm(create_model("resnet14", num_classes=10))
    module.teacher.load_state_dict(replacement.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(module.teacher_logits(images), replacement(images), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(first, module.teacher_logits(images))
    assert not module.teacher_logits(images).is_inference()  # usable in a loss that saves it for backward


def test_input_gradients_through_the_folded_teacher_are_exact(tmp_path: Path) -> None:
    """BSS attacks the teacher and DFAD's generator back-propagates through it: the folded copy gives the same."""
    torch.manual_seed(0)
    teacher = randomised_batchnorm(create_model("resnet14", num_classes=10)).double()
    folded = inference_copy(teacher)
    images = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    base = teacher(images).argmax(1)
    target = (base + 1) % 10
    reference = boundary_attack(teacher, images, base, target, num_steps=5, step_size=0.3, clamp_range=None)
    attacked = boundary_attack(folded, images, base, target, num_steps=5, step_size=0.3, clamp_range=None)
    torch.testing.assert_close(attacked.images, reference.images, rtol=1e-7, atol=1e-9)

    def generator_gradients(fast_teacher: bool) -> list[torch.Tensor]:
        torch.manual_seed(2)
        path = save_state_dict(randomised_batchnorm(create_model("resnet14", num_classes=10)), tmp_path / "t.pt")
        torch.manual_seed(3)
        module = DataFreeAdversarialDistillation(
            create_model("resnet8", num_classes=10),
            create_model("resnet14", num_classes=10),
            DFADGenerator(latent_dim=8, base_channels=4),
            teacher_checkpoint=str(path),
            fast_teacher=fast_teacher,
        )
        losses = module.adversarial_losses(torch.randn(4, 8, generator=torch.Generator().manual_seed(4)), True)
        losses["loss"].backward()
        return [p.grad.clone() for p in module.generator.parameters()]

    for fast, plain in zip(generator_gradients(True), generator_gradients(False), strict=True):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-6)


def fit_weights(tmp_path: Path, cifar_folder: Path, **kwargs) -> tuple[dict[str, torch.Tensor], HintonKD]:
    pl.seed_everything(0)
    module = make_kd(tmp_path, **kwargs)
    tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(module, tiny_cifar(cifar_folder))
    return {k: v.detach().clone() for k, v in module.student.state_dict().items()}, module


def test_channels_last_and_the_unfolded_teacher_train_the_same_student(tmp_path: Path, cifar_folder: Path) -> None:
    reference, _ = fit_weights(tmp_path, cifar_folder, channels_last=False)
    channels_last, module = fit_weights(tmp_path, cifar_folder, channels_last=True)  # the default
    unfolded, _ = fit_weights(tmp_path, cifar_folder, channels_last=False, fast_teacher=False)
    assert module.student.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for key, value in reference.items():  # other kernels sum in another order: 3 steps at lr 0.1 amplify it a little
        torch.testing.assert_close(channels_last[key], value, rtol=1e-2, atol=1e-3, msg=key)
        torch.testing.assert_close(unfolded[key], value, rtol=1e-3, atol=1e-4, msg=key)
    plain = create_model("resnet8", num_classes=10)
    plain.load_state_dict(channels_last)  # the checkpointed weights load into a network in the default format


def test_compiled_student_and_teacher_train_the_same_student(
    tmp_path: Path, cifar_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))  # no C++ toolchain
    reference, _ = fit_weights(tmp_path, cifar_folder)
    compiled, module = fit_weights(tmp_path, cifar_folder, compile_student=True, compile_teacher=True)
    assert module.student._compiled_call_impl is not None and module.frozen_teacher._compiled_call_impl is not None
    assert set(compiled) == set(reference)  # the state dict keeps its names (no _orig_mod.)
    for key, value in reference.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-3, atol=1e-4, msg=key)


def test_teacher_precision_runs_only_the_gradient_free_passes_in_half(tmp_path: Path) -> None:
    module = make_kd(tmp_path, teacher_precision="bf16")
    images = torch.randn(4, 3, 32, 32)
    logits = module.teacher_logits(images)
    with torch.no_grad():
        reference = module.teacher(images)
    assert logits.dtype == torch.float32 and not torch.equal(logits, reference)
    torch.testing.assert_close(logits, reference, rtol=0.05, atol=0.05)
    assert module.frozen_teacher(images).dtype == torch.float32  # what attacks and generators differentiate through
    with pytest.raises(ValueError, match="teacher_precision"):
        make_kd(tmp_path, teacher_precision="8")


def test_auto_teacher_precision_is_bf16_only_on_a_cpu_with_native_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = make_kd(tmp_path)  # the default: "auto"
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = module.teacher(images)
    monkeypatch.delenv("LIT_KD_TEACHER_PRECISION")
    monkeypatch.setattr(teacher_runtime, "native_cpu_bf16", lambda: True)
    bf16 = module.teacher_logits(images)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, reference)  # rounded through bfloat16
    torch.testing.assert_close(bf16, make_kd(tmp_path, teacher_precision="bf16").teacher_logits(images))
    assert teacher_runtime.resolve_precision("auto", torch.device("cuda")) == "32"  # a GPU: the trainer's precision
    assert teacher_runtime.resolve_precision("32", torch.device("cpu")) == "32"  # a chosen precision is kept
    monkeypatch.setattr(teacher_runtime, "native_cpu_bf16", lambda: False)  # emulated bf16 would be slower
    torch.testing.assert_close(module.teacher_logits(images), reference, rtol=0, atol=1e-5)
    monkeypatch.setattr(teacher_runtime, "native_cpu_bf16", lambda: True)
    monkeypatch.setenv("LIT_KD_TEACHER_PRECISION", "32")  # the process-wide choice of what "auto" means
    torch.testing.assert_close(module.teacher_logits(images), reference, rtol=0, atol=1e-5)
    monkeypatch.setenv("LIT_KD_TEACHER_PRECISION", "8")
    with pytest.raises(ValueError, match="LIT_KD_TEACHER_PRECISION must be"):
        module.teacher_logits(images)


def test_fitnets_teacher_maps_come_from_the_inference_copy(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = randomised_batchnorm(create_model("resnet14", num_classes=10))
    path = save_state_dict(teacher, tmp_path / "teacher.pt")
    module = FitNets(
        create_model("resnet8", num_classes=10), create_model("resnet14", num_classes=10), teacher_checkpoint=str(path)
    ).eval()
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    losses, _ = module.training_losses(images, targets)
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(
            module.regressor(module.student.forward_features(images).features[2]),
            module.teacher.forward_features(images).features[2],
        )
    torch.testing.assert_close(losses["hint"], expected, rtol=1e-4, atol=1e-6)
    assert module.teacher_taps.maps == {} and module.frozen_teacher is not module.teacher


# ------------------------------------------------------------------------------------ 16-mixed: a scaler each
def float16_on_cpu() -> MixedPrecision:
    """Lightning's 16-mixed plugin on the CPU (fp16 autocast, a GradScaler growing every step), to test the scalers."""
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1))


def tiny_dfad(teacher_path: str) -> DataFreeAdversarialDistillation:
    torch.manual_seed(0)
    return DataFreeAdversarialDistillation(
        TinyNet(), TinyNet(width=16), DFADGenerator(latent_dim=8, base_channels=4), teacher_checkpoint=teacher_path
    )


def test_manual_optimisation_gets_a_gradient_scaler_per_optimiser(tmp_path: Path, cifar_folder: Path) -> None:
    """DFAD under 16-mixed: 5 student steps and 1 generator step, each optimiser's scale grew with its own steps."""
    from lit_kd.data import DataFreeDataModule

    teacher = save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")
    module = tiny_dfad(str(teacher))
    data = DataFreeDataModule(tiny_cifar(cifar_folder), batch_size=8, latent_dim=8, batches_per_epoch=6)
    trainer = tiny_trainer(tmp_path, plugins=[float16_on_cpu()], limit_val_batches=0)
    trainer.fit(module, data)
    student_scale = trainer.precision_plugin.scaler.get_scale()
    generator_scale = module._scalers[1].get_scale()
    assert (student_scale, generator_scale) == (2.0**10 * 2**5, 2.0**10 * 2**1)  # one shared scaler: 2**16
    trainer.save_checkpoint(tmp_path / "dfad.ckpt")
    saved = torch.load(tmp_path / "dfad.ckpt", weights_only=True)
    assert saved["lit_kd_gradient_scalers"][1]["scale"] == generator_scale


def test_per_optimiser_scalers_resume_exactly(tmp_path: Path, cifar_folder: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lit_kd.data import DataFreeDataModule

    teacher = str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))

    def data() -> DataFreeDataModule:
        return DataFreeDataModule(tiny_cifar(cifar_folder), batch_size=8, latent_dim=8, batches_per_epoch=6)

    pl.seed_everything(0)
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=8, save_top_k=-1)
    uninterrupted = tiny_dfad(teacher)
    trainer = tiny_trainer(
        tmp_path,
        plugins=[float16_on_cpu()],
        max_epochs=2,
        limit_val_batches=0,
        callbacks=[checkpoints],
        enable_checkpointing=True,
    )
    trainer.fit(uninterrupted, data())
    pl.seed_everything(0)
    resumed = tiny_dfad(teacher)
    resumed_trainer = tiny_trainer(tmp_path, plugins=[float16_on_cpu()], max_epochs=2, limit_val_batches=0)
    resumed_trainer.fit(resumed, data(), ckpt_path=tmp_path / "ckpt" / "step=8.ckpt")
    assert resumed._scalers[1].get_scale() == uninterrupted._scalers[1].get_scale()
    for key, value in uninterrupted.state_dict().items():
        if not key.startswith("teacher."):
            torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)


def test_bss_attacks_the_inference_copy(tmp_path: Path) -> None:
    module = BSSDistillation(
        TinyNet(),
        TinyNet(width=16),
        teacher_checkpoint=str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt")),
    )
    copy_ = module.frozen_teacher
    assert copy_ is not module.teacher and not any(isinstance(m, nn.BatchNorm2d) for m in copy_.modules())


@pytest.mark.timeout(120, method="thread")  # a native hang cannot be interrupted by a signal: end the run instead
def test_channels_last_stays_off_on_a_cpu_when_a_strided_1x1_convolution_has_fewer_than_8_input_channels(
    tmp_path: Path, cifar_folder: Path
) -> None:
    """In channels-last format, oneDNN's weight gradient of such a convolution never returns on this CPU (a ResNet
    shortcut from 4 to 8 channels: measured, see ``CHANNELS_LAST_MIN_CPU_CHANNELS``): the run warns and trains."""
    pl.seed_everything(0)
    narrow = CifarResNet(8, stem_channels=4, stage_channels=(4, 8, 16))  # shortcut 1x1 stride 2 from 4 channels
    module = HintonKD(narrow, create_model("resnet8", num_classes=10), teacher_checkpoint=None)
    with pytest.warns(UserWarning, match=r"channels_last is off for this CPU run.*stages\.1\.0\.shortcut\.0"):
        tiny_trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(module, tiny_cifar(cifar_folder))
    assert module.trainer.global_step == 3
    assert not module.student.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert channels_last_cpu_hazards(create_model("resnet8", num_classes=10)) == []  # the zoo keeps channels-last


def test_channels_last_cpu_hazards_are_the_trained_strided_1x1_convolutions_with_few_input_channels() -> None:
    network = nn.Sequential(
        nn.Conv2d(4, 8, 1, stride=2),  # hazard
        nn.Conv2d(8, 8, 1, stride=2),  # 8 input channels: fine
        nn.Conv2d(8, 8, 1, stride=2, groups=2),  # 4 per group: hazard
        nn.Conv2d(4, 8, 3, stride=2),  # 3x3: fine
        nn.Conv2d(4, 8, 1),  # stride 1: fine
        nn.Conv2d(4, 8, 1, stride=2).requires_grad_(False),  # frozen: no weight gradient
    )
    assert channels_last_cpu_hazards(network) == ["0", "2"]
