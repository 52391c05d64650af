"""DFAD: generators, the resnet_8x networks, the data-free DataModule, the method, its schedule and its gallery."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.optim import SGD, Adam
from torch.optim.lr_scheduler import MultiStepLR

from lit_kd.callbacks import DFADGallery, GeneratorUpdateSchedule
from lit_kd.data import CIFAR10DataModule, DataFreeDataModule, LatentNoiseLoader, LatentSeedSampler
from lit_kd.losses import logit_discrepancy
from lit_kd.methods import DataFreeAdversarialDistillation
from lit_kd.methods.dfad import dfad_lr_schedule
from lit_kd.models import DCGANGenerator, DFADGenerator, ImageNetStyleResNet, create_model
from tests.support.dfad import (
    LinearGenerator,
    LinearNet,
    RecordPerRank,
    data_free,
    flat_state,
    flat_weights,
    tiny_dfad,
    tiny_generator,
)
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import RecordImages, tiny_cifar, tiny_trainer


@pytest.fixture
def teacher_path(tmp_path: Path) -> str:
    return str(save_state_dict(TinyNet(width=16), tmp_path / "teacher.pt"))


def parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


# ------------------------------------------------------------------------------------------------ networks
def test_resnet_8x_networks_have_the_official_layout() -> None:
    # ResNet18_8x / ResNet34_8x of network/resnet_8x.py (10 classes): 11,173,962 and 21,282,122 parameters
    assert parameter_count(create_model("resnet18_8x", 10)) == 11_173_962
    assert parameter_count(create_model("resnet34_8x", 10)) == 21_282_122
    model = ImageNetStyleResNet(depth=34, num_classes=7)
    assert [len(stage) for stage in model.stages] == [3, 4, 6, 3]
    assert model.feature_channels == [64, 64, 128, 256, 512]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="depth must be one of"):
        ImageNetStyleResNet(depth=50)


def test_dfad_generator_is_the_official_generator_a() -> None:
    generator = DFADGenerator()  # latent 256, ngf 64, 32x32: DFAD_cifar.py's GeneratorA(nz=256, nc=3, img_size=32)
    # linear 256 -> 128*8*8, BN(128), conv 128->128, BN(128), conv 128->64, BN(64), conv 64->3, BN(3) without affine
    expected = (256 * 8192 + 8192) + 256 + (128 * 128 * 9 + 128) + 256 + (128 * 64 * 9 + 64) + 128 + (64 * 3 * 9 + 3)
    assert parameter_count(generator) == expected
    output_norm = generator.body[-1]
    assert isinstance(output_norm, torch.nn.BatchNorm2d) and not output_norm.affine
    images = generator(torch.randn(16, 256, 1, 1))  # the official code feeds [B, nz, 1, 1]
    assert images.shape == (16, 3, 32, 32)
    # the affine-free output BN: each channel of a training batch has mean 0 and (biased) variance 1
    torch.testing.assert_close(images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(images.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="multiple of 4"):
        DFADGenerator(image_size=30)


def test_dcgan_generator_makes_64_pixel_images_in_the_tanh_range() -> None:
    generator = DCGANGenerator(latent_dim=32, base_channels=8)
    images = generator(torch.randn(4, 32))
    assert images.shape == (4, 3, 64, 64) and images.abs().max() <= 1
    transposed = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in transposed] == [
        (64, 32, (2, 2)),
        (32, 16, (2, 2)),
        (16, 8, (2, 2)),
        (8, 8, (2, 2)),
    ]
    assert DCGANGenerator(latent_dim=8, base_channels=4, image_size=128)(torch.randn(2, 8)).shape == (2, 3, 128, 128)
    with pytest.raises(ValueError, match="multiple of 16"):
        DCGANGenerator(image_size=40)


def test_logit_discrepancy_is_the_mean_absolute_error() -> None:
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0, 4.0], [-3.0, 0.0, 0.5]])
    assert logit_discrepancy(student, teacher).item() == pytest.approx((0 + 2 + 1 + 3 + 0 + 0.5) / 6)
    with pytest.raises(ValueError, match="differ in shape"):
        logit_discrepancy(student, teacher[:, :2])


# -------------------------------------------------------------------------------------------------- data
def test_latent_noise_depends_on_seed_epoch_batch_and_rank_and_resumes() -> None:
    def epoch_of(rank: int, epoch: int, seed: int = 0) -> list[torch.Tensor]:
        sampler = LatentSeedSampler(num_batches=4, seed=seed, rank=rank, world_size=2)
        sampler.set_epoch(epoch)
        return list(LatentNoiseLoader(sampler, batch_size=3, latent_dim=5))

    first = epoch_of(0, 0)
    assert len(first) == 4 and all(batch.shape == (3, 5) for batch in first)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch_of(0, 0), strict=True))  # reproducible
    for other in (epoch_of(1, 0), epoch_of(0, 1), epoch_of(0, 0, seed=1)):
        assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    sampler = LatentSeedSampler(num_batches=4, seed=0, rank=0, world_size=2)
    sampler.skip_consumed(epoch=0, batches=3)
    resumed = list(LatentNoiseLoader(sampler, batch_size=3, latent_dim=5))
    assert len(resumed) == 1 and torch.equal(resumed[0], first[3])


def test_data_free_module_refuses_options_that_read_training_images(cifar_folder: Path) -> None:
    with pytest.raises(ValueError, match="val_size must be 0"):
        DataFreeDataModule(tiny_cifar(cifar_folder, val_size=8))
    with pytest.raises(ValueError, match="subset_size"):
        DataFreeDataModule(tiny_cifar(cifar_folder, subset_size=8))


def test_training_never_reads_real_training_images(
    tmp_path: Path, cifar_folder: Path, teacher_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[str] = []
    load_split = CIFAR10DataModule.load_split

    def recording_load_split(self: CIFAR10DataModule, split: str):
        requested.append(split)
        if split == "train":
            raise AssertionError("a data-free run asked for the real training split")
        return load_split(self, split)

    monkeypatch.setattr(CIFAR10DataModule, "load_split", recording_load_split)

    class RecordBatches(pl.Callback):
        batches: list[torch.Tensor] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.batches.append(batch)

    recorder = RecordBatches()
    data = data_free(cifar_folder)
    module = tiny_dfad(teacher_path)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[recorder])
    trainer.fit(module, data)
    trainer.validate(module, data, verbose=False)
    trainer.test(module, data, verbose=False)
    assert requested == ["test"]  # loaded once, for validation and test
    assert len(recorder.batches) == 6 and all(batch.shape == (8, 8) for batch in recorder.batches)  # noise only
    assert len(data.test_set.targets) == 40 and data.val_set is data.test_set
    assert 0 <= trainer.callback_metrics["test/acc"] <= 1


# ------------------------------------------------------------------------------------------- the method
def test_student_step_gradients_are_the_official_student_loss(teacher_path: str) -> None:
    module = tiny_dfad(teacher_path).train()
    latent = torch.randn(8, 8)
    module.adversarial_losses(latent, generator_step=False)["loss"].backward()
    student_grads = [parameter.grad.clone() for parameter in module.student.parameters()]
    assert all(torch.count_nonzero(parameter.grad) == 0 for parameter in module.generator.parameters())
    assert all(parameter.grad is None for parameter in module.teacher.parameters())
    module.zero_grad()
    fake = module.generator(latent).detach()  # DFAD_cifar.py: loss_S = F.l1_loss(s_logit, t_logit.detach())
    F.l1_loss(module.student(fake), module.teacher(fake).detach()).backward()
    for ours, official in zip(student_grads, (p.grad for p in module.student.parameters()), strict=True):
        torch.testing.assert_close(ours, official)


def test_generator_step_gradients_flow_through_the_teacher_into_the_generator(teacher_path: str) -> None:
    module = tiny_dfad(teacher_path).train()
    latent = torch.randn(8, 8)
    module.adversarial_losses(latent, generator_step=True)["loss"].backward()
    generator_grads = [parameter.grad.clone() for parameter in module.generator.parameters()]
    assert all(torch.count_nonzero(parameter.grad) == 0 for parameter in module.student.parameters())
    assert all(parameter.grad is None for parameter in module.teacher.parameters())
    assert not module.teacher.training
    generator_parameters = list(module.generator.parameters())
    fake = module.generator(latent)  # DFAD_cifar.py: loss_G = -F.l1_loss(s_logit, t_logit)
    official = torch.autograd.grad(-F.l1_loss(module.student(fake), module.teacher(fake)), generator_parameters)
    for ours, reference in zip(generator_grads, official, strict=True):
        torch.testing.assert_close(ours, reference)
    fake = module.generator(latent)  # without the teacher's input gradient the generator would get another gradient
    blocked = torch.autograd.grad(-F.l1_loss(module.student(fake), module.teacher(fake).detach()), generator_parameters)
    assert not torch.allclose(generator_grads[0], blocked[0])


class RecordSteps(pl.Callback):
    """Per training step: generator step?, discrepancy on the step's batch before and after, which networks changed."""

    def __init__(self) -> None:
        self.steps: list[tuple[bool, float, float, bool, bool, bool]] = []

    @staticmethod
    def discrepancy(module: DataFreeAdversarialDistillation, latent: torch.Tensor) -> float:
        with torch.no_grad():
            images = module.generator(latent)
            return logit_discrepancy(module.student(images), module.teacher(images)).item()

    @staticmethod
    def weights(module: DataFreeAdversarialDistillation) -> list[torch.Tensor]:
        return [flat_weights(network) for network in (module.student, module.generator, module.teacher)]

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.kind = module.generator_schedule.is_generator_step(trainer.global_step)
        self.before, self.before_weights = self.discrepancy(module, batch), self.weights(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        changed = [not torch.equal(a, b) for a, b in zip(self.before_weights, self.weights(module), strict=True)]
        self.steps.append((self.kind, self.before, self.discrepancy(module, batch), *changed))


def test_generator_steps_raise_and_student_steps_lower_the_discrepancy(tmp_path: Path, cifar_folder: Path) -> None:
    torch.manual_seed(0)
    path = save_state_dict(LinearNet(), tmp_path / "linear_teacher.pt")  # no batch norm: measuring has no side effect
    module = DataFreeAdversarialDistillation(
        LinearNet(),
        LinearNet(),
        LinearGenerator(latent_dim=8),
        teacher_checkpoint=str(path),
        optimizer=lambda parameters: SGD(parameters, lr=1e-3),
        generator_optimizer=lambda parameters: Adam(parameters, lr=1e-4),
    )
    recorder = RecordSteps()
    callbacks = [recorder, GeneratorUpdateSchedule(student_steps=2)]
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=callbacks)
    trainer.fit(module, data_free(cifar_folder))
    assert [step[0] for step in recorder.steps] == [False, False, True, False, False, True]
    for generator_step, before, after, student_moved, generator_moved, teacher_moved in recorder.steps:
        assert after > before if generator_step else after < before
        assert (student_moved, generator_moved, teacher_moved) == (not generator_step, generator_step, False)
    assert {"train/student_l1", "train/generator_l1"} <= set(trainer.callback_metrics)


