"""cGAN-KD: GAN networks and losses, the GAN module (schedule, DDP, resume), synthesis, filtering, synthetic sets."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_kd.callbacks import GeneratorGallery
from lit_kd.data import CorruptDatasetError, UTKFaceDataModule, load_synthetic_set, save_synthetic_set
from lit_kd.data.synthetic import file_sha256
from lit_kd.losses.gan import (
    default_kappa,
    hinge_discriminator_loss,
    hinge_generator_loss,
    rule_of_thumb_sigma,
    sample_vicinal_batch,
    vicinal_weights,
    vicinity_radius,
)
from lit_kd.methods import HintonKD, SupervisedModule
from lit_kd.models import ConditionalGenerator, ProjectionDiscriminator, create_model
from lit_kd.synthesis import (
    classification_keep_mask,
    load_conditional_gan,
    regression_keep_mask,
    rejection_sampling_mask,
    run,
    synthesize,
)
from lit_kd.synthesis import main as synthesis_main
from tests.support.cgan import (
    GreyLevelTeacher,
    ImageCollector,
    LabelPainter,
    RecordGANWeights,
    SnapshotEveryStep,
    flat_weights,
    tiny_gan,
)
from tests.support.networks import TinyNet, save_state_dict
from tests.support.training import tiny_cifar, tiny_trainer


# ------------------------------------------------------------------------------------------------- losses
def test_hinge_losses_and_their_weights_match_hand_computed_values() -> None:
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 0.5])
    # real terms relu(1 - s): 0, 0.5, 2 -> mean 5/6; fake terms relu(1 + s): 0, 1, 1.5 -> mean 5/6
    torch.testing.assert_close(hinge_discriminator_loss(real, fake), torch.tensor(5 / 3))
    weights = torch.tensor([1.0, 0.0, 0.5])  # real 0 + 0 + 1 -> 1/3; fake 0 + 0 + 0.75 -> 0.25
    torch.testing.assert_close(hinge_discriminator_loss(real, fake, weights, weights), torch.tensor(1 / 3 + 0.25))
    torch.testing.assert_close(hinge_generator_loss(fake), torch.tensor(2.5 / 3))


def test_vicinal_weights_sigma_and_kappa_match_hand_computed_values() -> None:
    labels, targets = torch.tensor([0.30, 0.50, 0.70]), torch.tensor([0.40, 0.40, 0.40])
    assert vicinal_weights(labels, targets, "hard", kappa=0.1).tolist() == [1.0, 1.0, 0.0]  # |0.3 - 0.4| = 0.1 kept
    expected = [math.exp(-50 * 0.01), math.exp(-50 * 0.01), math.exp(-50 * 0.09)]
    torch.testing.assert_close(vicinal_weights(labels, targets, "soft", kappa=50.0), torch.tensor(expected))
    assert vicinity_radius("hard", 0.1) == 0.1
    assert vicinity_radius("soft", 50.0, 1e-3) == pytest.approx(math.sqrt(math.log(1000) / 50))
    ages = torch.tensor([1.0, 2.0, 4.0, 4.0]) / 4  # distinct gaps 0.25, 0.5
    assert default_kappa(ages, "hard") == pytest.approx(1.0)
    assert default_kappa(ages, "soft", multiplier=1) == pytest.approx(4.0)  # 1 / 0.5^2
    std = torch.tensor([0.25, 0.5, 1.0, 1.0]).std(unbiased=False).item()
    assert rule_of_thumb_sigma(ages) == pytest.approx(1.06 * std * 4 ** (-0.2))


def test_vicinal_batch_draws_real_samples_and_fake_labels_in_each_targets_vicinity() -> None:
    torch.manual_seed(0)
    labels = torch.rand(64)
    for vicinity, kappa in (("hard", 0.05), ("soft", 400.0)):
        plan = sample_vicinal_batch(labels, labels.unique(), 32, sigma=0.05, vicinity=vicinity, kappa=kappa)
        radius = vicinity_radius(vicinity, kappa)
        assert ((labels[plan.real_index] - plan.targets).abs() <= radius + 1e-6).all()
        assert ((plan.fake_labels - plan.targets).abs() <= radius + 1e-6).all()
        assert (plan.fake_labels >= 0).all() and (plan.fake_labels <= 1).all()
        torch.testing.assert_close(
            plan.real_weights, vicinal_weights(labels[plan.real_index], plan.targets, vicinity, kappa)
        )
        torch.testing.assert_close(plan.fake_weights, vicinal_weights(plan.fake_labels, plan.targets, vicinity, kappa))
    with pytest.raises(RuntimeError, match="increase kappa"):
        pool = torch.tensor([0.0, 1.0])
        sample_vicinal_batch(pool, pool, 2, sigma=5.0, vicinity="hard", kappa=1e-6, max_redraws=5)


def official_target_labels(unique_train_labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """UBCDingXin/cGAN-KD UTKFace/train_ccgan.py:100 (commit 8fcb117): the labels the noise is added to."""
    return rng.choice(unique_train_labels, size=size, replace=True)


def test_ccgan_conditioning_labels_are_uniform_over_the_distinct_training_labels(tmp_path: Path) -> None:
    """Ages where one occurs 90 times as often as each other: CcGAN conditions on every distinct age equally often.

    A chi-square test against the uniform law over distinct labels (the official draw), and against the
    frequencies of the data (what drawing from the batch's labels gives): only the first fits.
    """

    def chi_square(observed: np.ndarray, expected: np.ndarray | None = None) -> float:
        expected = np.full(len(observed), observed.sum() / len(observed)) if expected is None else expected
        return float(((observed - expected) ** 2 / expected).sum())

    critical = 18.47  # the 0.999 quantile of chi-square with 4 degrees of freedom

    distinct = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0]) / 60
    train_labels = torch.cat([distinct[:1].repeat(360), distinct[1:].repeat_interleave(4)])  # 360 : 4 : 4 : 4 : 4
    torch.manual_seed(0)
    drawn = [sample_vicinal_batch(train_labels, distinct, 100, 0.005, "hard", 0.05).targets for _ in range(40)]
    nearest = (torch.cat(drawn)[:, None] - distinct[None, :]).abs().argmin(1)  # noise 0.005 << gaps of 1/6
    counts = nearest.bincount(minlength=5).numpy()
    official = official_target_labels(distinct.numpy(), 4000, np.random.default_rng(0))
    official_counts = np.array([(np.abs(official - value) < 1e-6).sum() for value in distinct.numpy()])
    assert chi_square(counts) < critical and chi_square(official_counts) < critical
    frequencies = np.array([360, 4, 4, 4, 4]) / 376 * counts.sum()
    assert chi_square(counts, frequencies) > 100 * critical


# ----------------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize(
    ("num_classes", "image_size", "labels"), [(10, 32, ([0, 0], [3, 7])), (None, 64, ([0.2] * 2, [0.9] * 2))]
)
def test_conditioning_changes_the_generator_output_and_the_discriminator_score(num_classes, image_size, labels) -> None:
    torch.manual_seed(0)
    generator = ConditionalGenerator(num_classes, image_size, latent_dim=8, base_channels=4, embed_dim=32).eval()
    discriminator = ProjectionDiscriminator(num_classes, image_size, base_channels=4, embed_dim=32).eval()
    first, second = (torch.tensor(values) for values in labels)
    noise = torch.randn(2, 8)
    with torch.no_grad():
        images = generator(noise, first)
        assert images.shape == (2, 3, image_size, image_size) and images.abs().max() <= 1
        assert torch.equal(images, generator(noise, first))  # same noise, same label: same image
        assert (images - generator(noise, second)).abs().mean() > 1e-4  # same noise, other label: other image
        assert (discriminator(images, first) - discriminator(images, second)).abs().min() > 1e-6


def test_networks_refuse_unsupported_sizes_and_label_settings() -> None:
    with pytest.raises(ValueError, match="image_size must be one of"):
        ConditionalGenerator(10, image_size=48)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        ProjectionDiscriminator(1)
    with pytest.raises(ValueError, match="differ"):
        tiny_gan(10).__class__(ConditionalGenerator(10, 32), ProjectionDiscriminator(None, 32))


# ------------------------------------------------------------------------------------------------ filters
def test_classification_filter_keeps_and_drops_hand_made_examples() -> None:
    probabilities = torch.tensor(
        [
            [0.90, 0.05, 0.05],  # conditioned on 0: agrees, confident -> kept
            [0.55, 0.40, 0.05],  # conditioned on 0: agrees, below 0.6 -> dropped
            [0.10, 0.85, 0.05],  # conditioned on 0: the teacher sees class 1 -> dropped
            [0.30, 0.30, 0.40],  # conditioned on 2: agrees at 0.4 -> dropped at 0.6, kept at 0.4
            [0.35, 0.05, 0.60],  # conditioned on 2: agrees, exactly 0.6 -> kept
        ]
    )
    labels = torch.tensor([0, 0, 0, 2, 2])
    assert classification_keep_mask(probabilities, labels, min_confidence=0.6).tolist() == [1, 0, 0, 0, 1]
    assert classification_keep_mask(probabilities, labels, min_confidence=0.4).tolist() == [1, 1, 0, 1, 1]
    # without agreement a confident-enough conditioning class is enough: row 2 has p(0) = 0.1
    assert classification_keep_mask(probabilities, labels, 0.1, require_agreement=False).tolist() == [1, 1, 1, 1, 1]
    # cGAN-KD's filter: cross-entropy below its 40% quantile (p(label): 0.9, 0.55, 0.1, 0.4, 0.6)
    kept = classification_keep_mask(probabilities, labels, 0.0, False, keep_quantile=0.4)
    assert kept.tolist() == [1, 0, 0, 0, 1]


def test_classification_filter_takes_its_quantile_per_class_when_asked() -> None:
    """Class 0's samples are confident (p 0.9, 0.8), class 1's are not (p 0.3, 0.2): cross-entropies 0.105, 0.223,
    1.204, 1.609. Pooled, the median cutoff (0.223 + 1.204) / 2 keeps class 0 only; per class (cGAN-KD's CIFAR-100
    code) each class keeps its better half."""
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.8, 0.2]])
    labels = torch.tensor([0, 0, 1, 1])
    pooled = classification_keep_mask(probabilities, labels, 0.0, False, keep_quantile=0.5)
    per_class = classification_keep_mask(probabilities, labels, 0.0, False, keep_quantile=0.5, groups=labels)
    assert pooled.tolist() == [True, True, False, False]
    assert per_class.tolist() == [True, False, True, False]


def test_a_per_class_quantile_is_refused_where_it_has_no_classes_or_no_quantile(tmp_path: Path, utkface_folder) -> None:
    from lit_kd.synthesis import run

    utkface = UTKFaceDataModule(utkface_folder, use_cache=False)
    options = dict(teacher=TinyNet(1), teacher_checkpoint="unused", output_dir=str(tmp_path), gan_checkpoint="unused")
    with pytest.raises(ValueError, match="quantile_per_label applies to classification with a keep_quantile"):
        run(data=utkface, keep_quantile=0.7, quantile_per_label=True, **options)
    cifar = tiny_cifar(tmp_path)
    with pytest.raises(ValueError, match="quantile_per_label applies to classification with a keep_quantile"):
        run(data=cifar, quantile_per_label=True, **options)


def test_regression_filter_keeps_samples_within_the_tolerance() -> None:
    predictions = torch.tensor([0.5, 0.25, 0.75, 0.125, 0.625])  # binary fractions: exact errors
    labels = torch.tensor([0.4375, 0.5, 0.75, 0.5, 0.5])  # errors 1/16, 1/4, 0, 3/8, 1/8
    assert regression_keep_mask(predictions, labels, tolerance=0.125).tolist() == [1, 0, 1, 0, 1]
    assert regression_keep_mask(predictions, labels, tolerance=0.0).tolist() == [0, 0, 1, 0, 0]
    assert regression_keep_mask(predictions, labels, keep_quantile=0.5).tolist() == [1, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="tolerance or a keep_quantile"):
        regression_keep_mask(predictions, labels)


def test_synthesize_filters_relabels_and_counts_per_label() -> None:
    data = SimpleNamespace(task="classification", num_classes=4, mean=(0.5,) * 3, std=(0.5,) * 3)
    teacher = GreyLevelTeacher(4, confused=3)  # reads class 3 as class 2 (p = 0.55)
    images, targets, counts = synthesize(LabelPainter(4), teacher, data, {}, per_label=5, min_confidence=0.5)
    assert len(images) == len(targets) == 15 and images.dtype == torch.uint8
    assert targets.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert counts["3"] == {"generated": 5, "subsampled_out": 0, "kept": 0, "dropped": 5}
    # without agreement and confidence, the class-3 samples stay, relabelled by the teacher as class 2
    _, targets, counts = synthesize(LabelPainter(4), teacher, data, {}, 5, min_confidence=0.0, require_agreement=False)
    assert targets.tolist()[-5:] == [2] * 5 and counts["3"]["kept"] == 5
    _, _, counts = synthesize(LabelPainter(4), teacher, data, {}, 5, min_confidence=0.0, max_per_label=2)
    assert [c["kept"] for c in counts.values()] == [2, 2, 2, 0]
    with pytest.raises(ValueError, match=r"outputs \(1,\) per image, but the data has 4 classes"):
        synthesize(LabelPainter(4), GreyLevelTeacher(1), data, {}, per_label=1)

    data = SimpleNamespace(task="regression", num_classes=1, mean=(0.5,) * 3, std=(0.5,) * 3, target_scale=60.0)
    record = {"label_min": 0.0, "label_max": 1.0, "num_distinct_labels": 5}  # grid 0, 0.25, ..., 1
    teacher = GreyLevelTeacher(1, offset=0.1)  # 6 years too old above 0.6
    _, targets, counts = synthesize(LabelPainter(None), teacher, data, record, per_label=3, tolerance=3.0)
    assert [c["kept"] for c in counts.values()] == [3, 3, 3, 0, 0]
    torch.testing.assert_close(targets, torch.tensor([0.0, 0.25, 0.5]).repeat_interleave(3), atol=0.01, rtol=0)
    _, targets, _ = synthesize(LabelPainter(None), teacher, data, record, per_label=3, tolerance=7.0)
    assert targets.max() == 1.0  # relabelled 1.1, clipped to the [0, 1] label range


def test_rejection_sampling_accepts_by_score_relative_to_the_best_of_each_label() -> None:
    scores = torch.tensor([5.0, -45.0, 0.0, 0.0, math.log(0.5)])
    groups = torch.tensor([0, 0, 1, 1, 1])  # acceptance probabilities 1, e^-50, 1, 1, 0.5
    accepted = torch.stack(
        [rejection_sampling_mask(scores, groups, torch.Generator().manual_seed(s)) for s in range(400)]
    )
    assert accepted[:, [0, 2, 3]].all() and not accepted[:, 1].any()
    assert 0.4 < accepted[:, 4].float().mean() < 0.6


# ----------------------------------------------------------------------------------------- synthetic sets
def make_set(directory: Path, count: int = 5, size: int = 32, task: str = "classification") -> tuple:
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8)
    targets = torch.arange(count) % 10 if task == "classification" else torch.linspace(0, 1, count)
    save_synthetic_set(directory, images, targets, {"task": task, "num_classes": 10 if task == "classification" else 1})
    return images, targets


def test_synthetic_set_reloads_with_the_same_images_and_labels(tmp_path: Path) -> None:
    for task in ("classification", "regression"):
        images, targets = make_set(tmp_path / task, task=task)
        loaded = load_synthetic_set(tmp_path / task, image_size=32, task=task)
        assert torch.equal(loaded.images, images) and torch.equal(loaded.targets, targets)
        assert loaded.targets.dtype == targets.dtype and loaded.provenance["count"] == 5


def test_synthetic_set_refuses_corrupt_or_mismatched_sets(tmp_path: Path) -> None:
    make_set(tmp_path / "set")
    with pytest.raises(CorruptDatasetError, match="image_size=32.*image_size=64"):
        load_synthetic_set(tmp_path / "set", image_size=64)
    with pytest.raises(CorruptDatasetError, match="task='classification'.*task='regression'"):
        load_synthetic_set(tmp_path / "set", task="regression")
    with pytest.raises(CorruptDatasetError, match="num_classes=10.*num_classes=100"):
        load_synthetic_set(tmp_path / "set", num_classes=100)
    targets = tmp_path / "set" / "targets.pt"
    torch.save(torch.arange(5) % 3, targets)  # other labels, same shape: caught by the recorded hash
    with pytest.raises(CorruptDatasetError, match="targets.pt: SHA-256 differs"):
        load_synthetic_set(tmp_path / "set")
    targets.unlink()
    with pytest.raises(CorruptDatasetError, match=r"missing \['targets.pt'\]"):
        load_synthetic_set(tmp_path / "set")
    with pytest.raises(ValueError, match="targets must be torch.float32"):
        save_synthetic_set(
            tmp_path / "bad",
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            torch.zeros(2, dtype=torch.long),
            {"task": "regression"},
        )


def test_datamodule_appends_the_synthetic_set_to_training_only(tmp_path: Path, cifar_folder: Path) -> None:
    images, targets = make_set(tmp_path / "set", count=7)
    data = tiny_cifar(cifar_folder, synthetic_dir=tmp_path / "set")
    data.setup("fit")
    assert len(data.train_set.targets) == 80 + 7 and len(data.val_set.targets) == 40
    stored = {bytes(image.numpy()): int(target) for image, target in zip(*data.train_set, strict=True)}
    assert all(stored.get(bytes(image.numpy())) == int(target) for image, target in zip(images, targets, strict=True))
    make_set(tmp_path / "big", size=64)
    with pytest.raises(CorruptDatasetError, match="image_size"):
        tiny_cifar(cifar_folder, synthetic_dir=tmp_path / "big").setup("fit")


# -------------------------------------------------------------------------------------------- GAN module
def test_each_step_updates_only_the_scheduled_network(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    snapshots = SnapshotEveryStep()
    tiny_trainer(tmp_path, max_epochs=2, max_steps=6, callbacks=[snapshots]).fit(
        tiny_gan(discriminator_steps=2), tiny_cifar(cifar_folder)
    )
    # (generator moved, discriminator moved): D, D, G, D, D, G. Adam would move an idle network with zero gradients
    # (its momentum), so this also shows that the idle side's gradients are dropped, not zeroed.
    d_step, g_step = (False, True), (True, False)
    assert snapshots.moved() == [d_step, d_step, g_step, d_step, d_step, g_step]


def test_setup_refuses_networks_that_do_not_fit_the_data(tmp_path: Path, cifar_folder: Path) -> None:
    for gan, message in (
        (tiny_gan(5), "num_classes to 10"),
        (tiny_gan(None), "num_classes to 10"),
        (tiny_gan(10, 64), "image_size to 32"),
    ):
        with pytest.raises(ValueError, match=message):
            tiny_trainer(tmp_path, fast_dev_run=1).fit(gan, tiny_cifar(cifar_folder))


def test_mid_epoch_resume_gives_the_same_networks_as_an_uninterrupted_run(tmp_path: Path, cifar_folder: Path) -> None:
    # 80 images, batch 16: 5 steps an epoch; the checkpoint at step 7 is in the middle of epoch 1
    pl.seed_everything(0)
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=7, save_top_k=-1)
    uninterrupted = tiny_gan(discriminator_steps=2)
    trainer = tiny_trainer(tmp_path, max_epochs=3, callbacks=[checkpoints], enable_checkpointing=True)
    trainer.fit(uninterrupted, tiny_cifar(cifar_folder))
    assert trainer.global_step == 15

    pl.seed_everything(0)
    resumed = tiny_gan(discriminator_steps=2)
    resumed_trainer = tiny_trainer(tmp_path, max_epochs=3)
    resumed_trainer.fit(resumed, tiny_cifar(cifar_folder), ckpt_path=tmp_path / "ckpt" / "step=7.ckpt")
    assert resumed_trainer.global_step == 15
    for name in ("generator", "discriminator"):
        expected = getattr(uninterrupted, name).state_dict()
        for key, value in getattr(resumed, name).state_dict().items():
            torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6, msg=f"{name}.{key}")

    pl.seed_everything(1)  # guard: another seed does not end at the same generator
    other = tiny_gan(discriminator_steps=2)
    tiny_trainer(tmp_path, max_epochs=3).fit(other, tiny_cifar(cifar_folder))
    assert not torch.allclose(flat_weights(other.generator), flat_weights(uninterrupted.generator))


def test_two_cpu_processes_keep_generator_and_discriminator_in_sync(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    gan = tiny_gan(discriminator_steps=1)
    initial = (flat_weights(gan.generator), flat_weights(gan.discriminator))
    trainer = tiny_trainer(
        tmp_path, strategy="ddp_spawn", devices=2, max_epochs=1, callbacks=[RecordGANWeights(tmp_path)]
    )
    trainer.fit(gan, tiny_cifar(cifar_folder, batch_size=8))  # 80 images, 2 ranks: 5 steps (D, G, D, G, D)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["global_step"] == ranks[1]["global_step"] == 5
    for index, name in enumerate(("generator", "discriminator")):
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # gradients all-reduced, buffers broadcast
        assert not torch.equal(ranks[0][name], initial[index]), name  # and both networks trained
    assert torch.equal(flat_weights(gan.generator), ranks[0]["generator"])  # the main process got them back


def test_gallery_logs_one_row_per_label(tmp_path: Path, cifar_folder: Path, utkface_folder: Path) -> None:
    collector = ImageCollector()
    gallery = GeneratorGallery(num_labels=3, samples_per_label=2)
    trainer = tiny_trainer(tmp_path, logger=collector, limit_train_batches=2, callbacks=[gallery])
    trainer.fit(tiny_gan(), tiny_cifar(cifar_folder))
    (logged,) = collector.images
    assert logged["key"] == "cgan/samples" and logged["images"][0].size == (2 * 34 + 2, 3 * 34 + 2)
    assert logged["caption"][0].startswith("rows (labels): airplane, automobile, bird")

    collector = ImageCollector()
    trainer = tiny_trainer(
        tmp_path, logger=collector, limit_train_batches=2, callbacks=[GeneratorGallery(num_labels=2)]
    )
    trainer.fit(tiny_gan(None, 64), UTKFaceDataModule(utkface_folder, batch_size=4, use_cache=False))
    caption = collector.images[0]["caption"][0]  # ages (years) between the 5% and 95% quantiles of the training ages
    low, high = (float(age) for age in caption.split(": ")[1].split(";")[0].split(", "))
    assert 1 <= low < high <= 60


# ------------------------------------------------------------------------------------------- end to end
def test_tiny_classification_pipeline_gan_synthesis_then_kd_on_real_plus_synthetic(
    tmp_path: Path, cifar_folder: Path
) -> None:
    pl.seed_everything(0)
    checkpoint = ModelCheckpoint(tmp_path / "gan", filename="gan")
    tiny_trainer(tmp_path, max_steps=2, callbacks=[checkpoint], enable_checkpointing=True).fit(
        tiny_gan(), tiny_cifar(cifar_folder)
    )
    gan_path = tmp_path / "gan" / "gan.ckpt"
    generator, _, record = load_conditional_gan(gan_path)
    assert record["generator"]["init_args"]["base_channels"] == 4 and not generator.training

    teacher_path = save_state_dict(create_model("resnet8", num_classes=10), tmp_path / "teacher.pt")
    synthesis_main(
        [
            f"--gan_checkpoint={gan_path}",
            "--teacher=lit_kd.models.CifarResNet",
            "--teacher.depth=8",
            "--teacher.num_classes=10",
            f"--teacher_checkpoint={teacher_path}",
            "--data=lit_kd.data.CIFAR10DataModule",
            f"--output_dir={tmp_path / 'synthetic'}",
            "--per_label=3",
            "--min_confidence=0.0",
            "--require_agreement=false",
            "--keep_quantile=0.5",  # an untrained teacher: keep the half it is surest about
            "--quantile_per_label=true",  # one cutoff per class, as cGAN-KD's CIFAR-100 code
            "--subsampling=true",
        ]
    )
    synthetic = load_synthetic_set(tmp_path / "synthetic", image_size=32, task="classification", num_classes=10)
    counts = synthetic.provenance["counts"]
    assert counts["generated"] == 30 and 0 < counts["kept"] == len(synthetic.targets) < 30
    subsampled_out = sum(c["subsampled_out"] for c in counts["per_label"].values())
    assert synthetic.provenance["subsampling"] == "discriminator rejection sampling" and 0 < subsampled_out < 30
    assert sum(c["kept"] for c in counts["per_label"].values()) == counts["kept"]
    assert synthetic.provenance["generator"]["sha256"] == file_sha256(gan_path)
    assert synthetic.provenance["filter"]["keep_quantile"] == 0.5
    assert synthetic.provenance["filter"]["keep_quantile_scope"] == "per label"

    data = tiny_cifar(cifar_folder, synthetic_dir=tmp_path / "synthetic")
    student = HintonKD(TinyNet(), create_model("resnet8", num_classes=10), teacher_checkpoint=str(teacher_path))
    tiny_trainer(tmp_path, fast_dev_run=1).fit(student, data)
    assert len(data.train_set.targets) == 80 + counts["kept"]
    assert torch.isfinite(torch.tensor(float(student.trainer.callback_metrics["train/loss"])))


def test_tiny_regression_pipeline_ccgan_synthesis_then_student_on_real_plus_synthetic(
    tmp_path: Path, utkface_folder: Path
) -> None:
    pl.seed_everything(0)

    def utkface(**kwargs):
        return UTKFaceDataModule(utkface_folder, batch_size=4, use_cache=False, **kwargs)

    gan = tiny_gan(None, 64, discriminator_steps=1)
    checkpoint = ModelCheckpoint(tmp_path / "gan", filename="gan")
    tiny_trainer(tmp_path, max_steps=2, callbacks=[checkpoint], enable_checkpointing=True).fit(gan, utkface())
    assert gan.kernel_sigma > 0 and gan.kappa > 0  # CcGAN's rule of thumb and default kappa from the labels
    teacher = create_model("resnet8", num_classes=1)
    teacher_path = save_state_dict(teacher, tmp_path / "teacher.pt")
    directory = run(
        str(tmp_path / "gan" / "gan.ckpt"),
        teacher,
        str(teacher_path),
        utkface(),
        str(tmp_path / "synthetic"),
        per_label=2,
        tolerance=60.0,
        device="cpu",
    )
    synthetic = load_synthetic_set(directory, image_size=64, task="regression", num_classes=1)
    assert ((synthetic.targets >= 0) & (synthetic.targets <= 1)).all()
    distinct_training_ages = gan.label_range["num_distinct_labels"]
    assert synthetic.provenance["counts"]["generated"] == 2 * distinct_training_ages
    assert len(synthetic.provenance["counts"]["per_label"]) == distinct_training_ages

    data = utkface(synthetic_dir=directory)
    student = SupervisedModule(create_model("resnet8", num_classes=1))
    tiny_trainer(tmp_path, fast_dev_run=1).fit(student, data)
    real = len(utkface().split_indices()["train"])
    assert len(data.train_set.targets) == real + len(synthetic.targets)
    assert {"train/loss", "val/mae"} <= set(student.trainer.callback_metrics)
