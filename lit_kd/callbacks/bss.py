"""Boundary supporting samples for BSS (Heo et al., AAAI 2019): selection, the attack, and the mining callback.

Heo, Lee, Yun & Choi, "Knowledge Distillation with Adversarial Samples Supporting Decision Boundary" (AAAI 2019);
the defaults are those of the official code, https://github.com/bhheo/BSS_distillation at commit 586b141
(``train_BSS_distillation.py`` and ``attacks/attack_BSS.py``, cited by line below), with one deliberate difference:
the attack clamps to the valid image range in the data's normalisation, which is what the official
``clamp(-2.5, 2.5)`` amounts to in the official normalisation (see :class:`BoundarySampleMining`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lit_kd.models.normalization import valid_input_range


def bss_weights(epoch: int, num_epochs: int) -> tuple[float, float]:
    """The weights ``(r, r_bss)`` of the two distillation terms of BSS in ``epoch`` (counted from 1) of ``num_epochs``.

    ``r = 1 + 3 max(1 - e/E, 0)`` weighs the KD term on real samples (4 down to 1); ``r_bss = 2 max(1 - 4e/(3E), 0)``
    weighs the KD term on boundary supporting samples (2 down to 0, reached at 75% of training): boundary samples
    help early and harm late. Formulas and the 1-based epoch count are those of ``train_BSS_distillation.py``.

    Example:
        >>> bss_weights(0, 80), bss_weights(60, 80), bss_weights(80, 80)
        ((4.0, 2.0), (1.75, 0.0), (1.0, 0.0))
    """
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
    progress = epoch / num_epochs
    return 1.0 + 3.0 * max(1.0 - progress, 0.0), 2.0 * max(1.0 - 4.0 * progress / 3.0, 0.0)


def select_base_samples(teacher_logits: Tensor, student_logits: Tensor, targets: Tensor, max_samples: int) -> Tensor:
    """Indices of the samples to attack: those *both* networks classify correctly, at most ``max_samples`` of them.

    Base samples are those whose top-1 class is the label for the teacher and for the student
    (``attack_flag = condition1 & condition2``, ``train_BSS_distillation.py:106-109``), so early in training, when the
    student is often wrong, fewer than ``max_samples`` are attacked. When more qualify, the ones kept are those where
    teacher and student disagree most: the sum over the non-label classes of the squared differences of their
    softmax outputs (``:114-117``).

    Example:
        >>> teacher = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [3.0, 0.0]])
        >>> student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [2.0, 0.0]])
        >>> select_base_samples(teacher, student, torch.tensor([0, 0, 0, 0]), max_samples=64).tolist()
        [0, 3]
    """
    correct = (teacher_logits.argmax(dim=1) == targets) & (student_logits.argmax(dim=1) == targets)
    index = correct.nonzero().squeeze(1)
    if len(index) > max_samples:
        difference = (F.softmax(teacher_logits[index].float(), 1) - F.softmax(student_logits[index].float(), 1)) ** 2
        disagreement = difference.sum(dim=1) - difference.gather(1, targets[index, None]).squeeze(1)
        index = index[disagreement.topk(max_samples).indices]
    return index


def sample_target_classes(teacher_logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one target class per sample among the teacher's non-top-1 classes, in proportion to its softmax.

    A row whose other probabilities all underflow to zero gets the runner-up class, as the official cumulative
    draw does.
    """
    probabilities = F.softmax(teacher_logits.float(), dim=1)
    ranked = teacher_logits.topk(2, dim=1).indices
    probabilities = probabilities.scatter(1, ranked[:, :1], 0.0)
    runner_up = F.one_hot(ranked[:, 1], probabilities.shape[1]).to(probabilities.dtype)
    probabilities = torch.where(probabilities.sum(1, keepdim=True) > 0, probabilities, runner_up)
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(1)


class AttackResult(NamedTuple):
    """Output of :func:`boundary_attack`: final points, the teacher's logits on them and the steps each took."""

    images: Tensor
    logits: Tensor
    steps: Tensor


