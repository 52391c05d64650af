"""Step parity of DFAD with the authors' code: lit-kd's module against ``train()`` of ``DFAD_cifar.py``, step by step.

DFAD (Fang et al., 2019, "Data-Free Adversarial Distillation") trains two networks in turn on latent noise: per
iteration, 5 student updates (L1 between the student's and the teacher's logits on generated images, the images
detached), then 1 generator update on minus that L1. Both sides here start from the same student (resnet8), frozen
teacher (resnet14, BN statistics settled as in ``parity.py``) and generator (lit-kd's ``DFADGenerator``, its weights
copied by position into the official ``network/gan.py`` ``GeneratorA``, of which it is a port), and see the same
latent batches: the ones lit-kd's ``DataFreeDataModule`` draws, handed to the official code in the order it calls
``torch.randn``. A step here is one official iteration (``for i in range(args.epoch_itrs)``, ``DFAD_cifar.py:23``):
5 student updates and 1 generator update, each on a fresh latent batch; ``--steps 20`` is 120 updates.

Side (a) is lit-kd as a user runs it: ``DataFreeAdversarialDistillation`` with its defaults, fitted by a Lightning
``Trainer`` (its ``training_step``, the ``GeneratorUpdateSchedule`` it adds, its optimisers: student SGD lr 0.1,
momentum 0.9, weight decay 5e-4; generator Adam lr 1e-3), float32 on the CPU, one thread. Side (b) is the official
``train()``, imported from a checkout the user names and run as it is, with the optimisers ``main()`` builds
(``DFAD_cifar.py:150-151``, set to the rates lit-kd's optimisers ran with; they are also the official defaults,
checked below). Neither side steps an LR scheduler within the run (lit-kd steps it at the end of an epoch; the whole
run is one epoch). Reported: the largest absolute difference of any student or generator weight after the last step
(target <= 1e-4, as ``parity.py``), the first update's gradients of each optimiser, the losses the two codes log, the
same in float64, a float32 noise floor, the official lines that ran and the official defaults read from the checkout.

No official code is part of lit-kd::

    git clone https://github.com/VainF/Data-Free-Adversarial-Distillation
    python benchmarks/parity_dfad.py --reference Data-Free-Adversarial-Distillation=Data-Free-Adversarial-Distillation
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import re
import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import lightning.pytorch as pl
import torch
from common import quiet_trainer
from dfad import RecordDiscrepancy
from parity import (
    FLOAT64_KEYS,
    NUMBER,
    TARGET,
    Problem,
    Setting,
    Trajectory,
    build_module,
    checkout_commit,
    copy_into,
    default_dtype,
    differences,
    find_value,
    float32_teacher,
    import_official,
    make_problem,
    max_difference,
    method_details,
    named_student,
    namespace,
    own_script_main,
    reference_details,
    setting,
    summary_table,
    teacher_copy_difference,
    trace_lines,
)
from torch import Tensor, nn
from torch.optim import Optimizer

from lit_kd.callbacks import GeneratorUpdateSchedule
from lit_kd.data import CIFAR10DataModule, DataFreeDataModule
from lit_kd.data.base import LabelledImages, Split
from lit_kd.losses.dfad import logit_discrepancy
from lit_kd.methods import DataFreeAdversarialDistillation
from lit_kd.methods.dfad import dfad_lr_schedule
from lit_kd.models import DFADGenerator

REFERENCE = "Data-Free-Adversarial-Distillation"
URL = "https://github.com/VainF/Data-Free-Adversarial-Distillation"
SCRIPT = "DFAD_cifar.py"
#: lit-kd's options that change rounding only: the BN-folded teacher copy and channels-last weights and inputs.
ROUNDING_OPTIONS_OFF = {"fast_teacher": False, "channels_last": False}
SUMMARY_KEYS = ("max_abs_weight_diff", "worst_parameter", "first_step_max_abs_grad_diff", "max_abs_loss_diff")
NOTE = (
    "a step is one official iteration: 5 student updates, then 1 generator update (lit-kd: 6 training steps); "
    "losses compared per step are the student's L1 at its last update and the generator's -L1, as the official "
    "code logs them (DFAD_cifar.py:48-52); the first-step gradients are the student's at its first update and the "
    "generator's at its first update (the 6th, after 5 student updates)"
)


# ------------------------------------------------------------------------------------------------ the shared start
@dataclass
class Start:
    """What both sides start from: the parity problem's student and frozen teacher, and a DFAD generator."""

    problem: Problem
    generator: DFADGenerator
    base_channels: int

    def generator_copy(self) -> DFADGenerator:
        """A fresh copy of the initial generator, in train mode."""
        generator = DFADGenerator(self.generator.latent_dim, self.base_channels, self.generator.image_size)
        generator.load_state_dict(self.generator.state_dict())
        return generator.train()


