"""The frozen teacher: its weights loaded safely, and the runner that computes its outputs as loss targets.

:class:`TeacherRunner` owns how a teacher runs: as an inference copy with BatchNorm folded into the convolutions
(:func:`~lit_kd.models.inference.inference_copy`, rebuilt whenever the teacher's weights, buffers or device change),
optionally compiled, without a graph under ``torch.inference_mode``, in the precision asked for.
:class:`~lit_kd.methods.DistillationModule` holds one.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from lit_kd.checkpointing import check_finite_weights, load_network_weights
from lit_kd.models.inference import inference_copy

TeacherPrecision = Literal["auto", "32", "16", "bf16"]
PRECISIONS = ("auto", "32", "16", "bf16")
#: What ``"auto"`` means in this process when set (``"32"``, ``"16"`` or ``"bf16"``), e.g. ``32`` to keep every
#: teacher in float32 on a CPU with native bf16 (the test suite does, to compare against float32 references).
PRECISION_VARIABLE = "LIT_KD_TEACHER_PRECISION"


@functools.cache  # asked on every teacher pass; the CPU does not change
def native_cpu_bf16() -> bool:
    """Whether this CPU has native bf16 kernels for oneDNN: AVX512-BF16 or AMX (elsewhere bf16 is emulated, slower)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own cpuinfo probes
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a teacher's gradient-free passes run in on ``device``: ``precision``, unless it is ``"auto"``.

    ``"auto"`` is ``$LIT_KD_TEACHER_PRECISION`` where set; else ``"bf16"`` on a CPU with native bf16
    (:func:`native_cpu_bf16`) and ``"32"`` (the trainer's precision) elsewhere. The bf16 default is measured: on an
    AVX512-BF16 CPU the zoo teachers' forward passes run 1.95x to 2.48x faster, and the pretrained ResNet-56 agrees
    with its float32 top-1 on 99.54% of the CIFAR-10 test split, mean absolute logit difference 0.048
    (``benchmarks/results/teacher_precision.md``; issue 26's rule: faster and agreement >= 99.5%).
    """
    if precision != "auto":
        return precision
    chosen = os.environ.get(PRECISION_VARIABLE)
    if chosen is not None:
        if chosen not in PRECISIONS[1:]:
            raise ValueError(f"{PRECISION_VARIABLE} must be '32', '16' or 'bf16', got {chosen!r}")
        return chosen
    return "bf16" if device.type == "cpu" and native_cpu_bf16() else "32"


def load_teacher(teacher: nn.Module, checkpoint: str | Path | None, owner: str) -> nn.Module:
    """``teacher`` with the weights of ``checkpoint`` (checked finite), frozen and in evaluation mode.

    ``None`` keeps the weights the teacher was built with; a warning says so unless it is a pretrained network
    (it has a ``weights_name``). The file is read without running code
    (:func:`~lit_kd.checkpointing.load_network_weights`).
    """
    if checkpoint is not None:
        load_network_weights(teacher, checkpoint, argument="teacher_checkpoint")
        check_finite_weights(teacher.state_dict(), f"teacher_checkpoint: {checkpoint}")
    elif getattr(teacher, "weights_name", None) is None:
        rank_zero_warn(
            f"{owner}: teacher_checkpoint is None, so the teacher keeps the weights it was built with; distilling "
            "from an untrained teacher teaches nothing useful."
        )
    return teacher.requires_grad_(False).eval()


class TeacherRunner:
    """Runs a frozen teacher: the network to call (:attr:`network`) and gradient-free targets (:meth:`targets`).

    Args:
        teacher: the frozen teacher (a submodule of its LightningModule, whose state dict it stays in).
        fast: run an inference copy with every BatchNorm folded (same outputs to float tolerance, fewer operations);
            gradient-free passes run under ``torch.inference_mode``. The teacher's own weights keep their form.
        compile: compile the inference copy with ``torch.compile``.
        precision: ``"16"`` or ``"bf16"`` run gradient-free passes under autocast in that precision; ``"32"`` in
            the trainer's; ``"auto"`` bf16 on a CPU with native bf16, else the trainer's (:func:`resolve_precision`).
        share: objects the copy must share with the original instead of copying (the LightningModule whose methods
            are hooks on the teacher, e.g. AMA's adapter hook).
    """

    def __init__(
        self,
        teacher: nn.Module,
        fast: bool = True,
        compile: bool = False,
        precision: TeacherPrecision = "32",
        share: tuple[Any, ...] = (),
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"teacher_precision must be 'auto', '32', '16' or 'bf16', got {precision!r}")
        self.teacher, self.fast, self.compile, self.precision, self.share = teacher, fast, compile, precision, share
        self._copy: nn.Module | None = None
        self._signature: tuple[Any, ...] = ()

    def invalidate(self) -> None:
        """Drop the inference copy: the next :attr:`network` makes a new one (new hooks, memory format, device)."""
        self._copy = None

    @property
    def network(self) -> nn.Module:
        """The teacher to call: its inference copy when ``fast``, else the teacher itself.

        The copy is rebuilt whenever the teacher's weights, buffers or device change (e.g. a checkpoint was loaded).
        It is made outside ``torch.inference_mode`` even when first asked for inside it, so its weights are ordinary
        tensors that a later pass can differentiate through. Building it runs a probe batch through the copy (to
        find modules called more than once) with the copy's hooks suspended, so no tap or adapter sees it.
        """
        if not self.fast:
            return self.teacher
        tensors = [*self.teacher.parameters(), *self.teacher.buffers()]
        signature = tuple((tensor._version, tensor.data_ptr(), tensor.device) for tensor in tensors)
        if self._copy is None or signature != self._signature:
            with torch.inference_mode(False):
                copied = inference_copy(self.teacher, share=self.share)
            if self.compile:
                copied.compile()
            self._copy, self._signature = copied, signature
        return self._copy

    def targets(self, network: Any, images: Tensor) -> Any:
        """``network(images)`` (the teacher, or a callable running it) as a loss target: no graph.

        Under ``torch.inference_mode`` when ``fast`` (the outputs are cloned into ordinary tensors, which a loss can
        save for its backward pass), else under ``torch.no_grad``; in ``precision`` (:func:`resolve_precision` on the
        images' device; autocast leaves float64 inputs alone), returned as float32.
        """
        dtype = {"16": torch.float16, "bf16": torch.bfloat16}.get(resolve_precision(self.precision, images.device))
        autocast = torch.autocast(images.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with torch.inference_mode() if self.fast else torch.no_grad(), autocast:
            output = network(images)
        if self.fast or dtype is not None:
            output = tree_map(lambda value: value.float().clone() if dtype else value.clone(), output)
        return output

    def __getstate__(self) -> dict[str, Any]:
        """Pickled or deep-copied without the inference copy (made again on first use)."""
        return {**self.__dict__, "_copy": None, "_signature": ()}
