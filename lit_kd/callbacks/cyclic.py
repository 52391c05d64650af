"""The cyclic multi-network schedule of online distillation (AFD, Chung et al., ICML 2020)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_kd.callbacks.settings import warn_changed_settings
from lit_kd.losses.dml import ring_pairs


class CyclicPairSchedule(Callback):
    """Decides which ``(student, mentor)`` pairs of an online method are active, and for how long.

    AFD's cyclic scheme for three or more networks: network ``i`` learns from network ``i - 1 (mod n)`` only, so n
    networks need n discriminators instead of ``n (n - 1)``. With ``steps_per_pair=None`` (the paper's scheme) every
    ring pair is active at every step. With ``steps_per_pair=k`` one pair is active at a time and the schedule walks
    the ring in order, ``(1 <- 0), (2 <- 1), ..., (0 <- n-1)``, spending ``k`` training steps on each, then starts
    over. Networks not in an active pair still train on their labels.

    The module asks :meth:`active_pairs` in its ``training_step``; this callback advances after each training batch
    and saves its position in checkpoints, so a resumed run continues the cycle where it stopped.

    Args:
        steps_per_pair: training steps per pair, or ``None`` for every ring pair at once.

    Example:
        >>> schedule = CyclicPairSchedule(steps_per_pair=2)
        >>> schedule.num_networks = 3
        >>> schedule.active_pairs()
        [(1, 0)]
    """

    def __init__(self, steps_per_pair: int | None = None) -> None:
        if steps_per_pair is not None and steps_per_pair < 1:
            raise ValueError(f"steps_per_pair must be a positive integer or None, got {steps_per_pair}")
        self.steps_per_pair = steps_per_pair
        self.num_networks = 0
        self.position = 0
        self.steps_in_position = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Attach to the online module (any module with ``num_networks`` and a ``pair_schedule`` slot)."""
        if not hasattr(pl_module, "pair_schedule") or getattr(pl_module, "num_networks", 0) < 2:
            raise ValueError(
                f"CyclicPairSchedule needs an online method with 2 or more networks (DeepMutualLearning, "
                f"OnlineAdversarialFeatureKD), got {type(pl_module).__name__}"
            )
        self.num_networks = pl_module.num_networks
        pl_module.pair_schedule = self

    def cycle(self) -> list[tuple[int, int]]:
        """The ring pairs in the order the schedule visits them: ``(1, 0), (2, 1), ..., (0, n - 1)``."""
        pairs = ring_pairs(self.num_networks)
        return pairs[1:] + pairs[:1]

    def active_pairs(self) -> list[tuple[int, int]]:
        """The ``(student, mentor)`` pairs trained at the current step."""
        if self.steps_per_pair is None:
            return ring_pairs(self.num_networks)
        return [self.cycle()[self.position]]

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count the step and move to the next pair after ``steps_per_pair`` steps."""
        if self.steps_per_pair is None:
            return
        self.steps_in_position += 1
        if self.steps_in_position == self.steps_per_pair:
            self.steps_in_position = 0
            self.position = (self.position + 1) % self.num_networks

    def state_dict(self) -> dict[str, Any]:
        """Where the cycle is (pair index, steps already spent on it) and its setting ``steps_per_pair``."""
        return {
            "position": self.position,
            "steps_in_position": self.steps_in_position,
            "steps_per_pair": self.steps_per_pair,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the cycle from a checkpoint (a warning if ``steps_per_pair`` changed)."""
        warn_changed_settings(type(self).__name__, state_dict, {"steps_per_pair": self.steps_per_pair})
        self.position = int(state_dict["position"])
        self.steps_in_position = int(state_dict["steps_in_position"])