def make_start(batch_size: int, seed: int = 0, latent_dim: int = 256, base_channels: int = 64) -> Start:
    """``parity.make_problem``'s resnet8 student and resnet14 teacher, and a DFAD generator drawn from ``seed``.

    DFAD reads no image: the problem's 4 image batches only settle the teacher's BN statistics.
    """
    problem = make_problem(steps=4, batch_size=batch_size, num_samples=4 * batch_size, seed=seed)
    torch.manual_seed(seed)
    return Start(problem, DFADGenerator(latent_dim, base_channels).train(), base_channels)


def named_tensors(student: nn.Module, generator: nn.Module, names_of: nn.Module) -> tuple[dict, dict]:
    """Student and generator parameters and floating-point buffers, the generator's named as ``names_of``'s.

    ``names_of`` is lit-kd's generator: the official ``GeneratorA`` holds the same tensors in the same order under
    other names, so its tensors are named by position.
    """
    parameters, buffers = named_student(student)
    pairs = (
        (parameters, generator.named_parameters(), names_of.named_parameters()),
        (buffers, generator.named_buffers(), names_of.named_buffers()),
    )
    for into, tensors, names in pairs:
        for (_, tensor), (name, reference) in zip(tensors, names, strict=True):
            if tensor.shape != reference.shape:
                raise ValueError(f"generator tensor {name}: shape {tuple(tensor.shape)} vs {tuple(reference.shape)}")
            if tensor.is_floating_point():
                into[f"generator.{name}"] = tensor
    return parameters, buffers