def boundary_attack(
    teacher: nn.Module,
    images: Tensor,
    base_classes: Tensor,
    target_classes: Tensor,
    num_steps: int = 10,
    step_size: float = 0.3,
    clamp_range: tuple[float | Tensor, float | Tensor] | None = (-2.5, 2.5),
) -> AttackResult:
    """Move each image towards the teacher's boundary between its base class ``b`` and target class ``k``.

    Each step adds ``step_size * (f_b - f_k + 1e-4) * g / ||g||_2``, ``g`` the input gradient of ``f_k - f_b``;
    a sample moves only while the teacher still predicts ``b``, so it stops once it crosses; the result is clamped
    to ``clamp_range`` (normalised input space; scalars, or per-channel tensors of shape ``[C]``). For a linear
    teacher with ``||g|| = G`` a step turns the margin ``m = f_b - f_k`` into ``m - step_size * G * (m + 1e-4)``:
    with ``step_size * G < 1`` a sample closes in geometrically and stops just across, with ``step_size = 1 / G``
    it lands ``1e-4 / G`` beyond the boundary.
    Only the input gets gradients (``torch.autograd.grad``): no parameter's ``.grad`` is touched. Keep the teacher
    in eval mode. Defaults: ``attacks/attack_BSS.py`` with ``num_steps=10, step_alpha=0.3, norm=2`` as
    ``train_BSS_distillation.py`` builds it.

    Args:
        teacher: network returning logits; frozen and in eval mode.
        images: ``[M, ...]`` starting points (base samples the teacher assigns to ``base_classes``).
        base_classes: ``[M]`` the teacher's class of each image.
        target_classes: ``[M]`` the class to move towards.
        num_steps: maximum number of steps.
        step_size: length of a step per unit of logit margin ``f_b - f_k + 1e-4``.
        clamp_range: bounds of the input values (scalars or per-channel ``[C]`` tensors), or ``None``.
    """
    adversarial = images.detach()
    if clamp_range is not None:
        low, high = (torch.as_tensor(bound, dtype=images.dtype, device=images.device) for bound in clamp_range)
        low, high = (bound.view(1, -1, *(1,) * (images.dim() - 2)) if bound.dim() else bound for bound in (low, high))
    steps = torch.zeros(len(images), dtype=torch.long, device=images.device)
    view = (-1,) + (1,) * (images.dim() - 1)
    with torch.enable_grad():
        for _ in range(num_steps):
            adversarial.requires_grad_(True)
            logits = teacher(adversarial)
            precise = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 under autocast
            base_logit = precise.gather(1, base_classes[:, None]).squeeze(1)
            target_logit = precise.gather(1, target_classes[:, None]).squeeze(1)
            active = logits.argmax(dim=1) == base_classes
            if not active.any():
                break
            (gradient,) = torch.autograd.grad((target_logit - base_logit).sum(), adversarial)
            norm = gradient.flatten(1).norm(dim=1).clamp_min(torch.finfo(gradient.dtype).tiny)
            scale = step_size * (base_logit - target_logit + 1e-4) * active / norm
            adversarial = adversarial.detach() + scale.view(view).to(gradient.dtype) * gradient
            if clamp_range is not None:
                adversarial = torch.maximum(torch.minimum(adversarial, high), low)
            steps += active
        else:
            with torch.no_grad():
                logits = teacher(adversarial)
    return AttackResult(adversarial.detach(), logits.detach(), steps)


@dataclass(frozen=True)
class BoundarySamples:
    """The boundary supporting samples mined from one batch (all tensors detached, on the batch's device)."""

    originals: Tensor  #: ``[M, C, H, W]`` the base samples, as they came in the batch
    images: Tensor  #: ``[M, C, H, W]`` the boundary supporting samples
    base_classes: Tensor  #: ``[M]`` the teacher's class of the originals (their label)
    target_classes: Tensor  #: ``[M]`` the classes they were moved towards
    teacher_logits: Tensor  #: ``[M, num_classes]`` the teacher's logits on ``images``
    steps: Tensor  #: ``[M]`` attack steps each sample took

    def __len__(self) -> int:
        return len(self.images)

    @property
    def crossed(self) -> Tensor:
        """Whether the teacher's prediction left the base class."""
        return self.teacher_logits.argmax(dim=1) != self.base_classes

    @property
    def perturbation_norms(self) -> Tensor:
        """L2 norm of each sample's perturbation (normalised input space)."""
        return (self.images - self.originals).flatten(1).float().norm(dim=1)


