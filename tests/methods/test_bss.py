from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn

from lit_kd.callbacks import BoundarySampleGallery, BoundarySampleMining
from lit_kd.callbacks.bss import boundary_attack, bss_weights, sample_target_classes, select_base_samples
from lit_kd.data import CIFAR10DataModule
from lit_kd.losses import soft_cross_entropy
from lit_kd.methods import BSSDistillation
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import RecordImages, tiny_cifar, tiny_trainer


# ------------------------------------------------------------------------------------------ helpers
def colour_teacher(sharpness: float = 40.0) -> nn.Sequential:
    """A teacher that is right on the generated test images: nearest class colour (support.data.class_image), linear.

    ``-s ||m - c||^2`` is, up to a term shared by all classes, ``2s c.m - s ||c||^2``: a linear layer on the mean
    colour ``m`` of the (normalised) image.
    """
    colours = torch.tensor([[(c * 37) % 256, (c * 91) % 256, (c * 53) % 256] for c in range(10)]) / 255.0
    prototypes = (colours - torch.tensor(CIFAR10DataModule.mean)) / torch.tensor(CIFAR10DataModule.std)
    classifier = nn.Linear(3, 10)
    with torch.no_grad():
        classifier.weight.copy_(2 * sharpness * prototypes)
        classifier.bias.copy_(-sharpness * prototypes.pow(2).sum(1))
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), classifier)


def make_bss(tmp_path: Path, student: nn.Module | None = None) -> BSSDistillation:
    teacher_path = save_state_dict(colour_teacher(), tmp_path / "teacher.pt")
    return BSSDistillation(student or TinyNet(), colour_teacher(), teacher_checkpoint=str(teacher_path))


def attached_mining(
    module: BSSDistillation, epoch: int = 0, num_epochs: int = 4, **kwargs: Any
) -> BoundarySampleMining:
    """A mining callback set up for ``epoch`` (counted from 0) without a trainer."""
    mining = BoundarySampleMining(num_epochs=num_epochs, **kwargs)
    mining.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)
    module.boundary_mining = mining
    return mining


def two_class_linear_teacher(gradient_norm: float = 1.0) -> nn.Sequential:
    """``f(x) = W x + b`` on 12 inputs; ``||w_1 - w_0|| = gradient_norm`` is the norm of the attack's gradient."""
    torch.manual_seed(0)
    layer = nn.Linear(12, 2).double()
    with torch.no_grad():
        scale = gradient_norm / (layer.weight[1] - layer.weight[0]).norm()
        layer.weight *= scale
        layer.bias *= scale
    return nn.Sequential(nn.Flatten(), layer)