def record_first_gradients(optimizer: Optimizer, names: dict[int, str], into: dict[str, Tensor]) -> None:
    """At ``optimizer``'s first step, copy its parameters' gradients into ``into`` (named by ``names``, by id)."""
    stepped = False

    def hook(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        nonlocal stepped
        if not stepped:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    into[names[id(p)]] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        stepped = True

    optimizer.register_step_pre_hook(hook)


def trajectory(
    losses: list[float], gradients: dict[str, Tensor], named: tuple[dict, dict], lines: dict[str, set[int]]
) -> Trajectory:
    """A side's run as ``parity.Trajectory``: its losses and first gradients, copies of its weights and buffers."""
    parameters, buffers = named
    weights = {name: p.detach().clone() for name, p in parameters.items()}
    return Trajectory(losses, gradients, weights, {name: b.detach().clone() for name, b in buffers.items()}, lines)


# ------------------------------------------------------------------------------------------------ lit-kd's side
class NoEvaluation(CIFAR10DataModule):
    """CIFAR-10's shape and classes without its images: the parity run trains on noise, validates never."""

    def load_split(self, split: Split) -> LabelledImages:
        raise RuntimeError("the DFAD parity run reads no real image (validation is off)")

    def setup(self, stage: str | None = None) -> None:
        """Nothing to load."""


class FirstStepRecorder(pl.Callback):
    """The latent batches the module trains on, its optimisers' settings and their gradients at their first step."""

    def __init__(self) -> None:
        self.latents: list[Tensor] = []
        self.gradients: dict[str, Tensor] = {}
        self.settings: list[dict[str, Any]] = []

    def on_train_start(self, trainer: pl.Trainer, module: DataFreeAdversarialDistillation) -> None:
        parameters, _ = named_tensors(module.student, module.generator, module.generator)
        names = {id(p): name for name, p in parameters.items()}
        for optimizer in trainer.optimizers:
            record_first_gradients(optimizer, names, self.gradients)
            group = optimizer.param_groups[0]
            self.settings.append({key: value for key, value in group.items() if key not in ("params", "initial_lr")})

    def on_train_batch_start(self, trainer: pl.Trainer, module: Any, batch: Tensor, batch_idx: int) -> None:
        self.latents.append(batch.detach().clone())


@dataclass
class LitRun:
    """What lit-kd did, and what the official side needs from it (the latents, the optimisers' settings)."""

    run: Trajectory
    latents: list[Tensor]
    settings: list[dict[str, Any]]  # [student optimiser's, generator optimiser's] first parameter group
    module: DataFreeAdversarialDistillation
    optimized: int


def run_lit_kd(start: Start, steps: int, batch_size: int, seed: int, **settings: Any) -> LitRun:
    """``steps`` iterations of lit-kd's DFAD, fitted by a ``Trainer`` on ``DataFreeDataModule`` noise."""
    module = build_module(DataFreeAdversarialDistillation, start.problem, generator=start.generator_copy(), **settings)
    per_iteration = GeneratorUpdateSchedule().steps_per_iteration  # the schedule the module adds
    updates = steps * per_iteration
    data = DataFreeDataModule(
        NoEvaluation(use_cache=False), batch_size, start.generator.latent_dim, batches_per_epoch=updates, seed=seed
    )
    recorder, logged = FirstStepRecorder(), RecordDiscrepancy()
    precision = "64-true" if torch.get_default_dtype() == torch.float64 else "32-true"
    trainer = quiet_trainer(
        accelerator="cpu", max_steps=updates, limit_val_batches=0, precision=precision, callbacks=[recorder, logged]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=data)
    schedule = module.generator_schedule
    if schedule is None or schedule.steps_per_iteration != per_iteration or len(logged.values) != updates:
        raise RuntimeError(f"lit-kd ran {len(logged.values)} updates, expected {updates} ({per_iteration} per step)")
    losses = []
    for begin in range(0, updates, per_iteration):
        iteration = logged.values[begin : begin + per_iteration]
        losses += [[v for g, v in iteration if not g][-1], -[v for g, v in iteration if g][-1]]
    named = named_tensors(module.student, module.generator, module.generator)
    optimized = sum(len(g["params"]) for optimizer in trainer.optimizers for g in optimizer.param_groups)
    return LitRun(
        trajectory(losses, recorder.gradients, named, {}), recorder.latents, recorder.settings, module, optimized
    )


# ------------------------------------------------------------------------------------------------ official side
class LossLog:
    """Stands in for ``utils.visualizer.VisdomPlotter`` (a visdom client): keeps what ``train()`` logs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.scalars: dict[str, list[float]] = {}

    def add_scalar(self, win: str, x: Any, y: float, *args: Any, **kwargs: Any) -> None:
        self.scalars.setdefault(win, []).append(float(y))

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        pass


class InjectedNoise:
    """``torch`` as the official file sees it, except ``randn``: it hands out lit-kd's latent batches, in order."""

    def __init__(self, latents: list[Tensor]) -> None:
        self.latents = list(latents)
        self.drawn = 0

    def randn(self, *size: Any, **kwargs: Any) -> Tensor:
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        if self.drawn == len(self.latents):
            raise RuntimeError(f"the official code drew more than the {len(self.latents)} latent batches lit-kd used")
        latent = self.latents[self.drawn]
        if latent.numel() != math.prod(shape):
            raise RuntimeError(f"the official code drew {shape}, lit-kd's latent batch is {tuple(latent.shape)}")
        self.drawn += 1
        return latent.reshape(shape).clone().to(kwargs.get("dtype") or latent.dtype)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


@dataclass
class OfficialRun:
    """What the official code did, and what the adapter composes by hand (cited, not run) or should say."""

    run: Trajectory
    optimized: int
    replicated: list[str]
    notes: list[str] = field(default_factory=list)


def unavailable(*args: Any, **kwargs: Any) -> Any:
    """Stands in for an official helper that ``train()`` never calls."""
    raise RuntimeError("not available in the parity run (a stand-in made by benchmarks/parity_dfad.py)")


@contextlib.contextmanager
def modules_standing_in(modules: dict[str, types.ModuleType]) -> Iterator[None]:
    """Put ``modules`` in ``sys.modules`` for the block (what the official file imports at top level), then restore."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def official_script(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """``DFAD_cifar.py`` of the checkout, imported by path, with stand-ins for the top-level imports ``train()`` skips.

    ``network`` is the checkout's ``network/gan.py`` only (the ResNets are ours), ``utils.visualizer.VisdomPlotter``
    is :class:`LossLog` (no visdom server), ``utils.misc`` and ``dataloader`` (test-set plumbing) are empty.
    Returns the script and ``network/gan.py``.
    """
    stand_ins = {
        "network": types.ModuleType("network"),
        "utils": types.ModuleType("utils"),
        "utils.visualizer": types.ModuleType("utils.visualizer"),
        "utils.misc": types.ModuleType("utils.misc"),
        "dataloader": types.ModuleType("dataloader"),
    }
    gan = stand_ins["network"].gan = import_official(root, "network/gan.py")
    stand_ins["utils"].__path__ = []
    stand_ins["utils.visualizer"].VisdomPlotter = LossLog
    stand_ins["utils.misc"].pack_images = stand_ins["utils.misc"].denormalize = unavailable
    stand_ins["dataloader"].get_dataloader = unavailable
    with modules_standing_in(stand_ins):
        return import_official(root, SCRIPT), gan


def run_official(root: Path, start: Start, lit: LitRun, steps: int, batch_size: int) -> OfficialRun:
    """The official ``train()`` for ``steps`` iterations on the same networks and latents, its lines traced."""
    script, gan = official_script(root)
    student_settings, generator_settings = lit.settings
    with trace_lines(root) as lines:
        student = start.problem.student_copy()
        teacher = start.problem.teacher_copy().requires_grad_(True)  # never frozen officially (DFAD_cifar.py:137-148)
        lit_generator = start.generator_copy()
        generator = gan.GeneratorA(
            nz=lit_generator.latent_dim, ngf=start.base_channels, nc=3, img_size=lit_generator.image_size
        )  # DFAD_cifar.py:139
        for target, source in zip(generator.state_dict().values(), lit_generator.state_dict().values(), strict=True):
            copy_into(target, source)
        optimizer_s = torch.optim.SGD(
            student.parameters(),
            lr=student_settings["lr"],
            weight_decay=student_settings["weight_decay"],
            momentum=student_settings["momentum"],
        )  # DFAD_cifar.py:150
        optimizer_g = torch.optim.Adam(generator.parameters(), lr=generator_settings["lr"])  # DFAD_cifar.py:151
        named = named_tensors(student, generator, lit_generator)
        names = {id(p): name for name, p in named[0].items()}
        gradients: dict[str, Tensor] = {}
        for optimizer in (optimizer_s, optimizer_g):
            record_first_gradients(optimizer, names, gradients)
        args = namespace(batch_size=batch_size, nz=lit_generator.latent_dim, epoch_itrs=steps, log_interval=1)
        noise, log = InjectedNoise(lit.latents), LossLog()
        with mock.patch.multiple(script, torch=noise, vp=log), contextlib.redirect_stdout(io.StringIO()):
            script.train(
                args, teacher, student, generator, torch.device("cpu"), [optimizer_s, optimizer_g], epoch=1
            )  # DFAD_cifar.py:167
    if noise.drawn != len(lit.latents):
        raise RuntimeError(f"the official code drew {noise.drawn} latent batches, lit-kd used {len(lit.latents)}")
    losses = [value for pair in zip(log.scalars["Loss_S"], log.scalars["Loss_G"], strict=True) for value in pair]
    replicated = [
        "DFAD_cifar.py:137-139 (the networks: ours, and GeneratorA(nz, ngf, nc=3, img_size) with lit-kd's weights)",
        "DFAD_cifar.py:150-151 (SGD(student, lr, weight_decay, momentum), Adam(generator, lr))",
        "DFAD_cifar.py:167 (train(args, teacher, student, generator, device, [optimizer_S, optimizer_G], epoch))",
    ]
    notes = [
        f"train() ran as it is, args.epoch_itrs = {steps}, args.batch_size = {batch_size}, args.log_interval = 1 "
        "(its losses are read from what it logs through vp, a stand-in for the visdom plotter); its torch.randn "
        "hands out the latent batches lit-kd's DataFreeDataModule drew, in the same order",
        "the generator: lit-kd's DFADGenerator is a port of network/gan.py GeneratorA (same tensors, same order); its "
        "initial weights and BN buffers are copied into GeneratorA by position and compared under lit-kd's names",
        "the official teacher keeps requires_grad (the official code never freezes it): its parameters collect "
        "gradients that no optimiser uses, as there",
        "optimisers: the kinds of DFAD_cifar.py:150-151 with the rates lit-kd's optimisers ran with (the official "
        "defaults, compared below); no LR scheduler steps within the run on either side",
    ]
    optimized = sum(len(group["params"]) for o in (optimizer_s, optimizer_g) for group in o.param_groups)
    return OfficialRun(trajectory(losses, gradients, named, lines), optimized, replicated, notes)


# ------------------------------------------------------------------------------------------------ comparison
def compare(
    root: Path, start: Start, steps: int, batch_size: int, seed: int, **settings: Any
) -> tuple[dict[str, Any], LitRun, OfficialRun]:
    """Both sides from ``start`` for ``steps`` iterations: weight, gradient and loss differences, official lines."""
    lit = run_lit_kd(start, steps, batch_size, seed, **settings)
    official = run_official(root, start, lit, steps, batch_size)
    return comparison(lit, official, start), lit, official


def only(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors of one network (``"student."`` or ``"generator."``)."""
    return {name: tensor for name, tensor in tensors.items() if name.startswith(prefix)}


def comparison(lit: LitRun, official: OfficialRun, start: Start) -> dict[str, Any]:
    """``parity.differences`` of the two runs, with the optimised tensors and lit-kd's teacher copy's rounding."""
    result = differences(lit.run, official.run)
    result["optimized_tensors"] = {"lit_kd": lit.optimized, "official": official.optimized}
    result["first_update_max_abs_grad_diff"] = {
        network: max_difference(*(only(run.first_gradients, f"{network}.") for run in (lit.run, official.run)))[0]
        for network in ("student", "generator")
    }
    result["teacher_copy_max_abs_logit_diff"] = teacher_copy_difference(lit.module, start.problem)
    return result


def lit_kd_defaults() -> dict[str, Any]:
    """lit-kd's DFAD defaults: the optimisers, the schedule, the data and the generator, as a user gets them."""
    probe = [nn.Parameter(torch.zeros(1))]
    signature = inspect.signature(DataFreeAdversarialDistillation).parameters
    student = signature["optimizer"].default(probe).param_groups[0]
    generator_optimizer = signature["generator_optimizer"].default(probe)
    data = {name: p.default for name, p in inspect.signature(DataFreeDataModule).parameters.items()}
    generator = {name: p.default for name, p in inspect.signature(DFADGenerator).parameters.items()}
    schedule = GeneratorUpdateSchedule()
    loss = re.search(r"return F\.(\w+)\(", inspect.getsource(logit_discrepancy))
    sign = re.search(r'"loss": (-?)discrepancy', inspect.getsource(DataFreeAdversarialDistillation.adversarial_losses))
    return {
        "student": student,
        "student_kind": type(signature["optimizer"].default(probe)).__name__,
        "generator": generator_optimizer.param_groups[0],
        "generator_kind": type(generator_optimizer).__name__,
        "data": data,
        "generator_network": generator,
        "schedule": schedule,
        "loss": loss.group(1) if loss else None,
        "generator_loss": f"{sign.group(1)}{loss.group(1)}" if loss and sign else None,
        "scheduler": signature["lr_scheduler"].default,
        "generator_scheduler": signature["generator_lr_scheduler"].default,
    }


def first_reduced_epochs(make_scheduler: Any, step_at_start: bool, epochs: int = 300) -> str:
    """The 1-based epochs that first train at a lower rate, stepping the scheduler at each epoch's start or end."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a scheduler stepped with no optimiser step in between
        for _ in range(epochs):
            if step_at_start:
                scheduler.step()
            rates.append(optimizer.param_groups[0]["lr"])
            if not step_at_start:
                scheduler.step()
    drops = [
        f"{epoch + 1} (x{rates[epoch] / rates[epoch - 1]:g})"
        for epoch in range(1, epochs)
        if rates[epoch] < rates[epoch - 1]
    ]
    return ", ".join(drops)


def defaults_dfad(root: Path) -> list[Setting]:
    """lit-kd's defaults against the official ones, read from the checkout (``DFAD_cifar.py``, ``network/gan.py``)."""
    lit = lit_kd_defaults()
    student, generator, data, schedule = lit["student"], lit["generator"], lit["data"], lit["schedule"]
    per_iteration = schedule.steps_per_iteration
    sgd, sgd_source = find_value(root, SCRIPT, r"optimizer_S = optim\.SGD\((.*)\)")
    adam, adam_source = find_value(root, SCRIPT, r"optimizer_G = optim\.Adam\((.*)\)")
    generator_updates, generator_source = find_value(root, SCRIPT, r"^\s*(optimizer_G)\.step\(\)")
    sign, sign_source = find_value(root, SCRIPT, r"^\s*loss_G = (-?)\s*F\.l1_loss")
    milestones, milestone_source = find_value(root, SCRIPT, r"MultiStepLR\(optimizer_S, (\[[\d, ]+\], [\d.]+)\)")
    generator_milestones, generator_milestone_source = find_value(
        root, SCRIPT, r"MultiStepLR\(optimizer_G, (\[[\d, ]+\], [\d.]+)\)"
    )
    step_start, step_start_source = find_value(root, SCRIPT, r"^\s*(scheduler_S)\.step\(\)")
    _, flag_source = find_value(root, SCRIPT, r"'--scheduler', action='store_true', default=(\w+)")
    readme_scheduler, readme_source = find_value(
        root, "README.md", r"python DFAD_cifar\.py --dataset cifar10 .*(--scheduler)"
    )

    def official_drops(found: str | None) -> str | None:
        if found is None or step_start is None:  # the official code steps its schedulers at each epoch's start
            return None
        steps, gamma = re.fullmatch(r"\[([\d, ]+)\], ([\d.]+)", found).groups()
        milestones = [int(s) for s in steps.split(",")]
        return first_reduced_epochs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones, float(gamma)), True)

    adam_betas = inspect.signature(torch.optim.Adam).parameters["betas"].default
    return [
        setting("batch_size", data["batch_size"], root, SCRIPT, r"'--batch_size', type=int, default=(\d+)"),
        setting(
            "latent_dim (DataFreeDataModule)", data["latent_dim"], root, SCRIPT, r"'--nz', type=int, default=(\d+)"
        ),
        setting(
            "latent_dim (DFADGenerator)",
            lit["generator_network"]["latent_dim"],
            root,
            SCRIPT,
            r"'--nz', type=int, default=(\d+)",
        ),
        setting(
            "base_channels (ngf)",
            lit["generator_network"]["base_channels"],
            root,
            "network/gan.py",
            r"def __init__\(self, nz=\d+, ngf=(\d+), nc=\d+, img_size=32\)",  # GeneratorA's (DFAD_cifar.py:139)
        ),
        setting(
            "iterations per epoch (batches_per_epoch / steps per iteration)",
            data["batches_per_epoch"] / per_iteration,
            root,
            SCRIPT,
            r"'--epoch_itrs', type=int, default=(\d+)",
        ),
        setting("student_steps", schedule.student_steps, root, SCRIPT, r"for k in range\(\s*(\d+)\s*\)"),
        Setting("generator_steps", schedule.generator_steps, 1 if generator_updates else None, generator_source),
        Setting("student loss", lit["loss"], *find_value(root, SCRIPT, r"loss_S = F\.(\w+)\(")),
        Setting("generator loss", lit["generator_loss"], None if sign is None else f"{sign}l1_loss", sign_source),
        Setting("student optimiser", lit["student_kind"], "SGD" if sgd is not None else None, sgd_source),
        setting("student lr (--lr_S)", student["lr"], root, SCRIPT, rf"'--lr_S', type=float, default={NUMBER}"),
        setting("student momentum", student["momentum"], root, SCRIPT, rf"optimizer_S = .*momentum={NUMBER}"),
        setting(
            "student weight_decay",
            student["weight_decay"],
            root,
            SCRIPT,
            rf"'--weight_decay', type=float, default={NUMBER}",
        ),
        Setting("student nesterov", student["nesterov"], None if sgd is None else "nesterov=True" in sgd, sgd_source),
        Setting("generator optimiser", lit["generator_kind"], "Adam" if adam is not None else None, adam_source),
        setting("generator lr (--lr_G)", generator["lr"], root, SCRIPT, rf"'--lr_G', type=float, default={NUMBER}"),
        Setting(
            "generator Adam betas",
            tuple(generator["betas"]),
            None if adam is None or "betas" in adam else adam_betas,
            f"{adam_source} (torch's default)",
        ),
        Setting(
            "LR schedulers on (README: --scheduler; its argparse default is off)",
            lit["scheduler"] is not None and lit["generator_scheduler"] is not None,
            None if readme_scheduler is None else True,
            f"{readme_source}; {flag_source}",
        ),
        Setting(
            "student LR drops: first 1-based epoch at the lower rate",
            first_reduced_epochs(dfad_lr_schedule, step_at_start=False),
            official_drops(milestones),
            f"{milestone_source}, stepped at each epoch's start ({step_start_source})",
        ),
        Setting(
            "generator LR drops: first 1-based epoch at the lower rate",
            first_reduced_epochs(dfad_lr_schedule, step_at_start=False),
            official_drops(generator_milestones),
            f"{generator_milestone_source}, stepped at each epoch's start ({step_start_source})",
        ),
    ]