def test_official_defaults_and_the_schedule_callback_overrides(
    tmp_path: Path, cifar_folder: Path, teacher_path: str
) -> None:
    recorder = RecordSteps()
    module = tiny_dfad(teacher_path)
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(module, data_free(cifar_folder))  # no schedule given: the module adds the official 5 : 1
    assert [step[0] for step in recorder.steps] == [False] * 5 + [True]
    student_optimizer, generator_optimizer = (o.optimizer for o in module.optimizers())
    assert isinstance(student_optimizer, SGD) and isinstance(generator_optimizer, Adam)
    official = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False}
    assert {key: student_optimizer.defaults[key] for key in official} == official
    assert generator_optimizer.defaults["lr"] == 1e-3
    assert all(s.milestones == {99: 1, 199: 1} and s.gamma == 0.1 for s in module.lr_schedulers())

    schedule = GeneratorUpdateSchedule(student_steps=2, student_lr=0.05, generator_lr=2e-4)
    module = tiny_dfad(teacher_path, lr_scheduler=lambda optimizer: MultiStepLR(optimizer, [1], 0.1))
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[schedule])
    trainer.fit(module, data_free(cifar_folder))
    student_optimizer, generator_optimizer = (o.optimizer for o in module.optimizers())
    assert student_optimizer.param_groups[0]["lr"] == pytest.approx(0.005)  # 0.05, /10 after the first epoch
    assert generator_optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)  # default schedule: no decay before 100
    assert trainer.global_step == 12
    with pytest.warns(UserWarning, match="5 student : 1 generator"):
        schedule.load_state_dict({"student_steps": 5, "generator_steps": 1})


