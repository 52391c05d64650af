"""Checkpoint files: loaded without running code, written atomically, and read as network weights from any source.

Every file lit-kd reads with ``torch.load`` (teacher checkpoints, ensemble members, born-again parents, cGAN
checkpoints, pretrained weights, resumed runs, the decoded-image cache, synthetic sets) goes through
:func:`safe_load`: ``weights_only=True`` with an allow-list of exactly the extra types known formats need, so a file
cannot run code while it is being read. A legacy pickle that needs more is refused with an error that names the file
and says why. Trust has exactly one switch, outside every file, recipe, command line and checkpoint:
``LIT_KD_TRUST_CHECKPOINTS=1`` in the environment of the process. With it a refused file is loaded fully, with a
warning that names the file. No stored setting can switch trust on (a checkpoint's hyperparameters, a recipe), and
Lightning's ``weights_only=False`` is refused.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

#: Set to ``1`` (or ``true``/``yes``) to load legacy pickles in full: the only switch that trusts a file.
TRUST_ENVIRONMENT_VARIABLE = "LIT_KD_TRUST_CHECKPOINTS"


def _numpy_scalar_globals() -> list[Any]:
    """What a pickled numpy scalar needs: ``numpy.core.multiarray.scalar`` and the dtypes of float/int scalars.

    Old training scripts save metrics such as ``best_prec1`` as numpy scalars next to the state dict (the pretrained
    CIFAR-10 ResNets of akamaster/pytorch_resnet_cifar10 are one example).
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = [type(np.dtype(name)) for name in ("float16", "float32", "float64", "int32", "int64", "bool")]
    return [scalar, np.dtype, *dtypes]


