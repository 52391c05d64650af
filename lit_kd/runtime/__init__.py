"""What every lit-kd module runs on, apart from its method.

- :mod:`~lit_kd.runtime.module`: :class:`RuntimeModule`, the shared Lightning hooks (reseeding, guards, DDP sync);
- :mod:`~lit_kd.runtime.guards`: learning-rate and NaN-loss checks;
- :mod:`~lit_kd.runtime.manual`: manual optimisation (buffer broadcast, per-optimiser scalers, idle gradients,
  uncounted steps, hand-stepped schedulers);
- :mod:`~lit_kd.runtime.optimization`: the default optimiser, the learning-rate override, the default schedule;
- :mod:`~lit_kd.runtime.speed`: channels-last memory format where it is safe;
- :mod:`~lit_kd.runtime.teacher`: loading a frozen teacher and running it (:class:`TeacherRunner`).
"""

from lit_kd.runtime.module import RuntimeModule
from lit_kd.runtime.teacher import TeacherRunner

__all__ = ["RuntimeModule", "TeacherRunner"]