def run(root: Path, steps: int, batch_size: int, seed: int) -> dict[str, Any]:
    """The DFAD row: lit-kd against the official code in float32 and float64, a float32 noise floor, the defaults."""
    row: dict[str, Any] = {"method": "DFAD", "reference": REFERENCE, "note": NOTE}
    row["reference_commit"] = checkout_commit(root)
    with float32_teacher():
        lit = run_lit_kd(make_start(batch_size, seed), steps, batch_size, seed)
        official = run_official(root, make_start(batch_size, seed), lit, steps, batch_size)
        result = comparison(lit, official, make_start(batch_size, seed))
        plain = run_lit_kd(make_start(batch_size, seed), steps, batch_size, seed, **ROUNDING_OPTIONS_OFF)
        if any(not torch.equal(a, b) for a, b in zip(lit.latents, plain.latents, strict=True)):
            raise RuntimeError("lit-kd drew different latents in two runs with the same seed")
        floor, exact = differences(lit.run, plain.run), differences(plain.run, official.run)
        with default_dtype(torch.float64):
            double, _, _ = compare(root, make_start(batch_size, seed), steps, batch_size, seed)
    lines = result.pop("official_lines")
    return {
        **row,
        "status": "compared",
        **result,
        "float64": {key: double[key] for key in FLOAT64_KEYS},
        "float32_noise_floor": {
            "what": "lit-kd (defaults: fast_teacher, channels_last) against lit-kd with both off (the plain teacher, "
            "contiguous weights), two changes of rounding only",
            **{key: floor[key] for key in SUMMARY_KEYS},
        },
        "float32_rounding_options_off": {
            "what": "lit-kd with fast_teacher=False, channels_last=False against the official code, float32",
            **{key: exact[key] for key in SUMMARY_KEYS},
        },
        **reference_details(lines, official.replicated, official.notes, defaults_dfad(root)),
    }