#: The types :func:`safe_load` allows beyond ``torch.load``'s own ``weights_only`` set. Lightning checkpoints need
#: nothing more (Lightning itself resumes with ``weights_only=True``).
SAFE_GLOBALS: list[Any] = _numpy_scalar_globals()


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A file holds Python objects that only a full unpickle would rebuild, and lit-kd refused to unpickle it."""


def trusted_by_environment() -> bool:
    """Whether ``LIT_KD_TRUST_CHECKPOINTS`` opts in to loading legacy pickles in full."""
    return os.environ.get(TRUST_ENVIRONMENT_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def refuse_trust_setting(settings: dict[str, Any]) -> None:
    """Drop a legacy ``trust_checkpoint`` setting from ``settings``; refuse it when it asks for trust.

    Trust used to be a module argument, so it was stored in checkpoints' hyperparameters and a crafted or inherited
    checkpoint could switch it on. It is now only :data:`TRUST_ENVIRONMENT_VARIABLE`; ``trust_checkpoint: false``
    (stored by older runs) is accepted and ignored.

    Raises:
        ValueError: ``settings["trust_checkpoint"]`` is true.
    """
    if settings.pop("trust_checkpoint", False):
        raise ValueError(
            f"trust_checkpoint is no longer a setting (a stored setting could switch trust on): run with "
            f"{TRUST_ENVIRONMENT_VARIABLE}=1 to load a legacy pickle you trust, or pass trust_checkpoint=False to "
            "load_from_checkpoint for a checkpoint that stored it"
        )


def _refusal_reason(error: Exception) -> str:
    """The line of ``torch.load``'s error that names what was refused (``Unsupported global: GLOBAL posix.system``)."""
    text = str(error)
    found = re.search(r"(Unsupported global: GLOBAL [^\s]+|Trying to load unsupported GLOBAL [^\s]+[^.\n]*)", text)
    if found:
        return found.group(1)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def safe_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with :data:`SAFE_GLOBALS`: a file cannot run code while it is read.

    A file that needs more than that (a legacy pickle of arbitrary objects) is loaded in full only when the process
    runs with ``LIT_KD_TRUST_CHECKPOINTS=1`` (:func:`trusted_by_environment`); then a warning names it. That variable
    is the only switch: no argument, recipe or stored hyperparameter turns trust on.

    Args:
        path: the file.
        map_location: where tensors go (default: the CPU).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UntrustedCheckpointError: the file needs a full unpickle and the environment does not trust files; the
            message names the file, what was refused and the switch.
        ValueError: the file is not a ``torch.save`` file (truncated, a text file, another format); the message
            names it.

    Example:
        >>> import tempfile
        >>> path = tempfile.mktemp(suffix=".pt")
        >>> torch.save({"weight": torch.ones(2)}, path)
        >>> safe_load(path)
        {'weight': tensor([1., 1.])}
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not _looks_like_torch_file(path):
        raise ValueError(f"{path} is not a torch.save file (it is neither a zip archive nor a pickle)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _refusal_reason(error)
        if not trusted_by_environment():
            raise UntrustedCheckpointError(
                f"{path} was not loaded: it holds Python objects that only a full unpickle would rebuild, and "
                f"unpickling can run code ({reason}). Re-save it as a plain state dict "
                f"(torch.save(model.state_dict(), path)); if you trust the file and where it came from, run with "
                f"{TRUST_ENVIRONMENT_VARIABLE}=1."
            ) from None
        rank_zero_warn(
            f"loading {path} with a full unpickle (weights_only=False), which can run code: "
            f"{TRUST_ENVIRONMENT_VARIABLE} is set ({reason})"
        )
        return torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable torch.save file (truncated or another format): {error}") from error


def _looks_like_torch_file(path: Path) -> bool:
    """Whether ``path`` starts like a ``torch.save`` file: a zip archive, or a pickle (protocol 2 or later)."""
    with open(path, "rb") as file:
        head = file.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def check_finite_weights(state_dict: Mapping[str, Any], source: str) -> None:
    """Refuse weights that hold NaN or infinite values (a diverged run), naming the first such tensor.

    Raises:
        ValueError: a floating-point tensor of ``state_dict`` is not finite; the message starts with ``source``.
    """
    for name, value in state_dict.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{source} holds non-finite weights (NaN or inf), first in {name!r}: a diverged run?")


# ----------------------------------------------------------------------------------------------- network weights
#: Attribute names under which lit-kd modules (and common user modules) keep the network being trained; tried in
#: this order after the wrapper prefixes of :func:`strip_wrapper_prefixes` are removed.
CHECKPOINT_PREFIXES = ("", "student.", "network.", "model.", "net.")
#: Keys other training code stores its state dict under, inside a checkpoint dict.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net")


def strip_wrapper_prefixes(key: str) -> str:
    """Drop the prefixes wrappers add to parameter names, wherever they occur.

    ``module.`` comes from ``DataParallel``/DDP, ``_orig_mod.`` from ``torch.compile``.

    Example:
        >>> strip_wrapper_prefixes("module.layer1.0.conv1.weight"), strip_wrapper_prefixes("student._orig_mod.fc.bias")
        ('layer1.0.conv1.weight', 'student.fc.bias')
    """
    parts = [part for part in key.split(".") if part not in ("module", "_orig_mod")]
    return ".".join(parts)


def extract_state_dict(checkpoint: Any, path: str | Path = "<checkpoint>") -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint, with the wrapper prefixes of :func:`strip_wrapper_prefixes` removed.

    It is ``checkpoint["state_dict"]`` (Lightning), ``"model_state_dict"``, ``"model"`` or ``"net"`` if one of them
    is a dict of tensors, else the checkpoint itself.

    Raises:
        ValueError: no dict of tensors is found (the message names ``path``).
    """
    state_dict: Any = checkpoint
    if isinstance(checkpoint, Mapping):
        for key in STATE_DICT_KEYS:
            candidate = checkpoint.get(key)
            if isinstance(candidate, Mapping) and candidate and all(isinstance(v, Tensor) for v in candidate.values()):
                state_dict = candidate
                break
    if not isinstance(state_dict, Mapping) or not any(isinstance(value, Tensor) for value in state_dict.values()):
        raise ValueError(
            f"{path} holds {type(checkpoint).__name__} without weights: expected a state dict or a "
            f"checkpoint with one of {list(STATE_DICT_KEYS)}"
        )
    return {strip_wrapper_prefixes(key): value for key, value in state_dict.items() if isinstance(value, Tensor)}


def load_network_weights(
    network: nn.Module,
    path: str | Path,
    prefix: str | None = None,
    key_map: Callable[[str], str] | None = None,
    argument: str | None = None,
) -> str:
    """Load ``network``'s weights from a checkpoint written by lit-kd, Lightning, or any ``torch.save(state_dict)``.

    The file is read with :func:`safe_load` (no code runs; legacy pickles only with ``trust``). The state dict is
    found by :func:`extract_state_dict`, its keys lose the ``module.`` and ``_orig_mod.`` prefixes of
    ``DataParallel``/DDP and ``torch.compile``, and the attribute prefix is found automatically: the first of
    :data:`CHECKPOINT_PREFIXES` under which every parameter and buffer of ``network`` is present, so a lit-kd
    ``SupervisedModule`` checkpoint loads directly as a teacher.

    Args:
        network: the module to load into (its architecture must match).
        path: checkpoint file.
        prefix: force this key prefix instead of detecting it.
        key_map: renames the file's keys (after the wrapper prefixes are removed) into ``network``'s names, for
            checkpoints of another implementation of the same architecture.
        argument: the configuration field ``path`` came from (e.g. ``"teacher_checkpoint"``), named in errors.

    Returns:
        The prefix that was used.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UntrustedCheckpointError: the file needs a full unpickle and the environment does not trust files.
        ValueError: no prefix matches, the file holds more weights under that prefix than ``network`` has (a
            deeper or wider network of the same family), or shapes differ; the message names the keys.
    """
    try:
        return _load_network_weights(network, path, prefix, key_map)
    except (FileNotFoundError, ValueError, UntrustedCheckpointError) as error:
        if argument is None:
            raise
        raise type(error)(f"{argument}: {error}") from None


def _load_network_weights(
    network: nn.Module, path: str | Path, prefix: str | None, key_map: Callable[[str], str] | None
) -> str:
    state_dict = extract_state_dict(safe_load(path), path)
    if key_map is not None:
        state_dict = {key_map(key): value for key, value in state_dict.items()}
    wanted = network.state_dict().keys()
    for candidate in (prefix,) if prefix is not None else CHECKPOINT_PREFIXES:
        if all(candidate + key in state_dict for key in wanted):
            under = [key[len(candidate) :] for key in state_dict if key.startswith(candidate)]
            unexpected = [key for key in under if key not in wanted]
            if unexpected:
                raise ValueError(
                    f"{path} does not fit {type(network).__name__}: it holds {len(unexpected)} weights that the "
                    f"network does not have (under key prefix {candidate!r}), e.g. {unexpected[:5]}; is it a "
                    "checkpoint of a deeper or wider network?"
                )
            try:
                network.load_state_dict({key: state_dict[candidate + key] for key in wanted})
            except RuntimeError as error:
                raise ValueError(f"{path} does not fit {type(network).__name__}: {error}") from error
            return candidate
    seen = sorted({key.split(".", 1)[0] + "." for key in state_dict if "." in key})
    missing = [key for key in wanted if key not in state_dict][:5]
    tried = [prefix] if prefix is not None else list(CHECKPOINT_PREFIXES)
    raise ValueError(
        f"{path} has no weights for {type(network).__name__}: tried key prefixes {tried} (after removing 'module.' "
        f"and '_orig_mod.'); first missing keys {missing}; top-level prefixes in the file: {seen[:10]}. Is it a "
        "checkpoint of this architecture?"
    )


# ----------------------------------------------------------------------------------------------- checkpoint I/O
class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves a checkpoint atomically (temporary file, flushed, renamed) and loads it without running code.

    A rename within one folder is atomic, so a run killed while saving (``kill -9``, a pre-empted node, a full disk)
    leaves ``last.ckpt`` as the previous complete checkpoint, which ``--ckpt_path`` can resume from. Lightning's own
    ``TorchCheckpointIO`` writes through a temporary file in the system temp folder and moves it, which is a copy,
    not a rename, whenever that folder is on another file system. Loading (``--ckpt_path``) goes through
    :func:`safe_load`, so a refused file is named with how to opt in. Remote paths (``s3://``, ...) are left to
    Lightning's implementation.

    The ``lit-kd`` command installs it on every trainer whose strategy uses the default checkpoint I/O; in your own
    code pass ``Trainer(plugins=[AtomicCheckpointIO()])``.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> AtomicCheckpointIO().save_checkpoint({"step": 1}, f"{folder}/last.ckpt")
        >>> AtomicCheckpointIO().load_checkpoint(f"{folder}/last.ckpt")
        {'step': 1}
        >>> sorted(os.listdir(folder))
        ['last.ckpt']
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (local paths)."""
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load a local checkpoint with :func:`safe_load`.

        Raises:
            ValueError: ``weights_only=False`` (Lightning's ``--weights_only false``): lit-kd never unpickles a file
                because a command asked for it; the one switch is ``LIT_KD_TRUST_CHECKPOINTS=1``.
        """
        if weights_only is False:
            raise ValueError(
                f"weights_only=False is refused for {path}: lit-kd reads every checkpoint without running code; to "
                f"load a legacy pickle you trust, run with {TRUST_ENVIRONMENT_VARIABLE}=1"
            )
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return safe_load(path, map_location=map_location if map_location is not None else "cpu")


def use_atomic_checkpoints(trainer: Trainer) -> None:
    """Give ``trainer`` :class:`AtomicCheckpointIO` unless its strategy was configured with another checkpoint I/O."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
