"""Online distillation: DML, AFD, the cyclic pair schedule and the discriminator update schedule."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_kd.callbacks import CyclicPairSchedule, DiscriminatorUpdateSchedule, GeneratorUpdateSchedule
from lit_kd.losses import FeatureDiscriminator, discriminator_loss, generator_loss
from lit_kd.methods import DeepMutualLearning, HintonKD, OnlineAdversarialFeatureKD, load_network_weights
from lit_kd.models import CifarResNet, create_model
from tests.support.networks import TinyNet
from tests.support.training import tiny_cifar, tiny_trainer


def afd_pair(**kwargs) -> OnlineAdversarialFeatureKD:
    """Two narrow ResNet-8s (16 and 32 channels at the last stage): adapters and discriminators are all in play."""
    small = CifarResNet(8, stem_channels=4, stage_channels=(4, 8, 16))
    large = CifarResNet(8, stem_channels=8, stage_channels=(8, 16, 32))
    return OnlineAdversarialFeatureKD([small, large], **kwargs)


def all_weights(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


class RecordPairs(pl.Callback):
    def __init__(self) -> None:
        self.pairs: list[list[tuple[int, int]]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.pairs.append(module.active_pairs())


class RecordWeightsPerRank(pl.Callback):
    """Writes, per rank, every parameter of the module (networks, adapters, discriminators) after training."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer, module) -> None:
        torch.save(all_weights(module), self.out_dir / f"rank{trainer.global_rank}.pt")


def test_dml_loss_matches_hand_computation_for_two_peers() -> None:
    module = DeepMutualLearning([TinyNet(num_classes=3), TinyNet(num_classes=3)])
    logits = [torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])]
    targets = torch.tensor([0])
    losses = module.mutual_losses(logits, targets, module.active_pairs())
    p = [[math.exp(v) / sum(math.exp(w) for w in row[0].tolist()) for v in row[0].tolist()] for row in logits]
    kl_0 = sum(p[1][k] * math.log(p[1][k] / p[0][k]) for k in range(3))  # KL(p_1 || p_0): peer 1 teaches peer 0
    kl_1 = sum(p[0][k] * math.log(p[0][k] / p[1][k]) for k in range(3))
    assert losses["net0/ce"].item() == pytest.approx(-math.log(p[0][0]), abs=1e-6)
    assert losses["net0/kl"].item() == pytest.approx(kl_0, abs=1e-6)
    assert losses["net1/kl"].item() == pytest.approx(kl_1, abs=1e-6)
    assert losses["loss"].item() == pytest.approx(-math.log(p[0][0]) - math.log(p[1][0]) + kl_0 + kl_1, abs=1e-5)


def test_dml_peer_targets_are_detached() -> None:
    logits = [torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)]
    module = DeepMutualLearning([TinyNet(num_classes=5), TinyNet(num_classes=5)])
    module.mutual_losses(logits, torch.zeros(4, dtype=torch.long), module.active_pairs())["net0/kl"].backward()
    assert logits[0].grad is not None and logits[0].grad.abs().sum() > 0
    assert logits[1].grad is None


def test_discriminator_and_network_losses_move_in_opposite_directions() -> None:
    torch.manual_seed(0)
    real = torch.randn(16, 8, 4, 4) + 2.0
    fake = torch.nn.Parameter(torch.randn(16, 8, 4, 4))  # the "network": its feature maps are trainable directly
    discriminator = FeatureDiscriminator(8)

    def losses() -> tuple[float, float]:
        with torch.no_grad():
            return (
                discriminator_loss(discriminator(real), discriminator(fake)).item(),
                generator_loss(discriminator(fake)).item(),
            )

    start_d, start_g = losses()
    optimizer = torch.optim.SGD(discriminator.parameters(), lr=0.1)
    for _ in range(20):  # discriminator steps
        optimizer.zero_grad()
        discriminator_loss(discriminator(real), discriminator(fake.detach())).backward()
        optimizer.step()
    mid_d, mid_g = losses()
    assert mid_d < start_d and mid_g > start_g
    optimizer = torch.optim.SGD([fake], lr=0.5)
    for _ in range(20):  # network steps
        optimizer.zero_grad()
        generator_loss(discriminator(fake)).backward()
        optimizer.step()
    end_d, end_g = losses()
    assert end_g < mid_g and end_d > mid_d