class BoundarySampleMining(pl.Callback):
    """Mines boundary supporting samples for :class:`~lit_kd.methods.BSSDistillation` and owns the BSS schedule.

    It holds the attack's settings, sets the two loss weights (:func:`bss_weights`) at the start of each epoch (or of
    each step, for a schedule in steps), logs the attack's statistics per epoch (``bss/success_rate``,
    ``bss/mean_steps``, ``bss/perturbation_norm``, ``bss/samples_per_batch``, reduced over DDP ranks, and the weights
    ``bss/kd_weight``, ``bss/boundary_weight``) and keeps the schedule's length in checkpoints, so a resumed run
    continues the schedule it started with.

    The module calls :meth:`mine` from its ``training_step``, after the student's forward pass: base samples are
    ranked by the student's logits of that very forward (train-mode BatchNorm, as in the official code), and the
    step already runs inside the precision (autocast) context and on this rank's shard. The attack runs on the
    unwrapped, frozen teacher and gives no parameter a gradient.

    The schedule's length: ``num_epochs`` (the official code's epochs, ``train_BSS_distillation.py:197-198``) or
    ``num_steps`` (the same formulas with progress counted in optimiser steps; ours); by default the trainer's
    ``max_epochs``, or its ``max_steps`` when ``max_epochs`` is not set.

    Args:
        max_samples: most base samples attacked per batch (official ``attack_size = 64``, ``:23``). ``0``: none, so
            BSS trains on its clean-sample terms alone, with the same schedule: an ablation of the boundary samples
            (ours).
        num_steps: attack steps (official 10, ``:71``).
        step_size: length of a step per unit of the teacher's logit margin (official ``step_alpha = 0.3``, ``:71``).
        clamp_range: bounds of the attacked images in normalised input space. ``"image"`` (default): the valid
            image range ``[0, 1]`` in the data's normalisation, per channel (from the DataModule's ``mean``/``std``;
            no clamp, with a warning, when it has none). The official ``(-2.5, 2.5)`` (``attack_BSS.py:72``) is about
            that range in the official normalisation (std about 0.20, ``train_BSS_distillation.py:39``) but lets
            pixels leave ``[0, 1]`` under other statistics; pass it as a pair to reproduce it exactly. ``None``: no
            clamp.
        num_epochs: the schedule's length ``E`` in epochs.
        num_steps_total: the schedule's length in optimiser steps, instead of ``num_epochs``.
    """

    def __init__(
        self,
        max_samples: int = 64,
        num_steps: int = 10,
        step_size: float = 0.3,
        clamp_range: Literal["image"] | tuple[float, float] | None = "image",
        num_epochs: int | None = None,
        num_steps_total: int | None = None,
    ) -> None:
        if max_samples < 0:
            raise ValueError(f"BoundarySampleMining: max_samples must be >= 0, got {max_samples}")
        for name, value in (
            ("num_steps", num_steps),
            ("num_epochs", num_epochs or 1),
            ("num_steps_total", num_steps_total or 1),
        ):
            if value < 1:
                raise ValueError(f"BoundarySampleMining: {name} must be >= 1, got {value}")
        if num_epochs is not None and num_steps_total is not None:
            raise ValueError("BoundarySampleMining: set num_epochs or num_steps_total, not both")
        if not step_size > 0:
            raise ValueError(f"BoundarySampleMining: step_size must be > 0, got {step_size}")
        if isinstance(clamp_range, str) and clamp_range != "image":
            raise ValueError(
                f"BoundarySampleMining: clamp_range must be 'image', (low, high) or None, got {clamp_range!r}"
            )
        if clamp_range is not None and not isinstance(clamp_range, str) and clamp_range[0] >= clamp_range[1]:
            raise ValueError(
                f"BoundarySampleMining: clamp_range must be (low, high) with low < high, got {clamp_range}"
            )
        self.max_samples = max_samples
        self.num_steps = num_steps
        self.step_size = step_size
        self.clamp_range = clamp_range if clamp_range is None or isinstance(clamp_range, str) else tuple(clamp_range)
        self.num_epochs = num_epochs
        self.num_steps_total = num_steps_total
        self.distillation_weight, self.boundary_weight = 0.0, 0.0
        self.bounds: tuple[float | Tensor, float | Tensor] | None = None  # the clamp in use, resolved at fit start
        self.latest: BoundarySamples | None = None  # the last samples mined this epoch, for galleries
        self._totals: Tensor | None = None  # batches, samples, crossed, steps, perturbation norm: this epoch

    @staticmethod
    def find(trainer: pl.Trainer) -> BoundarySampleMining:
        """The trainer's one :class:`BoundarySampleMining` callback; raises if it has none or several."""
        found = [callback for callback in trainer.callbacks if isinstance(callback, BoundarySampleMining)]
        if len(found) != 1:
            raise RuntimeError(
                f"BSS needs exactly one lit_kd.callbacks.BoundarySampleMining in Trainer(callbacks=...), found "
                f"{len(found)}"
            )
        return found[0]

    def resolve_bounds(self, datamodule: Any) -> tuple[float | Tensor, float | Tensor] | None:
        """The clamp for the attack: ``clamp_range``, or for ``"image"`` the data's ``[0, 1]`` range normalised."""
        if self.clamp_range != "image":
            return self.clamp_range
        mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
        if mean is None or std is None:
            rank_zero_warn(
                f"BoundarySampleMining: {type(datamodule).__name__} has no mean/std, so the valid image range of its "
                "batches is unknown: boundary samples are not clamped (pass clamp_range=(low, high) to clamp)"
            )
            return None
        return valid_input_range(mean, std)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fix the schedule's length (unless set or restored), resolve the clamp and set the weights.

        The weights are set here too because a run resumed mid-epoch does not call ``on_train_epoch_start``.
        """
        self.bounds = self.resolve_bounds(getattr(trainer, "datamodule", None))
        if self.num_epochs is None and self.num_steps_total is None:
            if trainer.max_epochs is not None and trainer.max_epochs >= 1:
                self.num_epochs = trainer.max_epochs
            elif trainer.max_steps is not None and trainer.max_steps >= 1:
                self.num_steps_total = trainer.max_steps
            else:
                raise ValueError(
                    "BoundarySampleMining: set num_epochs or num_steps_total (the trainer has neither max_epochs nor "
                    "max_steps)"
                )
        elif self.num_epochs is not None and self.num_epochs != trainer.max_epochs:
            rank_zero_warn(
                f"BoundarySampleMining: the BSS schedule spans num_epochs={self.num_epochs} (set, or restored from "
                f"the checkpoint), not the trainer's max_epochs={trainer.max_epochs}"
            )
        self.on_train_epoch_start(trainer, pl_module)

    def set_weights(self, trainer: Any) -> None:
        """This epoch's (or step's) weights ``(r, r_bss)``."""
        if self.num_steps_total is not None:
            progress = (trainer.global_step + 1, self.num_steps_total)
        elif self.num_epochs is not None:
            progress = (trainer.current_epoch + 1, self.num_epochs)
        else:
            raise RuntimeError("BoundarySampleMining: on_train_start fixes the schedule's length; it has not run")
        self.distillation_weight, self.boundary_weight = bss_weights(*progress)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set this epoch's loss weights and reset the epoch's statistics."""
        self.set_weights(trainer)
        self.latest, self._totals = None, torch.zeros(5, dtype=torch.float64, device=pl_module.device)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """With a schedule in steps, set this step's weights."""
        if self.num_steps_total is not None:
            self.set_weights(trainer)

    def mine(
        self, teacher: nn.Module, images: Tensor, targets: Tensor, teacher_logits: Tensor, student_logits: Tensor
    ) -> BoundarySamples | None:
        """Boundary supporting samples of one batch, or ``None`` (``boundary_weight`` or ``max_samples`` 0, none).

        Args:
            teacher: the frozen teacher (in eval mode), called directly: the attack needs input gradients.
            images: the batch ``[B, C, H, W]``, normalised.
            targets: labels ``[B]``.
            teacher_logits: the teacher's logits on ``images`` (already computed for the KD term).
            student_logits: the student's logits on ``images`` (used detached, to rank base samples).
        """
        if not self.boundary_weight > 0 or self.max_samples == 0:
            return None
        if self._totals is None:
            raise RuntimeError("BoundarySampleMining.mine() runs during training, after on_train_epoch_start")
        index = select_base_samples(teacher_logits.detach(), student_logits.detach(), targets, self.max_samples)
        self._totals[0] += 1
        if len(index) == 0:
            return None
        base_classes = targets[index]
        target_classes = sample_target_classes(teacher_logits[index].detach())
        bounds = self.bounds if self.clamp_range == "image" else self.clamp_range
        attack = boundary_attack(
            teacher, images[index], base_classes, target_classes, self.num_steps, self.step_size, bounds
        )
        samples = BoundarySamples(
            originals=images[index].detach(),
            images=attack.images,
            base_classes=base_classes,
            target_classes=target_classes,
            teacher_logits=attack.logits,
            steps=attack.steps,
        )
        found = [
            torch.tensor(len(samples)),
            samples.crossed.sum(),
            samples.steps.sum(),
            samples.perturbation_norms.sum(),
        ]
        self._totals[1:] += torch.stack([value.to(self._totals) for value in found])
        self.latest = samples
        return samples

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the schedule's weights and the epoch's attack statistics, pooled over all ranks.

        The values are the same on every rank (the totals are summed first); ``sync_dist`` only tells Lightning so.
        """
        logged = {"bss/kd_weight": self.distillation_weight, "bss/boundary_weight": self.boundary_weight}
        if self.boundary_weight > 0 and self._totals is not None:
            batches, samples, crossed, steps, norms = trainer.strategy.reduce(self._totals, reduce_op="sum").tolist()
            logged["bss/samples_per_batch"] = samples / max(batches, 1)
            if samples > 0:
                logged["bss/success_rate"] = crossed / samples
                logged["bss/mean_steps"] = steps / samples
                logged["bss/perturbation_norm"] = norms / samples
        pl_module.log_dict(logged, sync_dist=True)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's length, so that a resumed run keeps the schedule it started with."""
        return {"num_epochs": self.num_epochs, "num_steps_total": self.num_steps_total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the schedule's length saved by :meth:`state_dict`."""
        self.num_epochs = state_dict["num_epochs"]
        self.num_steps_total = state_dict.get("num_steps_total")
