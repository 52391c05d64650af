"""Step parity with the authors' code: lit-kd's methods against the official loss code, optimiser step by step.

Both sides start from the same student weights, see the same frozen teacher and the same fixed batches (the same
augmented images, labels, sample indices and CRD negatives), and take ``--steps`` SGD steps (lr 0.05, momentum 0.9,
weight decay 5e-4, float32, CPU, one thread). Side (a) is the lit-kd LightningModule with its default
hyperparameters: its ``training_losses``, the method's loss path that ``training_step`` optimises (``training_step``
itself only adds logging and metrics, which need a ``Trainer``). Side (b) is the official repository's loss code,
imported from a checkout the user names, driven by a thin adapter that feeds it the same networks' logits and
features. The official settings are set to lit-kd's defaults on that side (so a difference is one of code), and each
official default is read from the checkout and compared with lit-kd's separately. Reported per method: the largest
absolute difference of any trainable weight after the last step (target <= 1e-4), the first step's losses and
gradients, and the official lines that ran (traced).

No official code is part of lit-kd: ``--reference NAME=DIR`` points at a checkout, and a method whose checkout is
not given is recorded as "reference not given". Clone the references (commits used for the committed results in
``benchmarks/results/parity.md``)::

    git clone https://github.com/HobbitLong/RepDistiller                 # KD, FitNets, AT, CRD
    git clone https://github.com/szagoruyko/attention-transfer           # AT (at_loss)
    git clone https://github.com/megvii-research/mdistiller              # DKD
    git clone --recursive https://github.com/hunto/DIST_KD               # DIST (its classification submodule)
    git clone https://github.com/sunshangquan/logit-standardization-KD   # logit standardisation (KD, DKD)
    git clone https://github.com/bhheo/BSS_distillation                  # BSS (benchmarks/parity_bss.py)
    git clone https://github.com/VainF/Data-Free-Adversarial-Distillation  # DFAD (benchmarks/parity_dfad.py)
    git clone https://github.com/UBCDingXin/cGAN-KD                      # cGAN-KD's filter (benchmarks/parity_cgan.py)
    python benchmarks/parity.py --reference RepDistiller=RepDistiller \
        --reference attention-transfer=attention-transfer --reference mdistiller=mdistiller \
        --reference DIST_KD=DIST_KD \
        --reference logit-standardization-KD=logit-standardization-KD \
        --reference BSS_distillation=BSS_distillation \
        --reference Data-Free-Adversarial-Distillation=Data-Free-Adversarial-Distillation \
        --reference cGAN-KD=cGAN-KD

BSS, DFAD and cGAN-KD are compared by their own scripts (an attack inside the step, two optimisers, a filter instead
of a step), which this one runs for their rows; each also runs alone and writes its own, longer report.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import inspect
import math
import os
import re
import subprocess
import sys
import traceback
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from common import load_average, markdown_table, write_results
from torch import Tensor, nn

from lit_kd.methods import (
    AttentionTransfer,
    ContrastiveRepresentationDistillation,
    DecoupledKD,
    DISTDistillation,
    FitNets,
    HintonKD,
)
from lit_kd.methods.base import DistillationModule
from lit_kd.models import create_model

TARGET = 1e-4  # max abs weight difference after the steps
#: The official repositories, by the name ``--reference`` takes.
REFERENCES = {
    "RepDistiller": "https://github.com/HobbitLong/RepDistiller",
    "attention-transfer": "https://github.com/szagoruyko/attention-transfer",
    "mdistiller": "https://github.com/megvii-research/mdistiller",
    "DIST_KD": "https://github.com/hunto/DIST_KD (clone --recursive: the loss is in its classification submodule)",
    "logit-standardization-KD": "https://github.com/sunshangquan/logit-standardization-KD",
    "BSS_distillation": "https://github.com/bhheo/BSS_distillation",
    "Data-Free-Adversarial-Distillation": "https://github.com/VainF/Data-Free-Adversarial-Distillation",
    "cGAN-KD": "https://github.com/UBCDingXin/cGAN-KD",
}
#: rows compared by their own script (``benchmarks/<script>.py``, whose ``parity_rows`` gives them): name -> (the
#: reference it reads, the script)
OWN_SCRIPTS = {
    "BSS": ("BSS_distillation", "parity_bss"),
    "DFAD": ("Data-Free-Adversarial-Distillation", "parity_dfad"),
    "cGAN-KD": ("cGAN-KD", "parity_cgan"),
}
#: the converged table's methods with no step-parity row, and why (``parity.md`` lists them under its table)
WITHOUT_STEP_PARITY = {
    "DML": "the official code (YingZhangDUT/Deep-Mutual-Learning at 34a2058) is TensorFlow 1 on Python 2 "
    "(`slim = tf.contrib.slim`, `xrange`: train_models.py:17, 310), so it runs on neither TensorFlow 2 nor Python 3; "
    "and it updates the networks one after another, each on its own mini-batch (train_models.py:310-315), where "
    "lit-kd updates them together (ours, `lit_kd/methods/dml.py`). Its KL term (train_models.py:60-67) and the "
    "sum over peers (:90-95) are ported in `tests/methods/test_online.py`",
    "AFD": "no official code: its discriminators, temperature, weights and rates are ours or from secondary "
    "sources (`lit_kd/methods/afd.py`)",
    "AMA": "no official code or full text found: lit-kd's AMA is our reading of the abstract (`lit_kd/methods/ama.py`)",
    "ensemble distillation": "no official code: its loss is Hinton KD's (the Hinton KD row) on the members' mean "
    "logits",
    "self-distillation (born-again)": "no official code found, only unofficial reimplementations: its loss is "
    "Hinton KD's (the Hinton KD row) at T = 1 and alpha = 1, with a teacher of the student's architecture",
}
#: CIFAR-100 normalisation (RepDistiller ``dataset/cifar100.py``); any fixed values would do.
MEAN, STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


# ------------------------------------------------------------------------------------------------ the shared problem
@dataclass
class Batch:
    """One training batch, identical for both sides."""

    images: Tensor
    targets: Tensor
    indices: Tensor  # each sample's index into the training set (CRD's memory banks)
    contrast: Tensor | None = None  # [B, K + 1] CRD bank rows, the positive first (drawn once, fed to both sides)


@dataclass
class Problem:
    """What both sides share: the initial student, the frozen teacher, the batches and the training labels."""

    student: nn.Module
    teacher: nn.Module
    batches: list[Batch]
    labels: Tensor  # [N] class of every training sample (CRD's class-aware negatives)
    seed: int = 0

    def student_copy(self) -> nn.Module:
        """A fresh copy of the initial student, in train mode."""
        return copy.deepcopy(self.student).train()

    def teacher_copy(self) -> nn.Module:
        """A fresh copy of the frozen teacher, in eval mode."""
        return copy.deepcopy(self.teacher).eval().requires_grad_(False)

    def draw_contrast(self, num_negatives: int) -> None:
        """CRD negatives for every batch, drawn as RepDistiller's ``CIFAR100InstanceSample`` (``--mode exact``).

        ``dataset/cifar100.py:159-168``: per sample, ``np.random.choice`` of ``K`` indices of the other classes,
        without replacement unless a class has fewer than ``K``, the sample's own index first. Drawn here once, with
        a seeded generator, and given to both sides.
        """
        rng = np.random.RandomState(self.seed)
        labels = self.labels.numpy()
        negatives_of = {int(c): np.flatnonzero(labels != c) for c in np.unique(labels)}
        for batch in self.batches:
            rows = []
            for index, target in zip(batch.indices.tolist(), batch.targets.tolist(), strict=True):
                pool = negatives_of[target]
                negatives = rng.choice(pool, num_negatives, replace=num_negatives > len(pool))
                rows.append(np.hstack(([index], negatives)))
            batch.contrast = torch.from_numpy(np.stack(rows)).long()


def make_problem(
    steps: int = 20,
    batch_size: int = 16,
    num_samples: int = 20000,
    student: str = "resnet8",
    teacher: str = "resnet14",
    num_classes: int = 10,
    seed: int = 0,
) -> Problem:
    """Zoo networks, a teacher with settled BN statistics, and ``steps`` fixed augmented batches of random images.

    The images are random pixels, normalised, zero-padded by 4 and randomly cropped back to 32x32 and flipped
    (RepDistiller's CIFAR augmentation), once: the same tensors go to both sides. Samples are distinct across batches.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    student_net = create_model(student, num_classes).train()
    teacher_net = create_model(teacher, num_classes)
    labels = torch.randint(0, num_classes, (num_samples,), generator=generator)
    order = torch.randperm(num_samples, generator=generator)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    batches = []
    for step in range(steps):
        indices = order[step * batch_size : (step + 1) * batch_size]
        pixels = torch.randint(0, 256, (batch_size, 3, 32, 32), generator=generator).to(torch.get_default_dtype()) / 255
        padded = F.pad((pixels - mean) / std, (4, 4, 4, 4))
        crops = []
        for image in padded:
            top, left = torch.randint(0, 9, (2,), generator=generator).tolist()
            crop = image[:, top : top + 32, left : left + 32]
            crops.append(crop.flip(-1) if torch.rand((), generator=generator) < 0.5 else crop)
        batches.append(Batch(torch.stack(crops).contiguous(), labels[indices].clone(), indices.clone()))
    with torch.no_grad():  # settle the teacher's BN statistics (a fresh teacher's are 0 / 1), then freeze it
        momenta = {m: m.momentum for m in teacher_net.modules() if isinstance(m, nn.BatchNorm2d)}
        for module in momenta:
            module.momentum = None  # cumulative average
        teacher_net.train()
        for batch in batches[:4]:
            teacher_net(batch.images)
        for module, momentum in momenta.items():
            module.momentum = momentum
    teacher_net.eval().requires_grad_(False)
    return Problem(student_net, teacher_net, batches, labels, seed)


# ------------------------------------------------------------------------------------------------ sides and steps
@dataclass
class Side:
    """One implementation: its loss of a batch, the parameters its optimiser steps, and those compared by name."""

    loss: Callable[[int, Batch], Tensor]  # (step, batch) -> scalar loss
    optimized: list[Tensor]
    compared: dict[str, Tensor]
    buffers: dict[str, Tensor] = field(default_factory=dict)  # compared too (BN running statistics), reported apart


@dataclass
class Trajectory:
    """What a side did: its loss at each step, its gradients at the first step, its weights after the last."""

    losses: list[float]
    first_gradients: dict[str, Tensor]
    weights: dict[str, Tensor]
    buffers: dict[str, Tensor]
    lines: dict[str, set[int]]


@contextmanager
def trace_lines(root: Path | None) -> Iterator[dict[str, set[int]]]:
    """Record which lines of the files under ``root`` run inside the block (``{path relative to root: lines}``)."""
    executed: dict[str, set[int]] = {}
    if root is None:
        yield executed
        return
    prefix = str(root.resolve()) + "/"

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            executed.setdefault(frame.f_code.co_filename[len(prefix) :], set()).add(frame.f_lineno)
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:  # function bodies only, not module or class bodies
        code = frame.f_code
        return local if code.co_filename.startswith(prefix) and code.co_flags & inspect.CO_OPTIMIZED else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield executed
    finally:
        sys.settrace(previous)


def run_side(
    side: Side,
    batches: list[Batch],
    steps: int,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    trace_root: Path | None = None,
) -> Trajectory:
    """``steps`` SGD steps of ``side`` on ``batches`` (cycled); the first step's lines under ``trace_root`` traced."""
    optimizer = torch.optim.SGD(side.optimized, lr=lr, momentum=momentum, weight_decay=weight_decay)
    losses, first_gradients, lines = [], {}, {}
    for step in range(steps):
        batch = batches[step % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        with trace_lines(trace_root if step == 0 else None) as executed:
            loss = side.loss(step, batch)
            loss.backward()
        if step == 0:
            lines = executed
            first_gradients = {
                name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                for name, p in side.compared.items()
            }
        optimizer.step()
        losses.append(float(loss.detach()))
    weights = {name: p.detach().clone() for name, p in side.compared.items()}
    buffers = {name: b.detach().clone() for name, b in side.buffers.items()}
    return Trajectory(losses, first_gradients, weights, buffers, lines)


def max_difference(a: dict[str, Tensor], b: dict[str, Tensor]) -> tuple[float, str]:
    """The largest absolute difference between same-named tensors, and the name where it is."""
    if a.keys() != b.keys():
        raise ValueError(f"the sides compare different tensors: only one has {sorted(a.keys() ^ b.keys())}")
    worst, where = 0.0, ""
    for name in a:
        difference = float((a[name].double() - b[name].double()).abs().max()) if a[name].numel() else 0.0
        if difference > worst or not where:
            worst, where = difference, name
    return worst, where


def compare(lit: Side, official: Side, problem: Problem, steps: int, trace_root: Path | None = None) -> dict[str, Any]:
    """Run both sides and report the weight, gradient and loss differences (and the official lines that ran)."""
    lit_run = run_side(lit, problem.batches, steps)
    official_run = run_side(official, problem.batches, steps, trace_root=trace_root)
    return {**differences(lit_run, official_run), "lit_kd_run": lit_run}


def differences(lit_run: Trajectory, official_run: Trajectory) -> dict[str, Any]:
    """The weight, gradient and loss differences of two runs (and the lines of the second's reference that ran)."""
    steps = len(lit_run.losses)
    weight_diff, worst = max_difference(lit_run.weights, official_run.weights)
    gradient_diff, _ = max_difference(lit_run.first_gradients, official_run.first_gradients)
    buffer_diff = max_difference(lit_run.buffers, official_run.buffers)[0] if lit_run.buffers else None
    loss_diffs = [abs(a - b) for a, b in zip(lit_run.losses, official_run.losses, strict=True)]
    return {
        "steps": steps,
        "max_abs_weight_diff": weight_diff,
        "worst_parameter": worst,
        "max_abs_buffer_diff": buffer_diff,
        "first_loss_lit_kd": lit_run.losses[0],
        "first_loss_official": official_run.losses[0],
        "first_step_max_abs_grad_diff": gradient_diff,
        "max_abs_loss_diff": max(loss_diffs),
        "losses_lit_kd": lit_run.losses,
        "losses_official": official_run.losses,
        "compared_tensors": len(lit_run.weights),
        "within_target": weight_diff <= TARGET,
        "official_lines": official_run.lines,
    }


# ------------------------------------------------------------------------------------------------ lit-kd's side
def build_module(cls: type[DistillationModule], problem: Problem, **settings: Any) -> DistillationModule:
    """``cls`` on copies of the problem's networks, with its defaults (plus ``settings``), in train mode.

    The networks are reset to the problem's weights and buffers after construction (a construction probe must not
    change the starting point).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = cls(student=problem.student_copy(), teacher=problem.teacher_copy(), num_classes=10, **settings)
    module.student.load_state_dict(problem.student.state_dict())
    module.teacher.load_state_dict(problem.teacher.state_dict())
    module.teacher_runner.invalidate()
    return module.train()


def named_student(student: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The student's parameters and floating-point buffers, named ``student.<name>``."""
    parameters = {f"student.{name}": p for name, p in student.named_parameters()}
    buffers = {f"student.{name}": b for name, b in student.named_buffers() if b.is_floating_point()}
    return parameters, buffers


def lit_side(module: DistillationModule, auxiliary: dict[str, Tensor] | None = None) -> Side:
    """The module's loss path (``training_losses``, what ``training_step`` returns), every trainable parameter."""

    def loss(step: int, batch: Batch) -> Tensor:
        if isinstance(module, ContrastiveRepresentationDistillation):
            losses, _ = module.training_losses(batch.images, batch.targets, batch.indices, batch.contrast)
        else:
            losses, _ = module.training_losses(batch.images, batch.targets)
        return losses["loss"]

    parameters, buffers = named_student(module.student)
    optimized = [p for p in module.parameters() if p.requires_grad]  # as StudentModule.configure_optimizers
    return Side(loss, optimized, {**parameters, **(auxiliary or {})}, buffers)


# ------------------------------------------------------------------------------------------------ official code
def import_official(root: Path, relative: str) -> types.ModuleType:
    """Import one file of an official checkout by its path.

    It is loaded inside a stand-in package for its folder, so that its relative imports of sibling files work while
    the real package's ``__init__.py`` (with its training-engine imports) does not run.
    """
    path = (root / relative).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no {relative}; is this a checkout of the right repository?")
    package = "_parity_official_" + hashlib.sha1(str(path.parent).encode()).hexdigest()[:12]
    if package not in sys.modules:
        stand_in = types.ModuleType(package)
        stand_in.__path__ = [str(path.parent)]
        sys.modules[package] = stand_in
    name = f"{package}.{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def stand_in_for_missing(module_name: str, *attributes: str) -> None:
    """An empty module for an import the official file makes but the compared functions never use."""
    if module_name in sys.modules or importlib.util.find_spec(module_name) is not None:
        return

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{module_name} is not installed (a stand-in made by benchmarks/parity.py)")

    stand_in = types.ModuleType(module_name)
    for attribute in attributes:
        setattr(stand_in, attribute, unavailable)
    sys.modules[module_name] = stand_in


def namespace(**values: Any) -> types.SimpleNamespace:
    """An attribute tree standing in for a yacs config or argparse options."""
    return types.SimpleNamespace(**values)


def repdistiller_forward(network: nn.Module, images: Tensor) -> tuple[list[Tensor], Tensor]:
    """What RepDistiller's ``model(x, is_feat=True)`` returns (``models/resnet.py:178-200``) for a zoo network.

    ``[stem, stage 1, ..., stage n, pooled embedding]`` (post-activation) and the logits.
    """
    output = network.forward_features(images)
    return [*output.features, output.embedding], output.logits


class MdistillerNetwork(nn.Module):
    """A zoo network as mdistiller's distillers call it: ``logits, {"feats": [...], "pooled_feat": ...}``.

    It declares the network's input normalisation (``input_mean``/``input_std``), so that
    :func:`~lit_kd.models.normalization.match_input_normalization` can convert the data's batches for it.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.input_mean = getattr(network, "input_mean", None)
        self.input_std = getattr(network, "input_std", None)

    def forward(self, images: Tensor) -> tuple[Tensor, dict[str, Any]]:
        output = self.network.forward_features(images)
        return output.logits, {"feats": [*output.features], "pooled_feat": output.embedding}


def copy_into(target: Tensor, source: Tensor) -> None:
    with torch.no_grad():
        target.copy_(source)


@dataclass
class Official:
    """The official side of one method: its loss, and what the adapter composes by hand (cited, not run)."""

    side: Side
    replicated: list[str]
    notes: list[str] = field(default_factory=list)


def repdistiller_side(
    root: Path,
    problem: Problem,
    gamma: float,
    alpha: float,
    beta: float,
    temperature: float,
    distill: str,
    criterion_kd: Callable[[list[Tensor], list[Tensor], Batch], Tensor] | None = None,
    trainable: list[nn.Module] | None = None,
) -> Official:
    """RepDistiller's training objective ``gamma * CE + alpha * DistillKL + beta * loss_kd`` (``helper/loops.py``)."""
    zoo_kd = import_official(root, "distiller_zoo/KD.py")
    student, teacher = problem.student_copy(), problem.teacher_copy()
    criterion_cls, criterion_div = nn.CrossEntropyLoss(), zoo_kd.DistillKL(temperature)

    def loss(step: int, batch: Batch) -> Tensor:
        feat_s, logit_s = repdistiller_forward(student, batch.images)  # helper/loops.py:114-117
        with torch.no_grad():
            feat_t, logit_t = repdistiller_forward(teacher, batch.images)
            feat_t = [f.detach() for f in feat_t]
        loss_cls = criterion_cls(logit_s, batch.targets)
        loss_div = criterion_div(logit_s, logit_t)
        loss_kd = criterion_kd(feat_s, feat_t, batch) if criterion_kd is not None else 0
        return gamma * loss_cls + alpha * loss_div + beta * loss_kd  # helper/loops.py:184

    parameters, buffers = named_student(student)
    optimized = list(student.parameters())  # train_student.py:178-179, 273: the student and the extra modules
    for extra in trainable or []:
        optimized += list(extra.parameters())
    compared = dict(parameters)  # the builder adds the extra modules' parameters that lit-kd also has
    replicated = [
        "helper/loops.py:114-117 (features and logits of both networks, teacher under no_grad)",
        f"helper/loops.py:120-{ {'kd': 125, 'hint': 129, 'attention': 138, 'crd': 133}[distill] } (the loss for "
        f"--distill {distill})",
        "helper/loops.py:184 (gamma * loss_cls + alpha * loss_div + beta * loss_kd)",
    ]
    return Official(Side(loss, optimized, compared, buffers), replicated)


def repdistiller_feature_index(layer: str) -> int | str:
    """RepDistiller's ``feat[i]`` of a zoo module path: the stem is 0, ``stages.i`` is ``i + 1`` (others unchanged)."""
    return 0 if layer == "stem" else int(layer.split(".")[1]) + 1 if layer.startswith("stages.") else layer


#: RepDistiller's flags (train_student.py: --distill, -r gamma, -a alpha, -b beta, --kd_T, --hint_layer) at a lit-kd
#: module's settings, by module class: what helper/loops.py:train_distill reads from ``opt``
REPDISTILLER_FLAGS: dict[type, Callable[[Any], dict[str, Any]]] = {
    HintonKD: lambda m: dict(distill="kd", gamma=m.ce_weight, alpha=m.kd_weight, beta=0.0, kd_T=m.temperature),
    FitNets: lambda m: dict(
        distill="hint",
        gamma=1.0,
        alpha=0.0,
        beta=m.hint_weight,
        kd_T=4.0,
        hint_layer=repdistiller_feature_index(m.student_taps.layers[0]),
    ),
    AttentionTransfer: lambda m: dict(distill="attention", gamma=1.0, alpha=0.0, beta=m.beta, kd_T=4.0),
}


def repdistiller_flags(module: DistillationModule) -> types.SimpleNamespace:
    """RepDistiller's training flags set to ``module``'s settings (:data:`REPDISTILLER_FLAGS`), as a namespace."""
    for cls, flags in REPDISTILLER_FLAGS.items():
        if isinstance(module, cls):
            return namespace(**flags(module))
    raise ValueError(
        f"no RepDistiller flags for {type(module).__name__}; known: {[c.__name__ for c in REPDISTILLER_FLAGS]}"
    )


# Each official builder takes (checkout, problem, lit-kd module) and returns the official side, set to the module's
# hyperparameters; the module's own auxiliary weights (regressor, embeddings) are copied into the official ones.
def official_hinton(root: Path, problem: Problem, module: HintonKD) -> Official:
    flags = repdistiller_flags(module)
    return repdistiller_side(root, problem, flags.gamma, flags.alpha, flags.beta, flags.kd_T, flags.distill)


def official_regressor(root: Path, module: FitNets, student_map: Tensor, teacher_map: Tensor) -> nn.Module:
    """RepDistiller's ``ConvReg`` between the hint maps (``train_student.py:187``), with ``module``'s regressor weights.

    The convolution's bias (lit-kd's has none) keeps its official initialisation: the BatchNorm after it cancels it.
    """
    util = import_official(root, "models/util.py")
    regress = util.ConvReg(student_map.shape, teacher_map.shape)
    lit_convolution, lit_norm = module.regressor.regressor[0], module.regressor.regressor[1]
    copy_into(regress.conv.weight, lit_convolution.weight)
    for name in ("weight", "bias"):
        copy_into(getattr(regress.bn, name), getattr(lit_norm, name))
    return regress


def official_fitnets(root: Path, problem: Problem, module: FitNets) -> Official:
    hint = import_official(root, "distiller_zoo/FitNet.py")
    flags = repdistiller_flags(module)
    hint_layer = flags.hint_layer  # --hint_layer (train_student.py:88, 2); lit-kd's default, the middle stage, is 2
    feats, _ = repdistiller_forward(problem.student_copy().eval(), problem.batches[0].images)
    feats_t, _ = repdistiller_forward(problem.teacher_copy(), problem.batches[0].images)
    regress = official_regressor(root, module, feats[hint_layer], feats_t[hint_layer])
    criterion = hint.HintLoss()
    official = repdistiller_side(
        root,
        problem,
        flags.gamma,
        flags.alpha,
        flags.beta,
        flags.kd_T,
        flags.distill,
        lambda s, t, batch: criterion(regress(s[hint_layer]), t[hint_layer]),  # helper/loops.py:127-129
        [regress],
    )
    official.side.compared.update({"regressor.conv.weight": regress.conv.weight})
    official.side.compared.update({f"regressor.bn.{n}": getattr(regress.bn, n) for n in ("weight", "bias")})
    official.notes.append(
        "ConvReg's convolution has a bias, lit-kd's none: the BatchNorm after it (in train mode) removes any bias, "
        "so its gradient is zero; it keeps its official initialisation and is not compared"
    )
    return official


def fitnets_auxiliary(module: FitNets) -> dict[str, Tensor]:
    convolution, norm = module.regressor.regressor[0], module.regressor.regressor[1]
    return {
        "regressor.conv.weight": convolution.weight,
        "regressor.bn.weight": norm.weight,
        "regressor.bn.bias": norm.bias,
    }


def official_at_repdistiller(root: Path, problem: Problem, module: AttentionTransfer) -> Official:
    zoo_at = import_official(root, "distiller_zoo/AT.py")
    criterion = zoo_at.Attention(p=int(module.p))
    flags = repdistiller_flags(module)
    return repdistiller_side(
        root,
        problem,
        flags.gamma,
        flags.alpha,
        flags.beta,
        flags.kd_T,
        flags.distill,
        lambda s, t, batch: sum(criterion(s[1:-1], t[1:-1])),  # helper/loops.py:135-138
    )


def official_at_zagoruyko(root: Path, problem: Problem, module: AttentionTransfer) -> Official:
    stand_in_for_missing("nested_dict", "nested_dict")  # utils.py imports it for its parameter helpers only
    utils = import_official(root, "utils.py")
    student, teacher = problem.student_copy(), problem.teacher_copy()
    temperature, alpha, beta = 4.0, 0.0, module.beta  # cifar.py:55-57 (--beta 1e+3 in README.md:68)

    def loss(step: int, batch: Batch) -> Tensor:
        out_s = student.forward_features(batch.images)
        y_s, g_s = out_s.logits, out_s.features[1:]  # the group outputs (cifar.py:131-138)
        with torch.no_grad():
            out_t = teacher.forward_features(batch.images)
            y_t, g_t = out_t.logits, out_t.features[1:]
        loss_groups = [utils.at_loss(x, y) for x, y in zip(g_s, g_t, strict=True)]  # cifar.py:180
        loss_groups = [v.sum() for v in loss_groups]  # cifar.py:220
        return utils.distillation(y_s, y_t, batch.targets, temperature, alpha) + beta * sum(loss_groups)

    parameters, buffers = named_student(student)
    replicated = [
        "cifar.py:176-180 (group outputs of both networks, teacher under no_grad, at_loss per group)",
        "cifar.py:220-223 (utils.distillation(...) + opt.beta * sum(loss_groups))",
    ]
    return Official(Side(loss, list(student.parameters()), parameters, buffers), replicated)


def mdistiller_dkd(
    root: Path, module: DecoupledKD, student: nn.Module, teacher: nn.Module, standardize: bool = False
) -> nn.Module:
    """The official DKD distiller (``mdistiller/distillers/DKD.py``) around two zoo networks, at ``module``'s
    settings (the cfg keys of ``mdistiller/engine/cfg.py:163-167``; logit-standardization-KD's ``LOGIT_STAND``)."""
    distillers = import_official(root, "mdistiller/distillers/DKD.py")
    settings = dict(
        CE_WEIGHT=module.ce_weight,
        ALPHA=module.alpha,
        BETA=module.beta,
        T=module.temperature,
        WARMUP=module.warmup_epochs,
    )
    cfg = namespace(DKD=namespace(**settings), EXPERIMENT=namespace(LOGIT_STAND=standardize))
    return distillers.DKD(MdistillerNetwork(student), MdistillerNetwork(teacher), cfg).train()


def official_dkd(root: Path, problem: Problem, module: DecoupledKD, standardize: bool = False) -> Official:
    student = problem.student_copy()
    distiller = mdistiller_dkd(root, module, student, problem.teacher_copy(), standardize)
    epoch = module.current_epoch + 1  # mdistiller counts epochs from 1 (engine/trainer.py:78-86)

    def loss(step: int, batch: Batch) -> Tensor:
        _, losses_dict = distiller(image=batch.images, target=batch.targets, epoch=epoch)
        return sum(value.mean() for value in losses_dict.values())  # engine/trainer.py:164-167

    parameters, buffers = named_student(student)
    replicated = ["mdistiller/engine/trainer.py:164-167 (distiller(image, target, epoch); sum of the loss dict)"]
    return Official(Side(loss, list(distiller.get_learnable_parameters()), parameters, buffers), replicated)


def dist_criterion(root: Path, module: DISTDistillation, student: nn.Module, teacher: nn.Module) -> Any:
    """The official DIST loss wrapper (``kd_loss.py: KDLoss``, which runs both networks) at ``module``'s settings."""
    losses_dir = dist_losses_dir(root)
    kd_loss = import_official(losses_dir.parents[2], "lib/models/losses/kd_loss.py")
    if module.beta != 1 or module.gamma != 1:
        raise ValueError("the official KDLoss fixes beta = gamma = 1 (kd_loss.py:31-33)")
    return kd_loss.KDLoss(
        student,
        teacher,
        nn.CrossEntropyLoss(),  # tools/train.py:60-61 (no label smoothing)
        kd_method=f"dist_t{module.temperature:g}",
        ori_loss_weight=module.ce_weight,
        kd_loss_weight=module.kd_weight,
    )  # tools/train.py:100-102


def official_dist(root: Path, problem: Problem, module: DISTDistillation) -> Official:
    student, teacher = problem.student_copy(), problem.teacher_copy()
    criterion = dist_criterion(root, module, student, teacher)

    def loss(step: int, batch: Batch) -> Tensor:
        return criterion(batch.images, batch.targets)

    parameters, buffers = named_student(student)
    replicated = ["tools/train.py:100-102 (KDLoss(model, teacher, CrossEntropyLoss(), kd, ..., weights))"]
    return Official(Side(loss, list(student.parameters()), parameters, buffers), replicated)


def dist_losses_dir(root: Path) -> Path:
    """``lib/models/losses`` of a DIST_KD checkout (in its ``classification`` submodule) or of the submodule itself."""
    for candidate in (root / "classification/lib/models/losses", root / "lib/models/losses"):
        if (candidate / "dist_kd.py").is_file():
            return candidate
    raise FileNotFoundError(
        f"{root}: no classification/lib/models/losses/dist_kd.py (clone DIST_KD with --recursive, or run "
        "git submodule update --init)"
    )


def mdistiller_ls_kd(root: Path, module: HintonKD, student: nn.Module, teacher: nn.Module) -> nn.Module:
    """logit-standardization-KD's KD distiller (``mdistiller/distillers/KD.py``) around two zoo networks, at
    ``module``'s settings (``tools/train.py:109-114`` with ``--logit-stand``)."""
    distillers = import_official(root, "mdistiller/distillers/KD.py")
    loss_settings = namespace(CE_WEIGHT=module.ce_weight, KD_WEIGHT=module.kd_weight)
    cfg = namespace(
        KD=namespace(TEMPERATURE=module.temperature, LOSS=loss_settings),
        EXPERIMENT=namespace(LOGIT_STAND=module.standardize),
    )
    return distillers.KD(MdistillerNetwork(student), MdistillerNetwork(teacher), cfg).train()


def official_ls_kd(root: Path, problem: Problem, module: HintonKD) -> Official:
    student = problem.student_copy()
    distiller = mdistiller_ls_kd(root, module, student, problem.teacher_copy())

    def loss(step: int, batch: Batch) -> Tensor:
        _, losses_dict = distiller(image=batch.images, target=batch.targets, epoch=1)
        return sum(value.mean() for value in losses_dict.values())  # mdistiller/engine/trainer.py (the same sum)

    parameters, buffers = named_student(student)
    replicated = ["mdistiller/engine/trainer.py train_iter (distiller(image, target, epoch); sum of the loss dict)"]
    return Official(Side(loss, list(distiller.get_learnable_parameters()), parameters, buffers), replicated)


def official_ls_dkd(root: Path, problem: Problem, module: DecoupledKD) -> Official:
    official = official_dkd(root, problem, module, standardize=module.standardize)
    official.replicated = ["mdistiller/engine/trainer.py train_iter (distiller(image, target, epoch); sum of losses)"]
    return official


def official_crd(root: Path, problem: Problem, module: ContrastiveRepresentationDistillation) -> Official:
    memory = import_official(root, "crd/memory.py")
    criterion_module = import_official(root, "crd/criterion.py")
    lit_crd = module.crd
    assert lit_crd is not None
    settings = module.contrast_settings
    opt = namespace(
        s_dim=module.feature_sizes[0],
        t_dim=module.feature_sizes[1],
        feat_dim=settings["feature_dim"],
        n_data=lit_crd.memory.num_samples,
        nce_k=settings["num_negatives"],
        nce_t=settings["temperature"],
        nce_m=settings["momentum"],
    )  # train_student.py:190-194
    alias_cuda = memory.AliasMethod.cuda
    if not torch.cuda.is_available():  # ContrastMemory moves its (here unused) sampler to CUDA at construction
        memory.AliasMethod.cuda = lambda self: None
    try:
        criterion = criterion_module.CRDLoss(opt)
    finally:
        memory.AliasMethod.cuda = alias_cuda
    for official_embed, lit_embed in (
        (criterion.embed_s, lit_crd.embed_student),
        (criterion.embed_t, lit_crd.embed_teacher),
    ):
        copy_into(official_embed.linear.weight, lit_embed.linear.weight)
        copy_into(official_embed.linear.bias, lit_embed.linear.bias)
    copy_into(criterion.contrast.memory_v1, lit_crd.memory.student_bank)  # v1: the student's bank (memory.py:63-69)
    copy_into(criterion.contrast.memory_v2, lit_crd.memory.teacher_bank)

    def crd(feat_s: list[Tensor], feat_t: list[Tensor], batch: Batch) -> Tensor:
        return criterion(feat_s[-1], feat_t[-1], batch.indices, batch.contrast)  # helper/loops.py:130-133

    official = repdistiller_side(
        root,
        problem,
        module.ce_weight,
        module.kd_weight,
        module.crd_weight,
        module.temperature,
        "crd",
        crd,
        [criterion.embed_s, criterion.embed_t],
    )
    official.side.compared.update(
        {
            f"embed_{side}.linear.{name}": getattr(getattr(criterion, f"embed_{side}").linear, name)
            for side in "st"
            for name in ("weight", "bias")
        }
    )
    official.notes.append(
        "negatives: the same [B, K + 1] indices on both sides, drawn once as dataset/cifar100.py:159-168; the banks "
        "start from lit-kd's (copied into memory_v1 / memory_v2)"
    )
    return official


def crd_module(problem: Problem, **overrides: Any) -> ContrastiveRepresentationDistillation:
    module = build_module(ContrastiveRepresentationDistillation, problem, **overrides)
    torch.manual_seed(problem.seed)
    module.configure_contrast(len(problem.labels), problem.labels)
    problem.draw_contrast(module.contrast_settings["num_negatives"])
    return module


def crd_auxiliary(module: ContrastiveRepresentationDistillation) -> dict[str, Tensor]:
    assert module.crd is not None
    embeds = {"s": module.crd.embed_student, "t": module.crd.embed_teacher}
    return {
        f"embed_{side}.linear.{name}": getattr(embeds[side].linear, name)
        for side in "st"
        for name in ("weight", "bias")
    }


# ------------------------------------------------------------------------------------------------ defaults
@dataclass
class Setting:
    """One hyperparameter: lit-kd's default, the official one (read from the checkout) and where that is."""

    name: str
    lit_kd: Any
    official: Any
    source: str

    @property
    def matches(self) -> bool:
        try:
            return math.isclose(float(self.lit_kd), float(self.official), rel_tol=1e-9)
        except (TypeError, ValueError):
            return str(self.lit_kd) == str(self.official)


def find_value(root: Path, relative: str, pattern: str, group: int = 1) -> tuple[str | None, str]:
    """The first match of ``pattern`` (a regex) in a checkout's file: its group, and ``file:line``."""
    path = root / relative
    if not path.is_file():
        return None, f"{relative} (missing)"
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = re.search(pattern, line)
        if match:
            return match.group(group), f"{relative}:{number}"
    return None, f"{relative} (no line matches {pattern!r})"


def setting(name: str, lit_value: Any, root: Path, relative: str, pattern: str, group: int = 1) -> Setting:
    value, source = find_value(root, relative, pattern, group)
    return Setting(name, lit_value, value, source)


NUMBER = r"([-+\d.e]+)"


def repdistiller_script(root: Path, distill: str, flag: str) -> tuple[str | None, str]:
    return find_value(root, "scripts/run_cifar_distill.sh", rf"--distill {distill} .*{flag} {NUMBER}")


def script_setting(name: str, lit_value: Any, root: Path, distill: str, flag: str, default: str) -> Setting:
    """A RepDistiller script flag, or the argparse default of ``train_student.py`` when the script leaves it out."""
    value, source = repdistiller_script(root, distill, flag)
    if value is None:
        value, source = find_value(root, "train_student.py", rf"'{flag}', '--{default}', type=float, default={NUMBER}")
    return Setting(name, lit_value, value, source)


def defaults_hinton(root: Path, module: HintonKD) -> list[Setting]:
    return [
        setting(
            "temperature", module.temperature, root, "train_student.py", rf"'--kd_T', type=float, default={NUMBER}"
        ),
        script_setting("ce_weight (-r)", module.ce_weight, root, "kd", "-r", "gamma"),
        script_setting("kd_weight (-a)", module.kd_weight, root, "kd", "-a", "alpha"),
    ]


def defaults_fitnets(root: Path, module: FitNets) -> list[Setting]:
    layer = module.student_taps.layers[0]  # a module path; RepDistiller's feat[i] is the stem (0) or stage i
    index = repdistiller_feature_index(layer)
    return [
        script_setting("ce_weight (-r)", 1.0, root, "hint", "-r", "gamma"),
        script_setting("hint_weight (-b)", module.hint_weight, root, "hint", "-b", "beta"),
        setting(
            f"hint_layer (feat index; lit-kd {layer})",
            index,
            root,
            "train_student.py",
            r"'--hint_layer', default=(\d+)",
        ),
    ]


def defaults_at_repdistiller(root: Path, module: AttentionTransfer) -> list[Setting]:
    return [
        script_setting("ce_weight (-r)", 1.0, root, "attention", "-r", "gamma"),
        script_setting("beta (-b)", module.beta, root, "attention", "-b", "beta"),
        setting("p", module.p, root, "distiller_zoo/AT.py", r"def __init__\(self, p=(\d+)\)"),
    ]


def defaults_at_zagoruyko(root: Path, module: AttentionTransfer) -> list[Setting]:
    return [
        setting("beta (README)", module.beta, root, "README.md", rf"cifar.py .*--beta {NUMBER}"),
        setting("alpha (KD weight)", 0.0, root, "cifar.py", rf"'--alpha', default={NUMBER}"),
        setting("p", module.p, root, "utils.py", r"x\.pow\((\d+)\)\.mean\(1\)"),
    ]


def defaults_dkd(root: Path, module: DecoupledKD) -> list[Setting]:
    cfg = "mdistiller/engine/cfg.py"
    return [
        setting("ce_weight", module.ce_weight, root, cfg, rf"CFG\.DKD\.CE_WEIGHT = {NUMBER}"),
        setting("alpha", module.alpha, root, cfg, rf"CFG\.DKD\.ALPHA = {NUMBER}"),
        setting("beta", module.beta, root, cfg, rf"CFG\.DKD\.BETA = {NUMBER}"),
        setting("temperature", module.temperature, root, cfg, rf"CFG\.DKD\.T = {NUMBER}"),
        setting("warmup_epochs", module.warmup_epochs, root, cfg, rf"CFG\.DKD\.WARMUP = {NUMBER}"),
    ]


def defaults_dist(root: Path, module: DISTDistillation) -> list[Setting]:
    losses = dist_losses_dir(root)
    base = losses.parents[2]
    prefix = str(base.relative_to(root)) + "/" if base != root else ""
    config = prefix + "configs/strategies/distill/dist_cifar.yaml"
    return [
        setting("ce_weight", module.ce_weight, root, config, rf"^ori_loss_weight:\s*{NUMBER}"),
        setting("kd_weight", module.kd_weight, root, config, rf"^kd_loss_weight:\s*{NUMBER}"),
        setting("temperature", module.temperature, root, config, r"^kd:\s*dist_t([\d.]+)"),
        setting(
            "beta",
            module.beta,
            root,
            prefix + "lib/models/losses/kd_loss.py",
            r"DIST\(beta=(\d+), gamma=\d+, tau=tau\)",
        ),
        setting(
            "gamma",
            module.gamma,
            root,
            prefix + "lib/models/losses/kd_loss.py",
            r"DIST\(beta=\d+, gamma=(\d+), tau=tau\)",
        ),
    ]


def defaults_ls_kd(root: Path, module: HintonKD) -> list[Setting]:
    return [
        setting(
            "temperature (--base-temp)",
            module.temperature,
            root,
            "tools/train.py",
            rf'"--base-temp", type=float, default={NUMBER}',
        ),
        setting(
            "kd_weight (--kd-weight)",
            module.kd_weight,
            root,
            "tools/train.py",
            rf'"--kd-weight", type=float, default={NUMBER}',
        ),
        setting(
            "ce_weight", module.ce_weight, root, "mdistiller/engine/cfg.py", rf"CFG\.KD\.LOSS\.CE_WEIGHT = {NUMBER}"
        ),
    ]


def defaults_ls_dkd(root: Path, module: DecoupledKD) -> list[Setting]:
    weight, source = find_value(root, "tools/train.py", rf'"--kd-weight", type=float, default={NUMBER}')
    cfg = "mdistiller/engine/cfg.py"
    alpha, alpha_source = find_value(root, cfg, rf"CFG\.DKD\.ALPHA = {NUMBER}")
    beta, beta_source = find_value(root, cfg, rf"CFG\.DKD\.BETA = {NUMBER}")

    def times(value: str | None) -> float | None:
        return None if value is None or weight is None else float(value) * float(weight)

    return [
        Setting("alpha (ALPHA x --kd-weight)", module.alpha, times(alpha), f"{alpha_source}, {source}"),
        Setting("beta (BETA x --kd-weight)", module.beta, times(beta), f"{beta_source}, {source}"),
        setting(
            "temperature (--base-temp)",
            module.temperature,
            root,
            "tools/train.py",
            rf'"--base-temp", type=float, default={NUMBER}',
        ),
        setting("ce_weight", module.ce_weight, root, cfg, rf"CFG\.DKD\.CE_WEIGHT = {NUMBER}"),
        setting("warmup_epochs", module.warmup_epochs, root, cfg, rf"CFG\.DKD\.WARMUP = {NUMBER}"),
    ]


def defaults_crd(root: Path, module: ContrastiveRepresentationDistillation) -> list[Setting]:
    settings = module.contrast_settings
    student = "train_student.py"
    return [
        script_setting("ce_weight (-r)", module.ce_weight, root, "crd", "-r", "gamma"),
        script_setting("kd_weight (-a)", module.kd_weight, root, "crd", "-a", "alpha"),
        script_setting("crd_weight (-b)", module.crd_weight, root, "crd", "-b", "beta"),
        setting("feature_dim", settings["feature_dim"], root, student, rf"'--feat_dim', default={NUMBER}"),
        setting("num_negatives", settings["num_negatives"], root, student, rf"'--nce_k', default={NUMBER}"),
        setting("contrast_temperature", settings["temperature"], root, student, rf"'--nce_t', default={NUMBER}"),
        setting("momentum", settings["momentum"], root, student, rf"'--nce_m', default={NUMBER}"),
        setting(
            "class_negatives (--mode)",
            "exact" if module.class_negatives else "relax",
            root,
            student,
            r"'--mode', default='(\w+)'",
        ),
    ]


# ------------------------------------------------------------------------------------------------ the methods
@dataclass(frozen=True)
class Method:
    """One row: the lit-kd module, its official counterpart and how to compare their defaults."""

    name: str
    reference: str
    module: Callable[..., DistillationModule]  # (problem, **overrides) -> the lit-kd module
    official: Callable[[Path, Problem, Any], Official]
    defaults: Callable[[Path, Any], list[Setting]]
    auxiliary: Callable[[Any], dict[str, Tensor]] = lambda module: {}
    note: str = ""


LS_KD = dict(standardize=True, temperature=2.0, kd_weight=9.0, ce_weight=0.1)  # recipes/cifar10/kd_ls_*.yaml
LS_DKD = dict(standardize=True, alpha=9.0, beta=72.0, temperature=2.0)  # DecoupledKD's docstring
METHODS = [
    Method(
        "Hinton KD", "RepDistiller", lambda p, **o: build_module(HintonKD, p, **o), official_hinton, defaults_hinton
    ),
    Method(
        "FitNets",
        "RepDistiller",
        lambda p, **o: build_module(FitNets, p, **o),
        official_fitnets,
        defaults_fitnets,
        fitnets_auxiliary,
    ),
    Method(
        "AT (RepDistiller)",
        "RepDistiller",
        lambda p, **o: build_module(AttentionTransfer, p, **o),
        official_at_repdistiller,
        defaults_at_repdistiller,
    ),
    Method(
        "AT (attention-transfer)",
        "attention-transfer",
        lambda p, **o: build_module(AttentionTransfer, p, **o),
        official_at_zagoruyko,
        defaults_at_zagoruyko,
    ),
    Method("DKD", "mdistiller", lambda p, **o: build_module(DecoupledKD, p, **o), official_dkd, defaults_dkd),
    Method("DIST", "DIST_KD", lambda p, **o: build_module(DISTDistillation, p, **o), official_dist, defaults_dist),
    Method(
        "KD + logit standardisation",
        "logit-standardization-KD",
        lambda p, **o: build_module(HintonKD, p, **LS_KD, **o),
        official_ls_kd,
        defaults_ls_kd,
        note="lit-kd side: HintonKD with the settings of recipes/cifar10/kd_ls_resnet56_resnet20.yaml "
        "(standardize, T 2, kd_weight 9, ce_weight 0.1); standardize is off by default",
    ),
    Method(
        "DKD + logit standardisation",
        "logit-standardization-KD",
        lambda p, **o: build_module(DecoupledKD, p, **LS_DKD, **o),
        official_ls_dkd,
        defaults_ls_dkd,
        note="lit-kd side: DecoupledKD with standardize, alpha 9, beta 72, T 2 (its docstring's official LS "
        "setting); standardize is off by default",
    ),
    Method(
        "CRD",
        "RepDistiller",
        crd_module,
        official_crd,
        defaults_crd,
        crd_auxiliary,
        note="float64 runs since 37e76e1: the contrast scores take the banks' dtype, float32 at least (before it "
        "they cast the embeddings to float32 while the banks kept the module's dtype, and a float64 module failed "
        "in torch.bmm)",
    ),
]


def line_ranges(lines: set[int]) -> str:
    """``{3, 4, 5, 9}`` as ``3-5,9`` (lines up to 3 apart joined: blank lines and comments do not run)."""
    ranges: list[list[int]] = []
    for number in sorted(lines):
        if ranges and number - ranges[-1][1] <= 3:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


def checkout_commit(root: Path) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def teacher_copy_difference(module: DistillationModule, problem: Problem) -> float:
    """How far the teacher lit-kd runs (its BN-folded inference copy, ``fast_teacher``) is from the teacher itself."""
    images = problem.batches[0].images
    with torch.no_grad():
        return float((module.teacher_logits(images) - problem.teacher(images)).abs().max())


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Make ``dtype`` torch's default inside the block: networks, batches, banks and losses of both sides use it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def measure(method: Method, root: Path, problem_factory: Callable[[], Problem], steps: int, dtype: torch.dtype) -> dict:
    """lit-kd's module against the official code, both in ``dtype``, with the official lines that ran."""
    with default_dtype(dtype):
        problem = problem_factory()
        module = method.module(problem)
        lit = lit_side(module, method.auxiliary(module))
        with trace_lines(root) as construction_lines:
            official = method.official(root, problem, module)
        result = compare(lit, official.side, problem, steps, trace_root=root)
        result["teacher_copy_max_abs_logit_diff"] = teacher_copy_difference(module, problem)
    for path, numbers in construction_lines.items():
        result["official_lines"].setdefault(path, set()).update(numbers)
    result["optimized_tensors"] = {"lit_kd": len(lit.optimized), "official": len(official.side.optimized)}
    return {**result, "official": official, "module": module}


def noise_floor(method: Method, problem_factory: Callable[[], Problem], lit_run: Trajectory) -> dict:
    """lit-kd against itself in float32, with the plain teacher instead of its BN-folded copy (``fast_teacher``).

    The two teachers' logits differ by rounding only (about 1e-7), so the weight difference this leaves after the
    steps is how far rounding alone carries this method's trajectory.
    """
    problem = problem_factory()
    plain = method.module(problem, fast_teacher=False)
    plain_run = run_side(lit_side(plain, method.auxiliary(plain)), problem.batches, len(lit_run.losses))
    return differences(lit_run, plain_run)


FLOAT64_KEYS = (
    "max_abs_weight_diff",
    "worst_parameter",
    "max_abs_buffer_diff",
    "first_loss_lit_kd",
    "first_loss_official",
    "first_step_max_abs_grad_diff",
    "max_abs_loss_diff",
)
#: float64 weights closer than this after the steps: the two codes compute the same thing (rounding aside).
FLOAT64_TARGET = 1e-8


def run_method(method: Method, references: dict[str, Path], problem_factory: Callable[[], Problem], steps: int) -> dict:
    """Compare one method with its official code (float32; float64 and a float32 noise floor to explain a gap)."""
    row: dict[str, Any] = {"method": method.name, "reference": method.reference, "note": method.note}
    root = references.get(method.reference)
    if root is None:
        return {**row, "status": "reference not given"}
    row["reference_commit"] = checkout_commit(root)
    result = measure(method, root, problem_factory, steps, torch.float32)
    official, module, lines = result.pop("official"), result.pop("module"), result.pop("official_lines")
    floor = noise_floor(method, problem_factory, result.pop("lit_kd_run"))
    try:
        double = measure(method, root, problem_factory, steps, torch.float64)
        in_float64 = {key: double[key] for key in FLOAT64_KEYS}
    except RuntimeError as error:  # a side that cannot run in float64
        in_float64 = {"error": f"{type(error).__name__}: {error}"}
    settings = method.defaults(root, module)
    return {
        **row,
        "status": "compared",
        **result,
        "float64": in_float64,
        "float32_noise_floor": {
            "what": "lit-kd (fast_teacher, default) against lit-kd with the plain teacher (fast_teacher=False)",
            "max_abs_weight_diff": floor["max_abs_weight_diff"],
            "first_step_max_abs_grad_diff": floor["first_step_max_abs_grad_diff"],
        },
        **reference_details(lines, official.replicated, official.notes, settings),
    }


def reference_details(
    lines: dict[str, set[int]], replicated: list[str], notes: list[str], settings: list[Setting]
) -> dict[str, Any]:
    """A row's official lines that ran, the adapter's hand-written parts and notes, and the defaults compared."""
    return {
        "official_lines_run": {path: line_ranges(numbers) for path, numbers in sorted(lines.items())},
        "adapter_replicates": replicated,
        "adapter_notes": notes,
        "defaults": [{**vars(s), "matches": s.matches} for s in settings],
        "defaults_match": all(s.matches for s in settings),
    }


def verdict(row: dict) -> str:
    """``match`` within the float32 target; else ``same computation`` when float64 agrees; else ``DIFFERS``."""
    if row["status"] != "compared":
        return row["status"]
    if "summary_cells" in row:  # a comparison of another kind (benchmarks/parity_cgan.py) states its own verdict
        return row["verdict"]
    if row["within_target"]:
        return "match"
    if "error" in row["float64"]:
        return "over target in float32; no float64 run (see notes): first step and noise floor only"
    if row["float64"]["max_abs_weight_diff"] <= FLOAT64_TARGET:
        return "over target in float32; same computation (float64 agrees)"
    return "DIFFERS"


def float64_cell(row: dict) -> str:
    return "not run" if "error" in row["float64"] else f"{row['float64']['max_abs_weight_diff']:.2e}"


def summary_table(rows: list[dict]) -> str:
    table_rows = []
    for row in rows:
        compared = row["status"] == "compared"
        if compared and "summary_cells" in row:  # another kind of comparison: its cells for the same columns
            table_rows.append({"method": row["method"], **row["summary_cells"], "verdict": verdict(row)})
            continue
        lines = "; ".join(f"{path}:{ranges}" for path, ranges in row.get("official_lines_run", {}).items())
        mismatched = [
            f"{s['name']}: {s['lit_kd']} vs {s['official']}" for s in row.get("defaults", []) if not s["matches"]
        ]
        table_rows.append(
            {
                "method": row["method"],
                "official code that ran": lines if compared else "-",
                "max abs weight diff": f"{row['max_abs_weight_diff']:.2e}" if compared else "-",
                "float32 noise floor": f"{row['float32_noise_floor']['max_abs_weight_diff']:.2e}" if compared else "-",
                "float64 weight diff": float64_cell(row) if compared else "-",
                "first loss lit-kd": f"{row['first_loss_lit_kd']:.6f}" if compared else "-",
                "first loss official": f"{row['first_loss_official']:.6f}" if compared else "-",
                "first-step grad diff": f"{row['first_step_max_abs_grad_diff']:.2e}" if compared else "-",
                "defaults": ("match" if not mismatched else "differ: " + ", ".join(mismatched)) if compared else "-",
                "verdict": verdict(row) if compared else row["status"],
            }
        )
    return markdown_table(table_rows)


def parse_references(items: list[str]) -> dict[str, Path]:
    references = {}
    for item in items:
        name, separator, folder = item.partition("=")
        if not separator or name not in REFERENCES:
            raise SystemExit(f"--reference {item!r}: expected NAME=DIR with NAME one of {', '.join(REFERENCES)}")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise SystemExit(f"--reference {item!r}: {path} is not a folder")
        references[name] = path.resolve()
    return references


def main() -> None:
    os.environ["LIT_KD_TEACHER_PRECISION"] = "32"  # the official code's teachers run in float32: so do ours here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help=f"an official checkout; NAME one of {', '.join(REFERENCES)}",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-samples", type=int, default=20000, help="training-set size (CRD's memory banks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="*", help="only these rows (by name)")
    parser.add_argument("--name", default="parity", help="results file name under benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="size_average and reduce args will be deprecated")  # official code
    references = parse_references(args.reference)
    load_before = load_average()

    def problem_factory() -> Problem:
        return make_problem(args.steps, args.batch_size, args.num_samples, seed=args.seed)

    rows = []
    for method in METHODS:
        if args.methods and method.name not in args.methods:
            continue
        print(f"{method.name} ...", flush=True)
        try:
            rows.append(run_method(method, references, problem_factory, args.steps))
        except Exception as error:  # one broken checkout or adapter must not hide the other rows
            traceback.print_exc()
            rows.append({"method": method.name, "reference": method.reference, "status": f"error: {error!r}"})
    for name, (reference, script) in OWN_SCRIPTS.items():
        if args.methods and name not in args.methods:
            continue
        if reference not in references:
            rows.append({"method": name, "reference": reference, "status": "reference not given"})
            continue
        print(f"{name} ({script}.py) ...", flush=True)
        try:
            rows += importlib.import_module(script).parity_rows(
                references[reference], args.steps, args.batch_size, args.seed
            )
        except Exception as error:
            traceback.print_exc()
            rows.append({"method": name, "reference": reference, "status": f"error: {error!r}"})
    load_after = load_average()
    payload = {
        "target_max_abs_weight_diff": TARGET,
        "setup": {
            "student": "resnet8",
            "teacher": "resnet14 (random weights, BN statistics settled on 4 batches)",
            "num_classes": 10,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "num_samples": args.num_samples,
            "optimizer": "SGD lr 0.05 momentum 0.9 weight decay 5e-4 (both sides)",
            "dtype": "float32",
            "device": "cpu",
            "threads": 1,
            "seed": args.seed,
        },
        "references": {
            name: {
                "path": str(path),
                "commit": checkout_commit(path),
                **({"classification_commit": checkout_commit(path / "classification")} if name == "DIST_KD" else {}),
            }
            for name, path in references.items()
        },
        "load_average": {"start": load_before, "end": load_after},
        "rows": rows,
    }
    write_results(args.name, payload, report(rows, payload))


@contextmanager
def float32_teacher() -> Iterator[None]:
    """lit-kd's teacher in float32 inside the block, as the official teachers run (``"auto"`` is bf16 on some CPUs)."""
    with mock.patch.dict(os.environ, {"LIT_KD_TEACHER_PRECISION": "32"}):
        yield


def own_script_main(
    description: str,
    reference: str,
    run: Callable[[Path, int, int, int], dict],
    report: Callable[[dict, dict], str],
    setup: dict[str, Any],
    steps_help: str | None = None,
) -> None:
    """``main()`` of a script that compares one method alone (``parity_bss.py``, ``parity_dfad.py``).

    Parses ``--reference NAME=DIR --steps --batch-size --seed --name``, runs ``run(root, steps, batch_size, seed)``
    on one thread and writes ``benchmarks/results/<name>.{json,md}`` with the setup, the checkout's commit and the
    load average at the start and the end.
    """
    script = Path(sys.argv[0]).stem
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--reference", required=True, metavar=f"{reference}=DIR", help=f"a checkout of {REFERENCES[reference]}"
    )
    parser.add_argument("--steps", type=int, default=20, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=script, help="results file name under benchmarks/results")
    args = parser.parse_args()
    root = parse_references([args.reference]).get(reference)
    if root is None:
        raise SystemExit(
            f"--reference {args.reference!r}: expected {reference}=DIR, DIR a checkout of {REFERENCES[reference]}"
        )
    torch.set_num_threads(1)
    load_before = load_average()
    row = run(root, args.steps, args.batch_size, args.seed)
    payload = {
        "target_max_abs_weight_diff": TARGET,
        "setup": {**setup, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "threads": 1},
        "reference": {"name": reference, "path": str(root), "commit": checkout_commit(root)},
        "load_average": {"start": load_before, "end": load_average()},
        "rows": [row],
    }
    write_results(args.name, payload, report(row, payload))


def show(value: Any) -> str:
    """A setting as a short string (``0.1`` rather than ``0.09999999999999998``)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def report(rows: list[dict], payload: dict) -> str:
    """The markdown file: the table, then per method the defaults, the adapter's hand-written parts and notes."""
    setup = payload["setup"]
    lines = [
        "# Step parity with the official code",
        "",
        f"{setup['steps']} SGD steps (lr 0.05, momentum 0.9, weight decay 5e-4, float32, CPU, 1 thread) from the same "
        f"initial {setup['student']} student, the same frozen {setup['teacher']} teacher and the same "
        f"{setup['steps']} batches of {setup['batch_size']} augmented 32x32 images; lit-kd's module "
        "(`training_losses`, default hyperparameters) against the official loss code. Target: max abs weight "
        f"difference <= {TARGET:g}. Load average {payload['load_average']['start']:.2f} at the start, "
        f"{payload['load_average']['end']:.2f} at the end. `benchmarks/parity.py` says how to run it.",
        "",
        summary_table(rows),
        "",
        "No step-parity row, and why:",
        "",
        markdown_table([{"method": method, "why": reason} for method, reason in WITHOUT_STEP_PARITY.items()]),
        "",
        "References: "
        + ", ".join(f"{name} at {(ref['commit'] or 'unknown')[:7]}" for name, ref in payload["references"].items())
        + ".",
        "",
    ]
    for row in rows:
        if row["status"] == "compared" and "summary_cells" in row:  # cGAN-KD's filter: its script's section
            lines += importlib.import_module("parity_cgan").row_details(row)
        elif row["status"] == "compared":
            lines += method_details(row)
    return "\n".join(lines)


def defaults_text(defaults: list[dict]) -> str:
    """A row's defaults as ``name lit-kd / official (`source`)``, those that differ in bold."""
    return ", ".join(
        f"{s['name']} {show(s['lit_kd'])} / {show(s['official'])} (`{s['source']}`)"
        + ("" if s["matches"] else " **differs**")
        for s in defaults
    )


def method_details(row: dict) -> list[str]:
    """The markdown section of one compared row: differences, noise floor, float64, defaults, adapter notes."""
    lines = [f"## {row['method']} ({row['reference']})", ""]
    if row["note"]:
        lines.append(f"- {row['note']}.")
    lines.append(
        f"- max abs weight diff {row['max_abs_weight_diff']:.2e} (at `{row['worst_parameter']}`), BN buffers "
        f"{row['max_abs_buffer_diff']:.2e}, max abs loss diff over the steps {row['max_abs_loss_diff']:.2e}; "
        f"{row['compared_tensors']} tensors compared (optimised: lit-kd {row['optimized_tensors']['lit_kd']}, "
        f"official {row['optimized_tensors']['official']})."
    )
    floor = row["float32_noise_floor"]
    lines.append(
        f"- float32 noise floor ({floor['what']}): max abs weight diff {floor['max_abs_weight_diff']:.2e}, "
        f"first-step grad diff {floor['first_step_max_abs_grad_diff']:.2e}."
    )
    double = row["float64"]
    if "error" in double:
        lines.append(f"- float64: not run, {double['error']}.")
    else:
        lines.append(
            f"- float64: max abs weight diff {double['max_abs_weight_diff']:.2e} "
            f"(at `{double['worst_parameter']}`), "
            f"first-step grad diff {double['first_step_max_abs_grad_diff']:.2e}, max abs loss diff "
            f"{double['max_abs_loss_diff']:.2e}."
        )
    lines.append(
        f"- lit-kd's teacher (its BN-folded inference copy) differs from the plain teacher by "
        f"{row['teacher_copy_max_abs_logit_diff']:.1e} in the logits."
    )
    lines.append(f"- defaults, lit-kd / official: {defaults_text(row['defaults'])}.")
    lines.append("- the adapter composes by hand: " + "; ".join(f"`{r}`" for r in row["adapter_replicates"]) + ".")
    for note in row["adapter_notes"]:
        lines.append(f"- {note}.")
    lines.append("")
    return lines


if __name__ == "__main__":
    main()