def test_adversarial_gradients_reach_only_their_own_side() -> None:
    module = afd_pair()
    outputs = [network.forward_features(torch.randn(4, 3, 32, 32)) for network in module.networks]
    terms = module.feature_losses([output.features[-1] for output in outputs], module.active_pairs())

    terms["adversarial"].backward(retain_graph=True)  # the network step
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.networks[0].stages[-1].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.adapters.parameters())
    assert all(p.grad is None for p in module.discriminators.parameters())

    module.zero_grad(set_to_none=True)
    terms["discriminator"].backward()  # the discriminator step
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.discriminators.parameters())
    assert all(p.grad is None for p in [*module.networks.parameters(), *module.adapters.parameters()])


def test_cyclic_schedule_visits_every_pair_in_order_and_resumes_at_the_same_point(
    tmp_path: Path, cifar_folder: Path
) -> None:
    def make() -> DeepMutualLearning:
        return DeepMutualLearning([TinyNet(), TinyNet(width=4), TinyNet(width=6)])

    # 80 images, batch 8: 10 steps; 2 steps per pair; checkpoint after step 3, in the middle of pair (2 <- 1).
    pl.seed_everything(0)
    recorder = RecordPairs()
    checkpoints = ModelCheckpoint(tmp_path / "ckpt", filename="{step}", every_n_train_steps=3, save_top_k=-1)
    uninterrupted = make()
    trainer = tiny_trainer(
        tmp_path, callbacks=[CyclicPairSchedule(steps_per_pair=2), recorder, checkpoints], enable_checkpointing=True
    )
    trainer.fit(uninterrupted, tiny_cifar(cifar_folder, batch_size=8))
    cycle = [[(1, 0)], [(1, 0)], [(2, 1)], [(2, 1)], [(0, 2)], [(0, 2)]]
    assert recorder.pairs == (cycle + cycle)[:10]

    pl.seed_everything(0)
    resumed_recorder = RecordPairs()
    resumed = make()
    resumed_trainer = tiny_trainer(tmp_path, callbacks=[CyclicPairSchedule(steps_per_pair=2), resumed_recorder])
    resumed_trainer.fit(resumed, tiny_cifar(cifar_folder, batch_size=8), ckpt_path=tmp_path / "ckpt" / "step=3.ckpt")
    assert resumed_recorder.pairs == recorder.pairs[3:]
    torch.testing.assert_close(all_weights(resumed), all_weights(uninterrupted), rtol=0, atol=1e-6)