def test_bad_configurations_fail_at_setup(tmp_path: Path, cifar_folder: Path, teacher_path: str) -> None:
    cases = [
        (tiny_dfad(teacher_path), tiny_cifar(cifar_folder), {}, ValueError, "DataFreeDataModule"),
        (tiny_dfad(teacher_path, generator=tiny_generator(16)), data_free(cifar_folder), {}, ValueError, "latent_dim"),
        (
            tiny_dfad(teacher_path, generator=DFADGenerator(8, 4, image_size=64)),
            data_free(cifar_folder),
            {},
            ValueError,
            r"shape \(3, 64, 64\)",
        ),
        (
            tiny_dfad(teacher_path),
            data_free(cifar_folder),
            {"gradient_clip_val": 1.0},
            MisconfigurationException,
            "clip",
        ),
        (
            tiny_dfad(teacher_path),
            data_free(cifar_folder),
            {"accumulate_grad_batches": 2},
            MisconfigurationException,
            "accumulation",
        ),
        (
            tiny_dfad(teacher_path),
            data_free(cifar_folder),
            {"callbacks": [GeneratorUpdateSchedule(), GeneratorUpdateSchedule(2)]},
            RuntimeError,
            "more than one stateful callback of type `GeneratorUpdateSchedule`",
        ),
    ]
    for module, data, trainer_args, error, message in cases:
        with pytest.raises(error, match=message):
            tiny_trainer(tmp_path, max_steps=1, **trainer_args).fit(module, data)


