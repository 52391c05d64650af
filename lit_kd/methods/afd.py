"""Feature-map-level online adversarial knowledge distillation (AFD)."""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.func import functional_call
from torch.optim import Adam, Optimizer

from lit_kd.losses.afd import (
    FeatureAdapter,
    FeatureDiscriminator,
    discriminator_loss,
    generator_loss,
    l1_alignment_loss,
)
from lit_kd.losses.dml import ring_pairs
from lit_kd.methods.online import OnlineDistillationModule
from lit_kd.models.features import FeatureTaps, LayerName, default_layers, probe_maps
from lit_kd.runtime.manual import drop_gradients, optimizer_scaler, uncounted_step, zero_gradient_term


def afd_adversarial_optimizer(parameters: Any) -> Optimizer:
    """Adam, lr 2e-5: the separate, much slower optimiser of AFD's feature-map step.

    Secondary source: the paper optimises the logit loss and the adversarial loss with separate optimisers and a much
    smaller learning rate for the latter (two independent summaries of the paper, e.g.
    xuezc/knowledge_distillation ``README.md:77``); Adam at 2e-5 is the value of an unofficial reimplementation as
    reported in lit-kd's issue 13 (we could not reach that code to check it).
    """
    return Adam(parameters, lr=2e-5)


class OnlineAdversarialFeatureKD(OnlineDistillationModule):
    """AFD of Chung, Park, Kim & Kwak (ICML 2020), "Feature-map-level Online Adversarial Knowledge Distillation".

    Network ``i`` learns from network ``i - 1 (mod n)`` (both ways for two networks; the paper's cyclic scheme for
    three or more). Its logit loss is ``CE + T^2 KL(p_{i-1}^T || p_i^T)``, its feature-map loss
    ``[1 - D_i(T_i(f_i))]^2``, and its discriminator ``D_i`` minimises ``[1 - D_i(T_{i-1}(f_{i-1}))]^2 +
    D_i(T_i(f_i))^2`` (least-squares GAN targets: the peer's map is real, its own fake; paper, as quoted by its
    secondary summaries). ``f`` is the map of ``feature_layers`` (the last stage of a zoo network by default; any
    network's module path), read with forward hooks; ``T`` are :class:`~lit_kd.losses.afd.FeatureAdapter` s (1x1
    conv + pooling) where channels or sizes differ. ``feature_loss="l1"`` replaces the adversarial term by direct L1
    alignment (the paper's comparison).

    **Updates.** ``update="alternating"`` (default; the paper's scheme as its secondary summaries describe it, which
    also report that one shared optimiser did not work): each mini-batch gets (1) a step of the logit losses with
    ``optimizer`` (SGD in the recipes), (2) a fresh forward pass and a step of ``adversarial_weight`` times the
    feature-map loss with a separate optimiser, ``adversarial_optimizer`` (default :func:`afd_adversarial_optimizer`,
    Adam 2e-5), over the networks and adapters, and (3) the discriminator steps, with their own optimiser, on the
    detached maps of (2). ``update="joint"`` (ours, lit-kd's earlier scheme): one backward pass and one optimiser
    step per batch, with the discriminators as their own parameter group; the networks' adversarial term scores
    features with detached discriminator parameters, so each gradient reaches only its own side.

    In both, every trainable parameter takes part in every backward pass (idle ones through a zero term), so DDP
    needs no ``find_unused_parameters``, and every step goes through Lightning's optimiser wrappers (AMP-correct).
    The zero gradients of idle parts are dropped before each step (set to ``None``), so the optimisers skip them:
    under a :class:`~lit_kd.callbacks.CyclicPairSchedule` a network that is no student of the active pair gets no
    feature-map update at all (Adam's momentum from earlier steps does not move it).

    **Learning-rate schedules** (``adversarial_lr_schedule``; neither the paper's secondary summaries nor any code we
    could read says how the slower optimisers are scheduled, so the default is ours): ``"networks"`` (default) gives
    the feature-map optimiser and the discriminators' optimiser the networks' schedule, each from its own starting
    rate: ``lr_scheduler`` if given, else cosine annealing to 0 over all training steps. ``"constant"`` keeps both at
    their starting rates while the networks' rate anneals (lit-kd's earlier behaviour). The joint update has one
    optimiser, discriminator group included, which always follows the schedule.
    :class:`~lit_kd.callbacks.DiscriminatorUpdateSchedule` decides when the discriminators step, how many times
    (``steps_per_update``) and at what rate. Trainer-level gradient clipping and accumulation are refused (manual
    optimisation).

    Which defaults come from where: the losses and the cyclic scheme are the paper's (secondary sources); the
    separate slower adversarial optimiser is from secondary sources; the discriminator architecture
    (:class:`~lit_kd.losses.afd.FeatureDiscriminator`), ``temperature = 3``, ``adversarial_weight = 1``,
    ``discriminator_lr = 0.01`` (SGD, the networks' optimiser settings, no weight decay) and the last stage as the
    feature map are ours: the paper's values were not in any source we could read.

    Args:
        networks: any networks (``nn.Module`` s returning logits), e.g. a small and a large one.
        feature_loss: ``"adversarial"`` (AFD) or ``"l1"`` (direct alignment).
        update: ``"alternating"`` (the paper's separate updates) or ``"joint"`` (one step).
        temperature: softening temperature of the logit KL; 3 is our default.
        adversarial_weight: weight of the networks' adversarial (or L1) term; 1 is our default.
        discriminator_lr: learning rate of the discriminators (``optimizer``'s settings, no weight decay); ours.
        adversarial_optimizer: builds the optimiser of the feature-map step (alternating update only).
        adversarial_lr_schedule: ``"networks"`` (ours, default): the feature-map and discriminator optimisers follow
            the networks' learning-rate schedule; ``"constant"``: they keep their starting rates (alternating update
            only).
        feature_layers: each network's feature map: one module path or zoo feature index for all, or one per
            network; by default each network's last stage (zoo: ``-1``; any other network: the last of
            :func:`~lit_kd.models.features.spatial_stages`).
        probe_size: image size of the dummy batch that sizes the adapters.
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    hparams_ignore = (*OnlineDistillationModule.hparams_ignore, "adversarial_optimizer")

    def __init__(
        self,
        networks: list[nn.Module],
        feature_loss: Literal["adversarial", "l1"] = "adversarial",
        update: Literal["alternating", "joint"] = "alternating",
        temperature: float = 3.0,
        adversarial_weight: float = 1.0,
        discriminator_lr: float = 0.01,
        adversarial_optimizer: OptimizerCallable = afd_adversarial_optimizer,
        adversarial_lr_schedule: Literal["networks", "constant"] = "networks",
        feature_layers: LayerName | list[LayerName | None] | None = None,
        probe_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(networks, temperature=temperature, **kwargs)
        if feature_loss not in ("adversarial", "l1"):
            raise ValueError(f"feature_loss must be 'adversarial' or 'l1', got {feature_loss!r}")
        if update not in ("alternating", "joint"):
            raise ValueError(f"update must be 'alternating' or 'joint', got {update!r}")
        if adversarial_lr_schedule not in ("networks", "constant"):
            raise ValueError(
                f"adversarial_lr_schedule must be 'networks' or 'constant', got {adversarial_lr_schedule!r}"
            )
        if update == "joint" and adversarial_lr_schedule == "constant":
            raise ValueError(
                "adversarial_lr_schedule='constant' needs update='alternating': the joint update has one optimiser, "
                "which follows the networks' schedule"
            )
        layers = feature_layers if isinstance(feature_layers, list) else [feature_layers] * len(networks)
        if len(layers) != len(networks):
            raise ValueError(f"feature_layers: {len(layers)} layers for {len(networks)} networks")
        layers = [  # unnamed: each network's last stage (zoo: -1)
            default_layers(n, "last", f"feature_layers[{i}]", probe_size)[0] if layer is None else layer
            for i, (n, layer) in enumerate(zip(networks, layers, strict=True))
        ]
        self.taps = [
            FeatureTaps(n, [layer], f"feature_layers[{i}]")
            for i, (n, layer) in enumerate(zip(networks, layers, strict=True))
        ]
        channels = [probe_maps(taps, probe_size)[0].shape[1] for taps in self.taps]
        self.feature_loss, self.update = feature_loss, update
        self.adversarial_weight, self.discriminator_lr = adversarial_weight, discriminator_lr
        self.adversarial_optimizer_factory = adversarial_optimizer
        self.adversarial_lr_schedule = adversarial_lr_schedule
        self.adapters = nn.ModuleList(FeatureAdapter(c, max(channels)) for c in channels)
        self.discriminators = (
            nn.ModuleList(FeatureDiscriminator(max(channels)) for _ in networks)
            if feature_loss == "adversarial"
            else None
        )
        self.discriminator_schedule: Any = None  # a DiscriminatorUpdateSchedule attaches itself here
        self.automatic_optimization = False

    def default_pairs(self) -> list[tuple[int, int]]:
        """Network ``i`` learns from ``i - 1 (mod n)``."""
        return ring_pairs(self.num_networks)

    # ---------------------------------------------------------------------------------------------- losses
    def features(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Every network's logits and feature map."""
        outputs = [taps(images) for taps in self.taps]
        return [logits for logits, _ in outputs], [maps[0] for _, maps in outputs]

    def map_features(self, features: list[Tensor]) -> list[Tensor]:
        """Each network's feature map through its adapter, pooled to the smallest spatial size among them."""
        size = min(min(f.shape[-2:]) for f in features)
        return [adapter(f, size) for adapter, f in zip(self.adapters, features, strict=True)]

    def feature_losses(self, features: list[Tensor], pairs: list[tuple[int, int]]) -> dict[str, Tensor]:
        """The networks' adversarial (or L1) term and the discriminators' term, summed over the ring pairs."""
        mapped = self.map_features(features)
        return {
            "adversarial": self.network_term(mapped, pairs),
            "discriminator": self.discriminator_term(mapped, pairs),
        }

    def network_term(self, mapped: list[Tensor], pairs: list[tuple[int, int]]) -> Tensor:
        """The networks' feature-map loss: fool the own discriminator (or L1 to the mentor's map).

        Scored with detached discriminator parameters, so only the networks and adapters get gradients. Pairs not in
        ``pairs`` are computed with weight 0, so that every parameter is used in every step under DDP.
        """
        total = mapped[0].new_zeros(())
        for student, mentor in ring_pairs(self.num_networks):
            weight = 1.0 if (student, mentor) in pairs else 0.0
            fake, real = mapped[student], mapped[mentor].detach()
            if self.discriminators is None:
                total = total + weight * l1_alignment_loss(fake, real)
                continue
            discriminator = self.discriminators[student]
            frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
            total = total + weight * generator_loss(functional_call(discriminator, frozen, (fake,)))
        return total

    def discriminator_term(self, mapped: list[Tensor], pairs: list[tuple[int, int]]) -> Tensor:
        """The discriminators' least-squares loss on detached maps: the peer's is real, the own is fake."""
        total = mapped[0].new_zeros(())
        if self.discriminators is None:
            return total
        for student, mentor in ring_pairs(self.num_networks):
            weight = 1.0 if (student, mentor) in pairs else 0.0
            real, fake = mapped[mentor].detach(), mapped[student].detach()
            discriminator = self.discriminators[student]
            total = total + weight * discriminator_loss(discriminator(real), discriminator(fake))
        return total

    # -------------------------------------------------------------------------------------------- training
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """One batch: the alternating logit / feature-map / discriminator steps, or one joint step."""
        images, targets = batch
        pairs = self.active_pairs()
        update = self.discriminators_update_now()
        if self.update == "joint":
            logits, losses, mapped = self.joint_step(images, targets, pairs, update)
        else:
            logits, losses, mapped = self.alternating_steps(images, targets, pairs)
        if update:
            extra = self.discriminator_schedule.steps_per_update - 1 if self.discriminator_schedule else 0
            self.discriminator_steps(mapped, pairs, extra + (self.update == "alternating"))
        self.step_schedulers("step")
        self.log_loss_terms(losses, "train", batch_size=len(targets))
        self.log_network_metrics("train", logits, targets)

    def joint_step(
        self, images: Tensor, targets: Tensor, pairs: list[tuple[int, int]], update: bool
    ) -> tuple[list[Tensor], dict[str, Tensor], list[Tensor]]:
        """Every loss in one backward pass and one optimiser step (``update="joint"``)."""
        logits, features = self.features(images)
        losses = self.mutual_losses(logits, targets, pairs)
        mapped = self.map_features(features)
        losses["adversarial"], losses["discriminator"] = (
            self.network_term(mapped, pairs),
            self.discriminator_term(mapped, pairs),
        )
        losses["loss"] = losses["loss"] + self.adversarial_weight * losses["adversarial"] + losses["discriminator"]
        (optimizer,) = self.optimizers_list()
        optimizer.zero_grad()
        self.manual_backward(losses["loss"])
        self.drop_gradients(pairs, networks=False, adapters=False, discriminators=not update)
        optimizer.step()
        return logits, losses, [m.detach() for m in mapped]

    def alternating_steps(
        self, images: Tensor, targets: Tensor, pairs: list[tuple[int, int]]
    ) -> tuple[list[Tensor], dict[str, Tensor], list[Tensor]]:
        """The logit step, then a fresh forward pass and the feature-map step (``update="alternating"``)."""
        network_optimizer, adversarial_optimizer = self.optimizers_list()[:2]
        logits = [network(images) for network in self.networks]
        losses = self.mutual_losses(logits, targets, pairs)
        network_optimizer.zero_grad()
        self.manual_backward(losses["loss"] + zero_gradient_term(self.adapters, self.discriminators))
        self.drop_gradients(pairs, networks=False, adapters=True, discriminators=True)
        network_optimizer.step()

        _, features = self.features(images)
        mapped = self.map_features(features)
        losses["adversarial"] = self.network_term(mapped, pairs)
        adversarial_optimizer.zero_grad()
        unused = zero_gradient_term(self.networks, self.discriminators)  # e.g. the classifiers: DDP
        with optimizer_scaler(self, 1):
            self.manual_backward(self.adversarial_weight * losses["adversarial"] + unused)
            self.drop_gradients(pairs, networks=False, adapters=False, discriminators=True, idle_networks=True)
            uncounted_step(self, adversarial_optimizer)
        losses["discriminator"] = self.discriminator_term(mapped, pairs).detach()
        return logits, losses, [m.detach() for m in mapped]

    def discriminators_update_now(self) -> bool:
        """Whether the discriminators step on this batch (always, without a schedule)."""
        return self.discriminators is not None and (
            self.discriminator_schedule is None or self.discriminator_schedule.should_update(self.global_step)
        )

    def discriminator_steps(self, mapped: list[Tensor], pairs: list[tuple[int, int]], count: int) -> None:
        """``count`` discriminator-only steps on this batch's detached, adapted feature maps.

        Lightning re-arms DDP's gradient reduction before every ``manual_backward``, and DDP then expects a gradient
        for every parameter: the networks and adapters enter the loss with weight 0 and their (zero) gradients are
        dropped before the step. The step goes to the discriminators' optimiser (the whole optimiser under the joint
        update, with the networks' gradients dropped), through the AMP scaler if there is one, so ``global_step``
        keeps counting batches (:func:`~lit_kd.runtime.manual.uncounted_step`).
        """
        optimizers = self.optimizers_list()
        optimizer = optimizers[-1]
        for _ in range(count):
            optimizer.zero_grad()
            loss = self.discriminator_term(mapped, pairs)
            with optimizer_scaler(self, len(optimizers) - 1):
                self.manual_backward(loss + zero_gradient_term(self.networks, self.adapters))
                self.drop_gradients(pairs, networks=True, adapters=True, discriminators=False)
                uncounted_step(self, optimizer)

    def drop_gradients(
        self,
        pairs: list[tuple[int, int]],
        networks: bool,
        adapters: bool,
        discriminators: bool,
        idle_networks: bool = False,
    ) -> None:
        """Discard gradients that must not move anything this step (``None``: the optimiser skips the parameter).

        Always those of idle adapters and discriminators (networks that are no student in ``pairs``); with
        ``idle_networks`` those of the idle networks too (the feature-map step: their terms have weight 0); also
        those of every network, adapter or discriminator as the flags say.
        """
        students = {student for student, _ in pairs}
        for index in range(self.num_networks):
            idle_network = networks or (idle_networks and index not in students)
            idle: list[nn.Module] = [self.networks[index]] if idle_network else []
            if adapters or index not in students:
                idle.append(self.adapters[index])
            if self.discriminators is not None and (discriminators or index not in students):
                idle.append(self.discriminators[index])
            drop_gradients(idle)

    # ---------------------------------------------------------------------------------------- optimisation
    def optimizers_list(self) -> list[Any]:
        """The Lightning-wrapped optimisers as a list (Lightning returns a single one unwrapped)."""
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def discriminator_group(self) -> dict[str, Any]:
        """The discriminators' parameters, at ``discriminator_lr`` without weight decay."""
        return {"params": list(self.discriminators.parameters()), "lr": self.discriminator_lr, "weight_decay": 0.0}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Joint update: networks and adapters, then the discriminators (:meth:`discriminator_group`)."""
        groups = [{"params": [*self.networks.parameters(), *self.adapters.parameters()]}]
        if self.discriminators is not None:
            groups.append(self.discriminator_group())
        return groups

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Joint: one optimiser. Alternating: the networks' (scheduled), the feature-map step's, the discriminators'."""
        if self.update == "joint":
            return super().configure_optimizers()
        network_config = self.configure_optimizers_for([{"params": list(self.networks.parameters())}])
        optimizers = [self.adversarial_optimizer_factory([*self.networks.parameters(), *self.adapters.parameters()])]
        if self.discriminators is not None:
            optimizers.append(self.optimizer_factory([self.discriminator_group()]))
        if self.adversarial_lr_schedule == "constant":
            return [network_config, *({"optimizer": optimizer} for optimizer in optimizers)]
        return [network_config, *(self.with_lr_schedule(optimizer) for optimizer in optimizers)]
