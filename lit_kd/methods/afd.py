"""Feature-map-level online adversarial knowledge distillation (AFD)."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn
from torch.func import functional_call

from lit_kd.losses.afd import (
    FeatureAdapter,
    FeatureDiscriminator,
    discriminator_loss,
    generator_loss,
    l1_alignment_loss,
)
from lit_kd.losses.dml import ring_pairs
from lit_kd.methods.online import OnlineDistillationModule
from lit_kd.models.base import FeatureNet


class OnlineAdversarialFeatureKD(OnlineDistillationModule):
    """AFD of Chung, Park, Kim & Kwak (ICML 2020), "Feature-map-level Online Adversarial Knowledge Distillation".

    Network ``i`` learns from network ``i - 1 (mod n)`` (both ways for two networks; the paper's cyclic scheme for
    three or more). Its loss is ``CE + T^2 KL(p_{i-1}^T || p_i^T) + adversarial_weight * [1 - D_i(T_i(f_i))]^2`` and
    its discriminator ``D_i`` minimises ``[1 - D_i(T_{i-1}(f_{i-1}))]^2 + D_i(T_i(f_i))^2`` (least-squares GAN
    losses, as in the paper): the peer's feature map is real, its own is fake. ``f`` is the map of stage
    ``feature_index`` of :meth:`~lit_kd.models.FeatureNet.forward_features` (the last stage by default);
    ``T`` are :class:`~lit_kd.losses.afd.FeatureAdapter` s (1x1 conv + pooling) where channels or sizes
    differ. ``feature_loss="l1"`` replaces the adversarial term by direct L1 alignment (the paper's comparison).

    One joint backward pass and optimiser step per batch, with the discriminators as their own parameter group: the
    networks' adversarial term scores features with detached discriminator parameters, the discriminator term
    scores detached features, so each gradient reaches only its own side, every parameter takes part in every
    backward pass (DDP needs no ``find_unused_parameters``) and a single ``GradScaler`` step serves AMP. The paper
    alternates separate updates (logit step, discriminator step, slower adversarial step); here the networks and the
    discriminators move simultaneously and ``adversarial_weight`` plays the role of the slower adversarial rate.
    :class:`~lit_kd.callbacks.DiscriminatorUpdateSchedule` decides when the discriminators step and at what rate;
    on other steps their gradients are dropped before the optimiser step, and with ``steps_per_update = k`` the
    discriminators take ``k - 1`` more steps on the batch's detached feature maps after the joint step.
    Trainer-level gradient clipping and accumulation are refused (manual optimisation).

    Args:
        networks: zoo networks (:class:`~lit_kd.models.FeatureNet`), e.g. a small and a large one.
        feature_loss: ``"adversarial"`` (AFD) or ``"l1"`` (direct alignment).
        temperature: softening temperature of the logit KL; 3 is our default (the value of ONE, Lan et al. 2018; the
            paper's was not in the sources we could read).
        adversarial_weight: weight of the networks' adversarial (or L1) term; 1 is our default.
        discriminator_lr: learning rate of the discriminators' parameter group (no weight decay); our default.
        feature_index: which entry of ``forward_features(x).features`` is distilled (-1: last stage).
        **kwargs: ``num_classes``, ``optimizer``, ``lr_scheduler``.
    """

    def __init__(
        self,
        networks: list[nn.Module],
        feature_loss: Literal["adversarial", "l1"] = "adversarial",
        temperature: float = 3.0,
        adversarial_weight: float = 1.0,
        discriminator_lr: float = 0.01,
        feature_index: int = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(networks, temperature=temperature, **kwargs)
        if feature_loss not in ("adversarial", "l1"):
            raise ValueError(f"feature_loss must be 'adversarial' or 'l1', got {feature_loss!r}")
        not_zoo = [type(n).__name__ for n in networks if not isinstance(n, FeatureNet)]
        if not_zoo:
            raise ValueError(f"networks: AFD needs lit_kd.models.FeatureNet networks (feature maps), got {not_zoo}")
        channels = [network.feature_channels[feature_index] for network in networks]
        self.feature_loss, self.feature_index = feature_loss, feature_index
        self.adversarial_weight, self.discriminator_lr = adversarial_weight, discriminator_lr
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

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Networks and adapters, then the discriminators with ``discriminator_lr`` and no weight decay."""
        groups = [{"params": [*self.networks.parameters(), *self.adapters.parameters()]}]
        if self.discriminators is not None:
            groups.append(
                {"params": list(self.discriminators.parameters()), "lr": self.discriminator_lr, "weight_decay": 0.0}
            )
        return groups

    def map_features(self, features: list[Tensor]) -> list[Tensor]:
        """Each network's feature map through its adapter, pooled to the smallest spatial size among them."""
        size = min(min(f.shape[-2:]) for f in features)
        return [adapter(f, size) for adapter, f in zip(self.adapters, features, strict=True)]

    def feature_losses(self, features: list[Tensor], pairs: list[tuple[int, int]]) -> dict[str, Tensor]:
        """The networks' adversarial (or L1) term and the discriminators' term, summed over the ring pairs."""
        return self.adversarial_terms(self.map_features(features), pairs)

    def adversarial_terms(self, mapped: list[Tensor], pairs: list[tuple[int, int]]) -> dict[str, Tensor]:
        """:meth:`feature_losses` on adapted feature maps.

        Pairs not in ``pairs`` are computed with weight 0, so that every parameter is used in every step under DDP.
        """
        network_term, discriminator_term = mapped[0].new_zeros(()), mapped[0].new_zeros(())
        for student, mentor in ring_pairs(self.num_networks):
            weight = 1.0 if (student, mentor) in pairs else 0.0
            fake, real = mapped[student], mapped[mentor].detach()
            if self.discriminators is None:
                network_term = network_term + weight * l1_alignment_loss(fake, real)
                continue
            discriminator = self.discriminators[student]
            frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
            network_term = network_term + weight * generator_loss(functional_call(discriminator, frozen, (fake,)))
            scores_real, scores_fake = discriminator(real), discriminator(fake.detach())
            discriminator_term = discriminator_term + weight * discriminator_loss(scores_real, scores_fake)
        return {"adversarial": network_term, "discriminator": discriminator_term}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """Losses of every network and discriminator, one joint optimiser step, then any extra discriminator steps."""
        images, targets = batch
        outputs = [network.forward_features(images) for network in self.networks]
        logits = [output.logits for output in outputs]
        pairs = self.active_pairs()
        losses = self.mutual_losses(logits, targets, pairs)
        mapped = self.map_features([output.features[self.feature_index] for output in outputs])
        losses.update(self.adversarial_terms(mapped, pairs))
        losses["loss"] = losses["loss"] + self.adversarial_weight * losses["adversarial"] + losses["discriminator"]
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(losses["loss"])
        update = self.discriminators_update_now()
        self.drop_idle_gradients(pairs, networks=False, discriminators=not update)
        optimizer.step()
        if update and self.discriminator_schedule is not None:
            self.discriminator_only_steps(
                [m.detach() for m in mapped], pairs, self.discriminator_schedule.steps_per_update - 1
            )
        self.step_schedulers("step")
        self.log_loss_terms(losses, "train", batch_size=len(targets))
        self.log_network_metrics("train", logits, targets)

    def discriminators_update_now(self) -> bool:
        """Whether the discriminators step on this batch (always, without a schedule)."""
        return self.discriminators is not None and (
            self.discriminator_schedule is None or self.discriminator_schedule.should_update(self.global_step)
        )

    def discriminator_only_steps(self, mapped: list[Tensor], pairs: list[tuple[int, int]], count: int) -> None:
        """``count`` more discriminator steps on this batch's detached, adapted feature maps.

        Lightning re-arms DDP's gradient reduction before every ``manual_backward``, and DDP then expects a gradient
        for every parameter: the networks and adapters enter the loss with weight 0 and their (zero) gradients are
        dropped before the step. The step goes to the wrapped optimiser (through the AMP scaler if there is one), so
        ``global_step`` keeps counting batches and every step-keyed schedule keeps its meaning.
        """
        optimizer = self.optimizers()
        others = [*self.networks.parameters(), *self.adapters.parameters()]
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        for _ in range(count):
            optimizer.zero_grad()
            loss = self.adversarial_terms(mapped, pairs)["discriminator"]
            self.manual_backward(loss + 0.0 * sum(parameter.sum() for parameter in others))
            self.drop_idle_gradients(pairs, networks=True, discriminators=False)
            if scaler is None:
                optimizer.optimizer.step()
            else:
                scaler.step(optimizer.optimizer)
                scaler.update()

    def drop_idle_gradients(self, pairs: list[tuple[int, int]], networks: bool, discriminators: bool) -> None:
        """Discard gradients that must not move anything this step.

        Always those of idle adapters and discriminators (networks that are no student in ``pairs``); also those of
        every network and adapter if ``networks``, and of every discriminator if ``discriminators``.
        """
        students = {student for student, _ in pairs}
        for index in range(self.num_networks):
            idle: list[nn.Module] = [self.networks[index], self.adapters[index]] if networks else []
            if index not in students:
                idle.append(self.adapters[index])
            if self.discriminators is not None and (index not in students or discriminators):
                idle.append(self.discriminators[index])
            for parameter in (p for module in idle for p in module.parameters()):
                parameter.grad = None