def test_afd_trains_each_network_and_logs_them_separately(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    module = afd_pair()
    before = [all_weights(network) for network in module.networks]
    trainer = tiny_trainer(tmp_path, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(module, tiny_cifar(cifar_folder, val_size=16))
    metrics = trainer.callback_metrics
    accuracies = [metrics["val/net0/acc"], metrics["val/net1/acc"]]
    assert metrics["val/best_acc"] == max(accuracies)
    assert module.student is module.networks[int(torch.stack(accuracies).argmax())]
    assert {"train/adversarial", "train/discriminator", "train/net0/kl", "train/net1/ce"} <= set(metrics)
    assert all(not torch.equal(b, all_weights(n)) for b, n in zip(before, module.networks, strict=True))


def test_discriminators_step_only_when_the_schedule_says_so(tmp_path: Path, cifar_folder: Path) -> None:
    class RecordDiscriminators(pl.Callback):
        def __init__(self) -> None:
            self.weights: list[torch.Tensor] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.weights.append(all_weights(module.discriminators))

    pl.seed_everything(0)
    module = afd_pair(discriminator_lr=1.0)
    initial = all_weights(module.discriminators)
    recorder = RecordDiscriminators()
    schedule = DiscriminatorUpdateSchedule(every_n_steps=2, start_step=1, lr=0.05)
    trainer = tiny_trainer(tmp_path, limit_train_batches=5, limit_val_batches=0, callbacks=[schedule, recorder])
    trainer.fit(module, tiny_cifar(cifar_folder))
    changed = [not torch.equal(a, b) for a, b in zip([initial, *recorder.weights], recorder.weights, strict=False)]
    assert changed == [False, True, False, True, False]  # global steps 0..4, updates at 1 and 3
    discriminator_group = trainer.optimizers[-1].param_groups[0]  # the discriminators' own optimiser (alternating)
    assert discriminator_group["initial_lr"] == 0.05  # the schedule's rate, not the module's discriminator_lr
    assert discriminator_group["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed with the networks' (cosine to 0)


def test_extra_discriminator_steps_move_only_the_discriminators(tmp_path: Path, cifar_folder: Path) -> None:
    def run(steps_per_update: int) -> tuple[OnlineAdversarialFeatureKD, pl.Trainer]:
        pl.seed_everything(0)
        module = afd_pair(discriminator_lr=0.5)
        schedule = DiscriminatorUpdateSchedule(steps_per_update=steps_per_update)
        trainer = tiny_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0, callbacks=[schedule])
        trainer.fit(module, tiny_cifar(cifar_folder))
        return module, trainer

    once, _ = run(1)
    thrice, trainer = run(3)
    assert trainer.global_step == 1  # extra discriminator steps do not count as training steps
    assert torch.equal(all_weights(once.networks), all_weights(thrice.networks))
    assert torch.equal(all_weights(once.adapters), all_weights(thrice.adapters))
    assert not torch.equal(all_weights(once.discriminators), all_weights(thrice.discriminators))
    with pytest.raises(ValueError, match="steps_per_update"):
        DiscriminatorUpdateSchedule(steps_per_update=0)


def test_l1_variant_has_no_discriminators_and_aligns_features() -> None:
    module = afd_pair(feature_loss="l1")
    assert module.discriminators is None and len(module.parameter_groups()) == 1
    features = [torch.randn(2, 16, 8, 8), torch.randn(2, 32, 8, 8)]
    terms = module.feature_losses(features, module.active_pairs())
    assert terms["adversarial"] > 0 and terms["discriminator"] == 0
    with pytest.raises(ValueError, match="feature_loss"):
        afd_pair(feature_loss="l2")
    with pytest.raises(ValueError, match="FeatureNet"):
        OnlineAdversarialFeatureKD([TinyNet(), TinyNet()], feature_layers=-1)  # an index needs a zoo network
    with pytest.raises(ValueError, match="at least 2"):
        DeepMutualLearning([TinyNet()])


def test_afd_with_two_cpu_processes_keeps_every_parameter_in_sync(tmp_path: Path, cifar_folder: Path) -> None:
    pl.seed_everything(0)
    module = afd_pair()
    initial = all_weights(module)
    trainer = tiny_trainer(
        tmp_path,
        strategy="ddp_spawn",  # find_unused_parameters=False: every parameter must take part in every step
        devices=2,
        limit_train_batches=3,
        limit_val_batches=0,
        callbacks=[
            RecordWeightsPerRank(tmp_path),
            CyclicPairSchedule(steps_per_pair=1),
            DiscriminatorUpdateSchedule(steps_per_update=2),  # discriminator-only steps must stay in sync too
        ],
    )
    trainer.fit(module, tiny_cifar(cifar_folder, batch_size=8))
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert torch.equal(ranks[0], ranks[1])
    assert not torch.equal(ranks[0], initial)
    torch.testing.assert_close(all_weights(module), ranks[0], rtol=0, atol=0)


def test_exported_network_loads_as_a_teacher(tmp_path: Path) -> None:
    module = DeepMutualLearning([create_model("resnet8", 10), create_model("resnet14", 10)])
    path = module.export_network(1, tmp_path / "net1.pt")
    teacher = create_model("resnet14", 10)
    assert load_network_weights(teacher, path) == ""
    kd = HintonKD(create_model("resnet8", 10), create_model("resnet14", 10), teacher_checkpoint=str(path))
    images = torch.randn(2, 3, 32, 32)
    module.eval()
    torch.testing.assert_close(kd.teacher_logits(images), module.networks[1](images))
    with pytest.raises(ValueError, match="index"):
        module.export_network(2, tmp_path / "net2.pt")
    assert not any(key.startswith("student.") for key in module.state_dict())


def official_kl_loss_compute(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """YingZhangDUT/Deep-Mutual-Learning train_models.py:60-67 (commit 34a2058), ported from TensorFlow:
    ``pred1 = softmax(logits1); pred2 = softmax(logits2); mean(sum(pred2 * log(1e-8 + pred2 / (pred1 + 1e-8)), 1))``."""
    pred1, pred2 = torch.softmax(logits1, 1), torch.softmax(logits2, 1)
    return (pred2 * torch.log(1e-8 + pred2 / (pred1 + 1e-8))).sum(1).mean()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_dml_with_three_peers_averages_the_kl_like_the_paper_or_sums_it_like_the_code(reduction: str) -> None:
    torch.manual_seed(0)
    module = DeepMutualLearning([TinyNet(), TinyNet(width=4), TinyNet(width=6)], kl_reduction=reduction)
    module.eval()
    images, targets = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    losses, _ = module.training_losses(images, targets)
    logits = [network(images) for network in module.networks]
    for i in range(3):
        kl = [official_kl_loss_compute(logits[i], logits[j]) for j in range(3) if j != i]  # train_models.py:90-95
        expected = sum(kl) / (2 if reduction == "mean" else 1)
        torch.testing.assert_close(losses[f"net{i}/kl"], expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(losses[f"net{i}/ce"], torch.nn.functional.cross_entropy(logits[i], targets))


class RecordBatch(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.batch = (batch[0].clone(), batch[1].clone())


def test_afd_alternating_update_is_a_logit_step_then_a_slower_feature_step_then_the_discriminators(
    tmp_path: Path, cifar_folder: Path
) -> None:
    """One batch of the paper's scheme, recomputed by hand: (1) SGD on CE + T^2 KL of the ring pairs; (2) a fresh
    forward pass and a step of the separate optimiser on the least-squares generator loss; (3) a discriminator step on
    the maps of (2), the peer's map real, the own fake. Only the logit step counts as a global step."""
    import copy

    import torch.nn.functional as F

    from lit_kd.losses import soft_target_kl

    def sgd(lr: float):
        return lambda parameters: torch.optim.SGD(parameters, lr=lr)

    pl.seed_everything(0)
    module = afd_pair(adversarial_optimizer=sgd(0.05), discriminator_lr=0.2, optimizer=sgd(0.1), temperature=3.0)
    networks, adapters = copy.deepcopy(module.networks), copy.deepcopy(module.adapters)
    discriminators = copy.deepcopy(module.discriminators)
    record = RecordBatch()
    trainer = tiny_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0, callbacks=[record])
    trainer.fit(module, tiny_cifar(cifar_folder))
    assert trainer.global_step == 1 and len(trainer.optimizers) == 3
    images, targets = record.batch

    # (1) the logit step
    logits = [network(images) for network in networks]
    loss = sum(
        F.cross_entropy(logits[i], targets) + soft_target_kl(logits[i], logits[(i - 1) % 2].detach(), 3.0)
        for i in range(2)
    )
    loss.backward()
    with torch.no_grad():
        for p in networks.parameters():
            p -= 0.1 * p.grad
            p.grad = None
    # (2) a fresh forward pass, the generator loss through the adapters, the separate optimiser
    maps = [network.forward_features(images).features[-1] for network in networks]
    mapped = [adapter(feature_map, 8) for adapter, feature_map in zip(adapters, maps, strict=True)]
    generator = sum(
        (1 - torch.func.functional_call(d, {k: v.detach() for k, v in d.named_parameters()}, (m,))).pow(2).mean()
        for d, m in zip(discriminators, mapped, strict=True)
    )
    generator.backward()
    with torch.no_grad():
        for p in [*networks.parameters(), *adapters.parameters()]:
            if p.grad is not None:
                p -= 0.05 * p.grad
                p.grad = None
    # (3) the discriminators on the detached maps of (2)
    real_fake = [(mapped[(i - 1) % 2].detach(), mapped[i].detach()) for i in range(2)]
    sum(
        (1 - d(real)).pow(2).mean() + d(fake).pow(2).mean()
        for d, (real, fake) in zip(discriminators, real_fake, strict=True)
    ).backward()
    with torch.no_grad():
        for p in discriminators.parameters():
            p -= 0.2 * p.grad

    for name, mine, theirs in (
        ("networks", module.networks, networks),
        ("adapters", module.adapters, adapters),
        ("discriminators", module.discriminators, discriminators),
    ):
        torch.testing.assert_close(all_weights(mine), all_weights(theirs), rtol=1e-4, atol=1e-6, msg=name)
    assert generator_loss(torch.zeros(1)) == 1 and discriminator_loss(torch.ones(1), torch.zeros(1)) == 0


def test_afd_joint_update_takes_one_optimiser_step(tmp_path: Path, cifar_folder: Path) -> None:
    module = afd_pair(update="joint")
    trainer = tiny_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(module, tiny_cifar(cifar_folder))
    assert trainer.global_step == 2 and len(trainer.optimizers) == 1
    assert [group["initial_lr"] for group in trainer.optimizers[0].param_groups] == [0.1, 0.01]
    with pytest.raises(ValueError, match="update must be"):
        afd_pair(update="sometimes")


def afd_ring(**kwargs) -> OnlineAdversarialFeatureKD:
    """Three narrow ResNet-8s: under a cyclic schedule one network is the student, the other two are idle.

    Contiguous memory: on this CPU build, channels-last backward passes of such narrow networks can stall for minutes.
    """
    return OnlineAdversarialFeatureKD(
        [CifarResNet(8, stem_channels=4, stage_channels=(4, 8, width)) for width in (8, 16, 16)],
        channels_last=False,
        **kwargs,
    )


def test_afd_idle_networks_get_no_feature_map_update_under_the_cyclic_schedule(
    tmp_path: Path, cifar_folder: Path
) -> None:
    """Pair (1 <- 0) at step 0, (2 <- 1) at step 1: network 1 is idle in step 1, with Adam state from step 0.

    The networks' logit optimiser has rate 0, so only the feature-map step (Adam) could move a network's weights.
    """

    class RecordNetworks(pl.Callback):
        def __init__(self) -> None:
            self.before: list[list[torch.Tensor]] = []
            self.after: list[list[torch.Tensor]] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.before.append([all_weights(network).clone() for network in module.networks])

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.after.append([all_weights(network).clone() for network in module.networks])

    pl.seed_everything(0)
    module = afd_ring(optimizer=lambda parameters: torch.optim.SGD(parameters, lr=0.0))
    recorder = RecordNetworks()
    trainer = tiny_trainer(
        tmp_path, limit_train_batches=2, limit_val_batches=0, callbacks=[CyclicPairSchedule(1), recorder]
    )
    trainer.fit(module, tiny_cifar(cifar_folder))
    moved = [
        [not torch.equal(before, after) for before, after in zip(step_before, step_after, strict=True)]
        for step_before, step_after in zip(recorder.before, recorder.after, strict=True)
    ]
    assert moved == [[False, True, False], [False, False, True]]  # only the active student moves
    adam = trainer.optimizers[1]
    assert all(adam.state[p] for p in module.networks[1].stages.parameters())  # it had momentum from step 0


@pytest.mark.parametrize("schedule", ["networks", "constant"])
def test_afd_feature_map_and_discriminator_rates_follow_the_networks_schedule_or_stay(
    schedule: str, tmp_path: Path, cifar_folder: Path
) -> None:
    class RecordRates(pl.Callback):
        def __init__(self) -> None:
            self.rates: list[list[float]] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.rates.append([optimizer.param_groups[0]["lr"] for optimizer in trainer.optimizers])

    module = afd_pair(adversarial_lr_schedule=schedule, channels_last=False)
    recorder = RecordRates()
    trainer = tiny_trainer(tmp_path, limit_train_batches=4, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(module, tiny_cifar(cifar_folder))
    starts = [0.1, 2e-5, 0.01]  # SGD, the feature-map step's Adam, the discriminators' SGD
    for step, rates in enumerate(recorder.rates):
        cosine = (1 + math.cos(math.pi * step / 4)) / 2  # annealed to 0 over the run's 4 steps
        factors = [cosine, cosine, cosine] if schedule == "networks" else [cosine, 1.0, 1.0]
        assert rates == pytest.approx([start * factor for start, factor in zip(starts, factors, strict=True)])
    assert recorder.rates[2] == pytest.approx([0.05, 1e-5, 0.005] if schedule == "networks" else [0.05, 2e-5, 0.01])
    with pytest.raises(ValueError, match="adversarial_lr_schedule"):
        afd_pair(update="joint", adversarial_lr_schedule="constant")


def test_schedule_callbacks_store_every_setting_in_the_checkpoint_and_a_changed_one_warns(
    tmp_path: Path, cifar_folder: Path
) -> None:
    """The rates a callback sets on the module (AFD's discriminator rate, DFAD's rates) are saved with the run."""
    pl.seed_everything(0)
    discriminators = DiscriminatorUpdateSchedule(every_n_steps=2, lr=0.05)
    pairs = CyclicPairSchedule(steps_per_pair=2)
    generator = GeneratorUpdateSchedule(student_steps=3, student_lr=0.02, generator_lr=3e-4)
    trainer = tiny_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0, callbacks=[discriminators, pairs])
    trainer.fit(afd_pair(), tiny_cifar(cifar_folder))
    trainer.save_checkpoint(tmp_path / "afd.ckpt")
    stored = torch.load(tmp_path / "afd.ckpt", weights_only=True)["callbacks"]
    assert stored[discriminators.state_key]["lr"] == 0.05 and stored[discriminators.state_key]["every_n_steps"] == 2
    assert stored[pairs.state_key]["steps_per_pair"] == 2
    assert generator.state_dict() == {
        "student_steps": 3,
        "generator_steps": 1,
        "student_lr": 0.02,
        "generator_lr": 3e-4,
    }

    with pytest.warns(UserWarning, match=r"lr=0\.01 \(was 0\.05\)"):
        DiscriminatorUpdateSchedule(every_n_steps=2, lr=0.01).load_state_dict(stored[discriminators.state_key])
    with pytest.warns(UserWarning, match=r"steps_per_pair=3 \(was 2\)"):
        CyclicPairSchedule(steps_per_pair=3).load_state_dict(stored[pairs.state_key])
    with pytest.warns(UserWarning, match=r"generator_lr=None \(was 0\.0003\)"):
        GeneratorUpdateSchedule(student_steps=3, student_lr=0.02).load_state_dict(generator.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same settings resume without a word
        DiscriminatorUpdateSchedule(every_n_steps=2, lr=0.05).load_state_dict(stored[discriminators.state_key])
        CyclicPairSchedule(steps_per_pair=2).load_state_dict(stored[pairs.state_key])
