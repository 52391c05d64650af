"""Distillation losses as pure functions and small modules, each testable against hand-computed values."""

from lit_kd.losses.kd import soft_cross_entropy, soft_target_kl

__all__ = ["soft_cross_entropy", "soft_target_kl"]