def signed_distance(teacher: nn.Sequential, images: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Distance of each image to the teacher's boundary, negative on the side of its base class."""
    layer = teacher[1]
    target = 1 - base
    normal = layer.weight[target] - layer.weight[base]
    offset = layer.bias[target] - layer.bias[base]
    return ((normal * images.flatten(1)).sum(1) + offset) / normal.norm(dim=1)


# ------------------------------------------------------------------------------------------ the attack
def logit_margin(logits: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``f_b - f_k`` of a two-class teacher: positive while it predicts the base class."""
    return (logits.gather(1, base[:, None]) - logits.gather(1, 1 - base[:, None])).squeeze(1)


def test_attack_with_unit_step_lands_just_across_a_linear_boundary() -> None:
    # A step moves x by step_size * (f_b - f_k + 1e-4) along the unit gradient; with ||w_k - w_b|| = 1 the logit
    # margin is the distance to the plane, so step_size = 1 is the orthogonal projection, 1e-4 beyond.
    teacher = two_class_linear_teacher(gradient_norm=1.0)
    images = 0.3 * torch.randn(16, 3, 2, 2, dtype=torch.float64)
    base = teacher(images).argmax(1)
    before = signed_distance(teacher, images, base)
    result = boundary_attack(teacher, images, base, 1 - base, num_steps=10, step_size=1.0, clamp_range=None)
    assert (result.logits.argmax(1) != base).all() and result.steps.tolist() == [1] * 16
    after = signed_distance(teacher, result.images, base)
    torch.testing.assert_close(after, torch.full_like(after, 1e-4), rtol=1e-6, atol=1e-12)
    travelled = (result.images - images).flatten(1).norm(dim=1)
    torch.testing.assert_close(travelled, 1e-4 - before, rtol=1e-9, atol=1e-12)  # straight to the plane
    assert (after < 0.1 * travelled).all()  # just across, not far beyond


def test_attack_with_the_paper_step_stops_each_sample_once_it_crosses() -> None:
    teacher = two_class_linear_teacher(gradient_norm=1.0)
    images = 0.3 * torch.randn(16, 3, 2, 2, dtype=torch.float64)
    base = teacher(images).argmax(1)
    margin = logit_margin(teacher(images), base)
    # a step of 0.3 leaves 0.7 (m + 1e-4) - 1e-4 of the margin m: a sample crosses at the first n with
    # 0.7^n (m + 1e-4) < 1e-4, landing less than 0.3e-4 beyond, and then stays where it is
    expected_steps = torch.floor(torch.log(1e-4 / (margin + 1e-4)) / math.log(0.7)).long() + 1
    result = boundary_attack(teacher, images, base, 1 - base, num_steps=100, step_size=0.3, clamp_range=None)
    assert torch.equal(result.steps, expected_steps) and len(set(expected_steps.tolist())) > 3
    final_margin = logit_margin(result.logits, base)
    assert (final_margin < 0).all() and (final_margin > -0.3e-4 - 1e-12).all()

    # the official 10 steps: those that need more end 97% of the way there, the others where they crossed
    ten_steps = boundary_attack(teacher, images, base, 1 - base)
    far = expected_steps > 10
    assert 0 < far.sum() < 16
    expected = 0.7**10 * (margin[far] + 1e-4) - 1e-4
    torch.testing.assert_close(logit_margin(ten_steps.logits[far], base[far]), expected, rtol=1e-9, atol=1e-12)
    assert torch.equal(ten_steps.images[~far], result.images[~far])


def test_attack_with_a_steep_teacher_crosses_in_one_step() -> None:
    # with ||w_k - w_b|| = 5 a step of 0.3 removes 1.5 times the margin: across in one step, then stopped
    teacher = two_class_linear_teacher(gradient_norm=5.0)
    images = 0.3 * torch.randn(16, 3, 2, 2, dtype=torch.float64)
    base = teacher(images).argmax(1)
    margin = logit_margin(teacher(images), base)
    result = boundary_attack(teacher, images, base, 1 - base, clamp_range=None)
    assert result.steps.tolist() == [1] * 16
    torch.testing.assert_close(logit_margin(result.logits, base), -0.5 * margin - 1.5e-4, rtol=1e-9, atol=1e-12)


def test_attack_leaves_samples_that_are_already_across_and_clamps() -> None:
    teacher = two_class_linear_teacher()
    images = 0.3 * torch.randn(4, 3, 2, 2, dtype=torch.float64)
    prediction = teacher(images).argmax(1)
    base = prediction.clone()
    base[0] = 1 - prediction[0]  # the teacher does not predict this base class: nothing to move
    result = boundary_attack(teacher, images, base, 1 - base, step_size=1.0, clamp_range=(-0.35, 0.35))
    assert result.steps[0] == 0 and torch.equal(result.images[0], images[0].clamp(-0.35, 0.35))
    assert result.images.abs().max() <= 0.35


def test_attack_gives_no_parameter_a_gradient(tmp_path: Path) -> None:
    teacher = TinyNet(width=16).eval()  # requires_grad left on: the attack must still not touch .grad
    images = torch.randn(6, 3, 32, 32)
    base = teacher(images).argmax(1)
    result = boundary_attack(teacher, images, base, (base + 1) % 10)
    assert all(p.grad is None for p in teacher.parameters()) and not result.images.requires_grad

    module = make_bss(tmp_path)
    mining = attached_mining(module)
    images, targets = torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long)
    teacher_logits = module.teacher(images)
    targets = teacher_logits.argmax(1)  # every sample is a base sample
    samples = mining.mine(module.teacher, images, targets, teacher_logits, teacher_logits)  # both networks right
    assert samples is not None and len(samples) == 8
    assert all(p.grad is None for p in module.parameters())


# ------------------------------------------------------------------------------------------ selection
def official_base_samples(out_t: torch.Tensor, out_s: torch.Tensor, targets: torch.Tensor, attack_size: int = 64):
    """bhheo/BSS_distillation train_BSS_distillation.py:106-117 (commit 586b141), ported line by line; only the
    PyTorch 0.4 ``.data`` accessors are dropped."""
    condition1 = targets == out_t.sort(dim=1, descending=True)[1][:, 0]
    condition2 = targets == out_s.sort(dim=1, descending=True)[1][:, 0]
    attack_flag = condition1 & condition2
    if not attack_flag.sum():
        return []
    attack_idx = attack_flag.nonzero().squeeze(1)
    if attack_idx.shape[0] > attack_size:
        diff = (torch.softmax(out_t[attack_idx, :], 1) - torch.softmax(out_s[attack_idx, :], 1)) ** 2
        distill_score = diff.sum(dim=1) - diff.gather(1, targets[attack_idx].unsqueeze(1)).squeeze()
        attack_idx = attack_idx[distill_score.sort(descending=True)[1][:attack_size]]
    return attack_idx.tolist()


def test_base_samples_are_those_both_networks_get_right_ranked_by_non_label_disagreement() -> None:
    teacher = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 5).log()
    teacher[1] = torch.tensor([0.1, 0.7, 0.1, 0.1]).log()  # the teacher is wrong on sample 1
    student = torch.tensor(
        [
            [0.7, 0.1, 0.1, 0.1],  # 0: both right, agree: score 0
            [0.7, 0.1, 0.1, 0.1],  # 1: excluded (teacher wrong)
            [0.1, 0.3, 0.3, 0.3],  # 2: excluded (student wrong), though it disagrees most but one
            [0.5, 0.48, 0.01, 0.01],  # 3: both right; non-label 0.38^2 + 2 * 0.09^2 = 0.1606
            [0.1, 0.1, 0.1, 0.7],  # 4: excluded (student wrong), the largest disagreement
        ]
    ).log()
    targets = torch.zeros(5, dtype=torch.long)
    assert select_base_samples(teacher, student, targets, max_samples=64).tolist() == [0, 3]
    assert select_base_samples(teacher, student, targets, max_samples=1).tolist() == [3]
    assert official_base_samples(teacher, student, targets) == [0, 3]


@pytest.mark.parametrize("student_accuracy", [0.17, 0.5, 0.9])
def test_base_samples_equal_the_official_selection_on_random_batches(student_accuracy: float) -> None:
    """Batches of 256, a 99%-right teacher, students at several accuracies: the same samples, in the same order."""
    generator = torch.Generator().manual_seed(int(student_accuracy * 100))
    for _ in range(20):
        targets = torch.randint(0, 10, (256,), generator=generator)

        def logits(accuracy: float, labels: torch.Tensor) -> torch.Tensor:
            raw = torch.randn(256, 10, generator=generator)
            right = torch.rand(256, generator=generator) < accuracy
            boost = torch.where(right, 4.0, -4.0)
            return raw.scatter_add(1, labels[:, None], boost[:, None])

        teacher, student = logits(0.99, targets), logits(student_accuracy, targets)
        ours = select_base_samples(teacher, student, targets, max_samples=64).tolist()
        assert ours == official_base_samples(teacher, student, targets)
        assert all(student[i].argmax() == targets[i] for i in ours)  # never a sample the student gets wrong


def test_target_classes_are_drawn_from_the_other_classes_by_teacher_probability() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(20000, 1)
    drawn = sample_target_classes(logits)
    frequencies = drawn.bincount(minlength=4).float() / len(drawn)
    assert frequencies[0] == 0
    torch.testing.assert_close(frequencies[1:], torch.tensor([0.6, 0.3, 0.1]), atol=0.015, rtol=0)
    # all other probabilities underflow: the runner-up, as in the official cumulative draw
    assert sample_target_classes(torch.tensor([[0.0, -300.0, -200.0, -400.0]])).tolist() == [2]


# ------------------------------------------------------------------------------------------ schedule and loss
def test_weights_go_from_4_and_2_to_1_and_0_with_the_boundary_term_off_at_75_percent() -> None:
    assert bss_weights(0, 80) == (4.0, 2.0)
    assert bss_weights(80, 80) == (1.0, 0.0)
    assert bss_weights(59, 80)[1] > 0 and bss_weights(60, 80)[1] == 0.0
    weights = [bss_weights(epoch, 80) for epoch in range(1, 81)]
    assert all(a[0] > b[0] and a[1] >= b[1] for a, b in zip(weights, weights[1:], strict=False))
    with pytest.raises(ValueError, match="num_epochs"):
        bss_weights(1, 0)


def test_loss_is_cross_entropy_plus_weighted_soft_cross_entropies(tmp_path: Path) -> None:
    module = make_bss(tmp_path, student=colour_teacher(sharpness=20.0))  # right where the teacher is: base samples
    mining = attached_mining(module, epoch=0, num_epochs=4, max_samples=3)
    module.student.eval()  # BatchNorm on running statistics: a second forward gives the same logits
    images = torch.randn(8, 3, 32, 32)
    targets = module.teacher(images).argmax(1)
    torch.manual_seed(0)
    losses, logits = module.training_losses(images, targets)
    samples = mining.latest
    assert samples is not None and len(samples) == 3
    r, r_bss = bss_weights(1, 4)
    assert (mining.distillation_weight, mining.boundary_weight) == (r, r_bss)
    torch.testing.assert_close(samples.teacher_logits, module.teacher(samples.images))
    kd = soft_cross_entropy(logits, module.teacher(images), 3.0)
    boundary = soft_cross_entropy(module.student(samples.images), samples.teacher_logits, 3.0)
    ce = torch.nn.functional.cross_entropy(logits, targets)
    torch.testing.assert_close(losses["kd"], kd)
    torch.testing.assert_close(losses["boundary_kd"], boundary)
    torch.testing.assert_close(losses["loss"], ce + r * kd + r_bss * boundary)

    # the samples moved towards the boundary: the teacher's top-2 margin shrank
    def top2_margin(logits: torch.Tensor) -> torch.Tensor:
        top2 = logits.topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]

    assert (top2_margin(samples.teacher_logits) < top2_margin(module.teacher(samples.originals))).all()


def test_standardize_applies_to_both_soft_cross_entropies(tmp_path: Path) -> None:
    """``standardize=True``: both KD terms are the soft cross-entropy of the standardised logits (Sun et al., 2024)."""
    teacher_path = save_state_dict(colour_teacher(), tmp_path / "teacher.pt")
    module = BSSDistillation(
        colour_teacher(sharpness=20.0), colour_teacher(), teacher_checkpoint=str(teacher_path), standardize=True
    )
    mining = attached_mining(module, epoch=0, num_epochs=4, max_samples=3)
    module.student.eval()
    images = torch.randn(8, 3, 32, 32)
    targets = module.teacher(images).argmax(1)
    torch.manual_seed(0)
    losses, logits = module.training_losses(images, targets)
    samples = mining.latest
    assert samples is not None

    def standardized(logits: torch.Tensor) -> torch.Tensor:  # the official normalize, KD.py:7-10
        return (logits - logits.mean(-1, keepdim=True)) / (1e-7 + logits.std(-1, keepdim=True))

    kd = soft_cross_entropy(standardized(logits), standardized(module.teacher(images)), 3.0)
    boundary_logits = module.student(samples.images)
    boundary = soft_cross_entropy(standardized(boundary_logits), standardized(samples.teacher_logits), 3.0)
    torch.testing.assert_close(losses["kd"], kd)
    torch.testing.assert_close(losses["boundary_kd"], boundary)
    assert not torch.isclose(kd, soft_cross_entropy(logits, module.teacher(images), 3.0))


def test_module_without_its_callback_explains_what_to_add(tmp_path: Path) -> None:
    module = make_bss(tmp_path)
    with pytest.raises(RuntimeError, match="BoundarySampleMining"):
        module.training_losses(torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    with pytest.raises(RuntimeError, match=r"exactly one lit_kd.callbacks.BoundarySampleMining .*found 0"):
        BoundarySampleMining.find(tiny_trainer(tmp_path))


# ------------------------------------------------------------------------------------------ training runs
class RecordSchedule(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[tuple[float, float, int]] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        mining = BoundarySampleMining.find(trainer)
        self.epochs.append((mining.distillation_weight, mining.boundary_weight, len(mining.latest or [])))


def test_fit_follows_the_schedule_logs_statistics_and_shows_samples(tmp_path: Path, cifar_folder: Path) -> None:
    recorder, image_logger = RecordSchedule(), RecordImages()
    loggers = [TensorBoardLogger(tmp_path / "tb"), CSVLogger(tmp_path / "csv"), image_logger]
    trainer = tiny_trainer(tmp_path, max_epochs=4, logger=loggers, callbacks=[recorder, BoundarySampleGallery()])
    module = make_bss(tmp_path)
    trainer.fit(module, tiny_cifar(cifar_folder, crop_padding=0))
    assert module.boundary_mining is BoundarySampleMining.find(trainer)  # added by configure_callbacks
    assert [epoch[:2] for epoch in recorder.epochs] == [bss_weights(e, 4) for e in range(1, 5)]
    assert recorder.epochs[-1][:2] == (1.0, 0.0)
    assert [count > 0 for *_, count in recorder.epochs] == [True, True, False, False]  # no attack once r_bss = 0
    metrics = trainer.callback_metrics
    assert 0 < metrics["bss/success_rate"] <= 1 and 1 <= metrics["bss/mean_steps"] <= 10
    assert metrics["bss/perturbation_norm"] > 0 and 0 < metrics["bss/samples_per_batch"] <= 16
    # the gallery: epochs 1 and 2 (samples mined), to the image logger and TensorBoard, not to CSV
    assert [key for key, *_ in image_logger.images] == ["bss/boundary_samples"] * 2
    assert " -> " in image_logger.images[0][2] and image_logger.images[0][1][0] % 98 == 2  # columns of 96 + 2 px
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(loggers[0].log_dir)).Reload()
    assert "bss/boundary_samples" in events.Tags()["images"]


def test_explicit_callback_is_used_and_not_replaced(tmp_path: Path, cifar_folder: Path) -> None:
    mining = BoundarySampleMining(max_samples=2, num_epochs=10)
    trainer = tiny_trainer(tmp_path, max_epochs=10, max_steps=2, callbacks=[mining])
    module = make_bss(tmp_path)
    trainer.fit(module, tiny_cifar(cifar_folder, crop_padding=0))
    assert module.boundary_mining is mining and BoundarySampleMining.find(trainer) is mining
    assert mining.latest is not None and len(mining.latest) == 2


def test_resume_keeps_the_schedule_and_reproduces_the_run(tmp_path: Path, cifar_folder: Path) -> None:
    # 80 images, batch 16: 5 steps an epoch; step 7 is in the middle of epoch 1 (of 0, 1, 2)
    pl.seed_everything(0)
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=7, save_top_k=-1)
    uninterrupted = make_bss(tmp_path)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[checkpoints], enable_checkpointing=True)
    trainer.fit(uninterrupted, tiny_cifar(cifar_folder, crop_padding=0))
    checkpoint = tmp_path / "ckpt" / "step=7.ckpt"
    saved = torch.load(checkpoint, weights_only=True)["callbacks"]["BoundarySampleMining"]
    assert saved == {"num_epochs": 3, "num_steps_total": None}

    pl.seed_everything(0)
    resumed = make_bss(tmp_path)
    tiny_trainer(tmp_path, max_epochs=3).fit(resumed, tiny_cifar(cifar_folder, crop_padding=0), ckpt_path=checkpoint)
    for key, value in uninterrupted.student.state_dict().items():
        torch.testing.assert_close(resumed.student.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)

    # training longer than planned keeps the planned schedule (and says so)
    recorder = RecordSchedule()
    extended = tiny_trainer(tmp_path, max_epochs=4, callbacks=[recorder])
    with pytest.warns(UserWarning, match="num_epochs=3"):
        extended.fit(make_bss(tmp_path), tiny_cifar(cifar_folder, crop_padding=0), ckpt_path=checkpoint)
    assert BoundarySampleMining.find(extended).num_epochs == 3
    assert [epoch[:2] for epoch in recorder.epochs] == [bss_weights(e, 3) for e in (2, 3, 4)]


def test_bf16_mixed_precision_on_cpu_mines_under_autocast(tmp_path: Path, cifar_folder: Path) -> None:
    class RecordLatest(pl.Callback):
        def __init__(self) -> None:
            self.steps: list[tuple[torch.dtype, float]] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            latest = BoundarySampleMining.find(trainer).latest
            self.steps.append((latest.teacher_logits.dtype, outputs["loss"].item()))

    recorder = RecordLatest()
    trainer = tiny_trainer(
        tmp_path, precision="bf16-mixed", max_steps=2, callbacks=[BoundarySampleMining(num_epochs=4), recorder]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(make_bss(tmp_path, student=colour_teacher(20.0)), tiny_cifar(cifar_folder, crop_padding=0))
    assert len(recorder.steps) == 2
    assert all(dtype == torch.bfloat16 and math.isfinite(loss) for dtype, loss in recorder.steps)


class RecordMiningPerRank(pl.Callback):
    """Per rank: the batches' targets, whether every mined sample came from the rank's own batch, the weights."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.mined: list[int] = []
        self.from_own_batch: list[bool] = []
        self.targets: list[torch.Tensor] = []
        self.last_seen = None

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.targets.append(batch[1].clone())
        latest = BoundarySampleMining.find(trainer).latest
        if latest is not None and latest is not self.last_seen:  # mined in this step
            self.last_seen = latest
            self.mined.append(len(latest))
            # batch holds the normalised images the step saw
            matches = (latest.originals[:, None] == batch[0][None]).flatten(2).all(2).any(1)
            self.from_own_batch.append(bool(matches.all()))

    def on_train_end(self, trainer, module) -> None:
        torch.save(
            {
                "mined": self.mined,
                "from_own_batch": self.from_own_batch,
                "targets": torch.cat(self.targets),
                "weights": torch.cat([p.detach().flatten() for p in module.student.parameters()]),
                "teacher": {k: v.clone() for k, v in module.teacher.state_dict().items()},
            },
            self.out_dir / f"rank{trainer.global_rank}.pt",
        )


def test_ddp_two_processes_mine_their_own_shards(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    module = make_bss(tmp_path)
    teacher_before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    trainer = tiny_trainer(
        tmp_path, strategy="ddp_spawn", devices=2, max_epochs=2, callbacks=[RecordMiningPerRank(tmp_path)]
    )
    trainer.fit(module, tiny_cifar(cifar_folder, batch_size=8, crop_padding=0))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert not torch.equal(ranks[0]["targets"], ranks[1]["targets"])  # different shards
    assert all(rank["mined"] and all(rank["from_own_batch"]) for rank in ranks)
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])  # gradients all-reduced, attack leaked none
    for rank in ranks:
        assert all(torch.equal(rank["teacher"][k], v) for k, v in teacher_before.items())
    # epoch-level statistics are summed over both ranks: 5 batches each in epoch 1 (the last one mines nothing)
    total_mined = sum(sum(rank["mined"]) for rank in ranks)
    assert trainer.callback_metrics["bss/samples_per_batch"].item() == pytest.approx(total_mined / 10)


# ------------------------------------------------------------------------------------------ clamp and schedule length
def test_boundary_samples_stay_valid_images_in_the_data_normalisation() -> None:
    """With CIFAR-10 statistics the official (-2.5, 2.5) lets pixels leave [0, 1]; the default clamp does not."""
    mean, std = torch.tensor(CIFAR10DataModule.mean), torch.tensor(CIFAR10DataModule.std)
    assert ((-2.5 * std + mean) < 0).all() and ((2.5 * std + mean) > 1).all()
    mining = BoundarySampleMining(num_epochs=1)
    bounds = mining.resolve_bounds(SimpleNamespace(mean=CIFAR10DataModule.mean, std=CIFAR10DataModule.std))
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    images = (torch.rand(32, 3, 4, 4) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    base = teacher(images).argmax(1)
    attacked = boundary_attack(teacher, images, base, 1 - base, num_steps=10, step_size=50.0, clamp_range=bounds)
    pixels = attacked.images * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert (pixels <= 1e-6).any() and (pixels >= 1 - 1e-6).any()  # the bounds were reached: the clamp acted
    official = boundary_attack(teacher, images, base, 1 - base, num_steps=10, step_size=50.0, clamp_range=(-2.5, 2.5))
    official_pixels = official.images * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    assert official_pixels.min() < 0 or official_pixels.max() > 1


class RecordWeightsPerStep(pl.Callback):
    def __init__(self) -> None:
        self.weights: list[tuple[float, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        mining = BoundarySampleMining.find(trainer)
        self.weights.append((mining.distillation_weight, mining.boundary_weight))


def test_schedule_is_counted_in_steps_when_the_trainer_has_only_max_steps(tmp_path: Path, cifar_folder: Path) -> None:
    recorder = RecordWeightsPerStep()
    trainer = tiny_trainer(tmp_path, max_epochs=None, max_steps=8, callbacks=[recorder])
    trainer.fit(make_bss(tmp_path), tiny_cifar(cifar_folder, crop_padding=0))
    mining = BoundarySampleMining.find(trainer)
    assert mining.num_steps_total == 8 and mining.num_epochs is None
    assert recorder.weights == [bss_weights(step, 8) for step in range(1, 9)]


def test_max_samples_0_leaves_the_clean_sample_terms_alone(tmp_path: Path) -> None:
    """The ablation: no boundary sample is mined, and the loss is BSS's cross-entropy plus its weighted KD term."""
    module = make_bss(tmp_path, student=colour_teacher(sharpness=20.0))  # base samples exist (see the test above)
    mining = attached_mining(module, epoch=0, num_epochs=4, max_samples=0)
    module.student.eval()
    images = torch.randn(8, 3, 32, 32)
    targets = module.teacher(images).argmax(1)
    losses, logits = module.training_losses(images, targets)
    r, r_bss = bss_weights(1, 4)
    assert r_bss > 0 and mining.latest is None and losses["boundary_kd"] == 0
    kd = soft_cross_entropy(logits, module.teacher(images), 3.0)
    torch.testing.assert_close(losses["loss"], torch.nn.functional.cross_entropy(logits, targets) + r * kd)
    with pytest.raises(ValueError, match="max_samples must be >= 0"):
        BoundarySampleMining(max_samples=-1)