def report(row: dict, payload: dict) -> str:
    """The markdown file: the summary row, then the differences, noise floor, float64, defaults and adapter notes."""
    setup = payload["setup"]
    details = method_details(row) if row["status"] == "compared" else []
    if details:
        exact = row["float32_rounding_options_off"]
        first = row["first_update_max_abs_grad_diff"]
        details.insert(
            -1,
            f"- first-update gradient differences: student {first['student']:.2e} (its first update: the same "
            f"networks and latents), generator {first['generator']:.2e} (after 5 student updates).",
        )
        details.insert(
            -1,
            f"- {exact['what']}: max abs weight diff {exact['max_abs_weight_diff']:.2e} (at "
            f"`{exact['worst_parameter']}`), first-step grad diff {exact['first_step_max_abs_grad_diff']:.2e}, max "
            f"abs loss diff {exact['max_abs_loss_diff']:.2e}.",
        )
    return "\n".join(
        [
            "# Step parity with the official code: DFAD",
            "",
            f"{setup['steps']} steps (a step: {setup['step']}) from the same initial {setup['student']} student, "
            f"frozen {setup['teacher']} teacher and {setup['generator']}, on the same latent batches of "
            f"{setup['batch_size']}; lit-kd's DataFreeAdversarialDistillation (default hyperparameters, fitted by a "
            f"Trainer) against the official train() of {SCRIPT}; optimisers {setup['optimizers']}; float32, CPU, "
            f"1 thread. Target: max abs weight difference (student and generator) <= {TARGET:g}. Load average "
            f"{payload['load_average']['start']:.2f} at the start, {payload['load_average']['end']:.2f} at the end. "
            "`benchmarks/parity_dfad.py` says how to run it.",
            "",
            summary_table([row]),
            "",
            f"Reference: {REFERENCE} at {(payload['reference']['commit'] or 'unknown')[:7]}.",
            "",
            *details,
        ]
    )


def parity_rows(root: Path, steps: int, batch_size: int, seed: int) -> list[dict[str, Any]]:
    """This script's rows of ``benchmarks/parity.py``'s table (its ``--steps``, ``--batch-size`` and ``--seed``)."""
    return [run(root, steps, batch_size, seed)]


def main() -> None:
    own_script_main(
        __doc__,
        REFERENCE,
        run,
        report,
        {
            "student": "resnet8",
            "teacher": "resnet14 (random weights, BN statistics settled on 4 batches)",
            "generator": "DFADGenerator(latent_dim=256, base_channels=64) / GeneratorA(nz=256, ngf=64), same weights",
            "step": "one official iteration, 5 student updates then 1 generator update, each on a fresh latent batch",
            "num_classes": 10,
            "optimizers": "student SGD lr 0.1 momentum 0.9 weight decay 5e-4, generator Adam lr 1e-3 (both sides)",
            "device": "cpu",
            "dtype": "float32",
        },
        steps_help="official iterations (5 student + 1 generator update)",
    )


if __name__ == "__main__":
    main()
