"""A callback's settings in the checkpoint: what it trained with is saved, and a resume that changes it says so."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import rank_zero_warn


def warn_changed_settings(owner: str, saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Warn (once, on rank 0) naming each setting of ``current`` that differs from the checkpoint's ``saved`` one.

    Settings the checkpoint does not hold (written before they were saved) are not compared. Returns the changes as
    ``name=new (was old)``.

    Example:
        >>> warn_changed_settings("Schedule", {"lr": None}, {"lr": None, "steps": 2})
        []
    """
    changes = [
        f"{name}={value!r} (was {saved[name]!r})"
        for name, value in current.items()
        if name in saved and saved[name] != value
    ]
    if changes:
        rank_zero_warn(
            f"{owner}: resumed with settings other than the checkpoint's, which apply from the restored step on: "
            f"{'; '.join(changes)}"
        )
    return changes