# --------------------------------------------------------------------------------------- DDP and resume
def test_two_cpu_processes_keep_student_and_generator_in_sync(
    tmp_path: Path, cifar_folder: Path, teacher_path: str
) -> None:
    pl.seed_everything(0)
    module = tiny_dfad(teacher_path)
    initial = flat_state(module.student), flat_state(module.generator)
    callbacks = [RecordPerRank(tmp_path), GeneratorUpdateSchedule(student_steps=1)]
    trainer = tiny_trainer(tmp_path, strategy="ddp_spawn", devices=2, limit_val_batches=0, callbacks=callbacks)
    trainer.fit(module, data_free(cifar_folder))  # 6 steps: student, generator, student, ...
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert ranks[0]["world_size"] == 2 and len(ranks[0]["latents"]) == 6
    assert not torch.equal(ranks[0]["latents"], ranks[1]["latents"])  # each rank draws its own noise
    for name, start in zip(("student", "generator"), initial, strict=True):
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # gradients (and BN statistics) were shared
        assert not torch.equal(ranks[0][name], start), name
    assert torch.equal(flat_state(module.generator), ranks[0]["generator"])  # the main process got the result


def test_resume_from_a_mid_epoch_checkpoint_equals_an_uninterrupted_run(
    tmp_path: Path, cifar_folder: Path, teacher_path: str
) -> None:
    def run(ckpt_path: Path | None, callbacks: list[pl.Callback]) -> DataFreeAdversarialDistillation:
        pl.seed_everything(0)
        decay_after_one_epoch = lambda optimizer: MultiStepLR(optimizer, [1], 0.1)  # noqa: E731
        module = tiny_dfad(
            teacher_path, lr_scheduler=decay_after_one_epoch, generator_lr_scheduler=decay_after_one_epoch
        )
        callbacks = [*callbacks, GeneratorUpdateSchedule(student_steps=2)]
        trainer = tiny_trainer(
            tmp_path,
            max_epochs=3,
            limit_val_batches=0,
            callbacks=callbacks,
            enable_checkpointing=bool(ckpt_path is None),
        )
        trainer.fit(module, data_free(cifar_folder), ckpt_path=ckpt_path)
        assert trainer.global_step == 18
        return module

    # 6 steps an epoch; the checkpoint at step 8 is in the middle of epoch 1, between a student and a generator step
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=8, save_top_k=-1)
    uninterrupted = run(None, [checkpoints])
    resumed = run(tmp_path / "ckpt" / "step=8.ckpt", [])
    for network in ("student", "generator"):
        final = getattr(uninterrupted, network).state_dict()
        for key, value in getattr(resumed, network).state_dict().items():
            torch.testing.assert_close(value, final[key], rtol=0, atol=1e-6, msg=f"{network}.{key}")
    saved = torch.load(tmp_path / "ckpt" / "step=8.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(saved["generator.project.weight"], uninterrupted.generator.project.weight)  # it moved on
    assert not any(key.startswith("teacher.") for key in saved)


# ---------------------------------------------------------------------------------------------- gallery
def test_gallery_shows_images_and_a_collapsed_class_histogram(tmp_path: Path, cifar_folder: Path) -> None:
    collapsed = LinearNet()  # a teacher that calls every image a cat: the histogram must show total collapse
    torch.nn.init.zeros_(collapsed.linear.weight)
    collapsed.linear.bias.data = F.one_hot(torch.tensor(3), 10).float() * 10
    path = save_state_dict(collapsed, tmp_path / "collapsed.pt")
    module = DataFreeAdversarialDistillation(LinearNet(), LinearNet(), tiny_generator(), teacher_checkpoint=str(path))
    images = RecordImages()
    gallery = DFADGallery(every_n_epochs=2, num_images=8, num_samples=16)
    trainer = tiny_trainer(
        tmp_path, max_epochs=2, limit_val_batches=0, logger=[images, CSVLogger(tmp_path / "csv")], callbacks=[gallery]
    )
    trainer.fit(module, data_free(cifar_folder))
    assert [(key, size) for key, size, _ in images.images] == [
        ("dfad/generated_images", (8 * 66 + 2, 68)),  # 8 images enlarged to 64 pixels, one row, 2-pixel padding
        ("dfad/teacher_class_histogram", (321, 152)),  # 10 bars of 32 pixels, class names underneath
    ]  # after the second epoch only
    assert images.images[0][2] == "teacher's classes, row by row: " + ", ".join(["cat"] * 8)
    assert "entropy 0.00; top: cat 1.00" in images.images[1][2]
    metrics = trainer.callback_metrics
    assert metrics["dfad/teacher_class_entropy"] == 0
    assert metrics["dfad/teacher_class_fraction/cat"] == 1 and metrics["dfad/teacher_class_fraction/dog"] == 0
    csv_header = next((tmp_path / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    assert "dfad/teacher_class_entropy" in csv_header and "dfad/teacher_class_fraction/airplane" in csv_header


def test_learning_rate_per_epoch_equals_the_official_schedule_stepped_at_epoch_start() -> None:
    """DFAD_cifar.py:153-167: MultiStepLR([100, 200], 0.1) stepped at the *start* of every (1-based) epoch; Lightning
    steps ours at the end of every epoch. The rate each epoch trains with must be the same for all 300 epochs."""
    official_optimizer = SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    official = MultiStepLR(official_optimizer, [100, 200], 0.1)
    ours_optimizer = SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ours = dfad_lr_schedule(ours_optimizer)
    official_rates, our_rates = [], []
    for _epoch in range(1, 301):
        official.step()  # start of the official epoch
        official_rates.append(official_optimizer.param_groups[0]["lr"])
        our_rates.append(ours_optimizer.param_groups[0]["lr"])  # the rate our epoch trains with
        ours.step()  # end of our epoch (Lightning)
    assert our_rates == pytest.approx(official_rates)
    assert official_rates[98] == pytest.approx(0.1) and official_rates[99] == pytest.approx(0.01)
