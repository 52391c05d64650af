"""No third-party advertising in lit-kd runs: Lightning's "💡 Tip: ... try installing ..." lines are dropped.

Lightning 2.6 prints such a tip at every ``Trainer`` construction (``logger_connector.py``, ``callback_connector.py``)
through its rank-zero logger. Importing lit-kd installs one logging filter on that logger that drops records starting
with ``"💡 Tip:"``; every other message, Lightning's own warnings and information included, passes unchanged.
"""

from __future__ import annotations

import logging

TIP_PREFIX = "💡 Tip:"
LIGHTNING_RANK_ZERO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class DropAdvertisingTips(logging.Filter):
    """A logging filter that drops records whose message starts with :data:`TIP_PREFIX`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but a tip."""
        return not str(record.getMessage()).startswith(TIP_PREFIX)


def drop_advertising_tips() -> None:
    """Install :class:`DropAdvertisingTips` on Lightning's rank-zero logger (once)."""
    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    if not any(isinstance(existing, DropAdvertisingTips) for existing in logger.filters):
        logger.addFilter(DropAdvertisingTips())
