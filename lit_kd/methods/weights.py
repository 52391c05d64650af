"""Loading network weights from Lightning checkpoints or plain state dicts."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# Attribute names under which lit-kd modules (and common user modules) keep the network being trained.
_CHECKPOINT_PREFIXES = ("", "student.", "network.", "model.", "net.")


def load_network_weights(network: nn.Module, path: str | Path, prefix: str | None = None) -> str:
    """Load ``network``'s weights from a checkpoint written by lit-kd, Lightning or ``torch.save(state_dict)``.

    The state dict is taken from ``checkpoint["state_dict"]`` when present (Lightning), else the file itself. The
    key prefix is found automatically: the first of ``""``, ``"student."``, ``"network."``, ``"model."``,
    ``"net."`` under which every parameter and buffer of ``network`` is present, so a lit-kd
    ``SupervisedModule`` checkpoint loads directly as a teacher.

    Args:
        network: the module to load into (architecture must match).
        path: checkpoint file.
        prefix: force this key prefix instead of detecting it.

    Returns:
        The prefix that was used.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no prefix matches, or shapes differ; the message lists missing keys and the prefixes seen.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} holds {type(checkpoint).__name__}, expected a state dict or a Lightning checkpoint")
    wanted = network.state_dict().keys()
    for candidate in (prefix,) if prefix is not None else _CHECKPOINT_PREFIXES:
        if all(candidate + key in state_dict for key in wanted):
            try:
                network.load_state_dict({key: state_dict[candidate + key] for key in wanted})
            except RuntimeError as error:
                raise ValueError(f"{path} does not fit {type(network).__name__}: {error}") from error
            return candidate
    seen = sorted({key.split(".", 1)[0] + "." for key in state_dict if "." in key})
    missing = [key for key in wanted if key not in state_dict][:5]
    raise ValueError(
        f"{path} has no weights for {type(network).__name__}: tried key prefixes {list(_CHECKPOINT_PREFIXES)}; "
        f"first missing keys {missing}; top-level prefixes in the file: {seen[:10]}. Is it a checkpoint of this "
        f"architecture?"
    )
