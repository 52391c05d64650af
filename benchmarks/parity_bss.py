"""Step parity for BSS: lit-kd's ``BSSDistillation`` against the official training step, bhheo/BSS_distillation.

The harness is ``benchmarks/parity.py``'s (the same initial student, frozen teacher and batches on both sides, 20 SGD
steps, compare the student's weights; float64 and a float32 noise floor to tell rounding from a different
computation). The official step is a script, not a library: its function ``train_attack_KD`` and its loss-weight
schedule (``train_BSS_distillation.py:77-153`` and ``:197-198``) are compiled from the checkout, at their own lines,
and run once per batch with a one-batch ``trainloader``, our networks and the official attack, ``AttackBSS`` of
``attacks/attack_BSS.py``, imported by path. The checkout's code is never copied into the project.

What the adapter sets or replaces, on the official side: the script's globals (``temperature``, ``attack_size``,
``attack``: lit-kd's settings, so that a difference is one of code; each official default is read from the checkout
and compared apart), ``use_cuda = False``, a silent ``print``, the removed ``torch.autograd.gradcheck.zero_gradients``
(PyTorch 0.4.1's, which the attack imports), ``torch.rand`` (the target-class draw, line 125) and the ``optimizer``
(the harness steps both sides with the same SGD; the stand-in keeps the loss). Where a side draws at random (the
attack's target class), both get the same uniforms: the official cumulative draw (lines 121-131) reads them through
``torch.rand``, lit-kd's ``torch.multinomial`` of its target-class probabilities is replaced, for the mining call
only, by the same inverse-CDF rule over the classes by decreasing probability, fed the same uniforms.

The problem (:func:`bss_problem`): ``parity.make_problem``'s networks and batches, made so that BSS has something to
attack. A random teacher gives every image the same class and a random student agrees with it on none, so no
sample would be a base sample (teacher and student both right). Each image carries its class as a colour; the
teacher's classifier is fitted to the classes (right on all), the student's underfitted (right on about four in
five); the labels are the classes except every fourth sample's (the teacher is wrong there). At most half a batch is
attacked (``max_samples = batch_size // 2``), so that some batches have more base samples than that (the ranking of
lines 114-117 runs) and some fewer. The clamp is the official ``(-2.5, 2.5)`` on both sides (lit-kd's default clamps
to the data's image range: compared with the defaults). Epoch 1 of 80 of the schedule: ``r = 3.9625``,
``r_bss = 1.9667``.

The official attack computes its step mask with ``.float()`` (``attacks/attack_BSS.py:55``), which rounds
``step_alpha = 0.3`` to float32 in a float64 run; the row's float64 run is therefore repeated with lit-kd's
``step_size`` set to that rounded value (``float64_official_step_size``), which leaves only float64 rounding.
The official code raises ``IndexError`` when exactly one sample of a batch is a base sample (``attack_idx`` is
squeezed to a 0-d tensor at line 113, then ``attack_idx.shape[0]`` at line 114); the problem has none such.

    git clone https://github.com/bhheo/BSS_distillation
    python benchmarks/parity_bss.py --reference BSS_distillation=BSS_distillation
"""

from __future__ import annotations

import ast
import collections.abc
import copy
import dataclasses
import inspect
import sys
import time
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
import yaml
from parity import (
    FLOAT64_KEYS,
    FLOAT64_TARGET,
    NUMBER,
    TARGET,
    Batch,
    Method,
    Official,
    Problem,
    Setting,
    Side,
    build_module,
    find_value,
    float32_teacher,
    import_official,
    make_problem,
    measure,
    method_details,
    named_student,
    own_script_main,
    run_method,
    setting,
    summary_table,
)
from torch import Tensor, nn

from lit_kd.callbacks import BoundarySampleMining
from lit_kd.callbacks.bss import bss_weights
from lit_kd.methods import BSSDistillation

REFERENCE = "BSS_distillation"
URL = "https://github.com/bhheo/BSS_distillation"
SCRIPT = "train_BSS_distillation.py"
ATTACK = "attacks/attack_BSS.py"
EPOCH, NUM_EPOCHS = 1, 80  # the schedule's epoch (counted from 1, as the official loop) and length (official 80)
FIT_BATCHES, COLOUR_AMPLITUDE = 20, 0.3  # bss_problem: classifiers fitted on 20 batches; class colours
OFFICIAL_CLAMP = (-2.5, 2.5)  # attacks/attack_BSS.py:72, hard-coded there: lit-kd's side is set to it
RECIPE = Path(__file__).resolve().parents[1] / "recipes/cifar10/bss_resnet26_resnet8.yaml"


# ------------------------------------------------------------------------------------------------ the problem
@dataclass
class BSSBatch(Batch):
    """A batch with the uniforms of its target-class draw (one per sample, the first ``M`` used) and a record."""

    uniforms: Tensor = field(default_factory=lambda: torch.empty(0))
    attacked: dict[str, list[int]] = field(default_factory=dict)  # side -> samples attacked, per step on this batch


def bss_problem(steps: int = 20, batch_size: int = 16, seed: int = 0) -> Problem:
    """``parity.make_problem``'s networks and batches, made into a problem where BSS has base samples to attack.

    A random teacher gives every image the same class and a random student agrees with it on none: no sample would
    be a base sample (teacher and student both right). Here each image carries its class (``make_problem``'s label)
    as a colour, a per-class offset of the three channels (:data:`COLOUR_AMPLITUDE` times a seeded normal vector);
    the teacher's classifier is fitted to the classes (:func:`fit_classifier`, 100 steps: it is right on all), the
    student's underfitted (5 steps: it is right on about four in five); the labels are the classes except every
    fourth sample's, moved to another class (the teacher is wrong there). The classifiers are fitted on
    ``max(steps, FIT_BATCHES)`` batches, of which the first ``steps`` are kept: a problem of fewer steps is the
    start of the 20-step one. The uniforms of the target-class draws come from a generator seeded with ``seed``.
    """
    problem = make_problem(max(steps, FIT_BATCHES), batch_size, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    colours = COLOUR_AMPLITUDE * torch.randn(int(problem.labels.max()) + 1, 3, generator=generator)
    for batch in problem.batches:
        batch.images = batch.images + colours[batch.targets][:, :, None, None]
    classes = torch.cat([batch.targets for batch in problem.batches])
    fit_classifier(problem.teacher, problem.batches, classes, iterations=100)
    fit_classifier(problem.student, problem.batches, classes, iterations=5)
    batches = []
    for batch in problem.batches[:steps]:
        labels = batch.targets.clone()
        labels[3::4] = (labels[3::4] + 1 + batch.indices[3::4] % 9) % len(colours)  # another class
        uniforms = torch.rand(len(labels), generator=generator)
        batches.append(BSSBatch(batch.images, labels, batch.indices, uniforms=uniforms))
    problem.batches = batches
    return problem


def fit_classifier(network: nn.Module, batches: Sequence[Batch], classes: Tensor, iterations: int) -> None:
    """Set ``network.classifier`` by logistic regression of ``classes`` on its embeddings of ``batches``.

    Full-batch SGD (lr 1, momentum 0.9) on the standardised embeddings, from zero weights; then the weights are
    scaled so that the logits have std 1 over the images (larger ones make the harness's SGD diverge). The
    embeddings are those of the network's own mode (train-mode BatchNorm per batch for the student), from a copy:
    the network's running statistics are left as they were.
    """
    with torch.no_grad():
        probe = copy.deepcopy(network)
        embeddings = torch.cat([probe.forward_features(batch.images).embedding for batch in batches])
    center, scale = embeddings.mean(dim=0), embeddings.std(dim=0)
    features = (embeddings - center) / scale
    weight = torch.zeros(features.shape[1], int(classes.max()) + 1, requires_grad=True)
    bias = torch.zeros(weight.shape[1], requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=1.0, momentum=0.9)
    for _ in range(iterations):
        optimizer.zero_grad()
        F.cross_entropy(features @ weight + bias, classes).backward()
        optimizer.step()
    with torch.no_grad():
        spread = (features @ weight + bias).std(dim=0).mean()
        weight, bias = weight / spread, bias / spread
        network.classifier.weight.copy_((weight / scale[:, None]).T)
        network.classifier.bias.copy_(bias - (center / scale) @ weight)


def attacked_at_most(problem: Problem) -> int:
    """Samples attacked per batch at most: half the batch, so that some batches have more base samples, some fewer."""
    return max(len(problem.batches[0].targets) // 2, 1)


def attacked_per_step(problem: Problem, side: str) -> list[int]:
    """The samples ``side`` attacked at each step of its run on ``problem`` (one run per problem and side)."""
    return [count for batch in problem.batches if isinstance(batch, BSSBatch) for count in batch.attacked.get(side, [])]


def batch_of(problem_batches: Sequence[Batch], images: Tensor) -> BSSBatch:
    """The problem's batch whose images these are (both sides receive the batch's own tensor)."""
    for batch in problem_batches:
        if batch.images is images:
            assert isinstance(batch, BSSBatch)
            return batch
    raise LookupError("the images are not one of the problem's batches")


def inverse_cdf(uniforms: Tensor) -> Any:
    """A stand-in for ``torch.multinomial(probabilities, 1)`` that draws with the given uniforms, one per row.

    The official rule (``train_BSS_distillation.py:121-131``): the classes by decreasing probability, the first whose
    cumulative probability reaches ``u`` times the row's total; none (rounding): the most probable one (the official
    code keeps the teacher's runner-up, line 120, which is lit-kd's most probable: it gives the top-1 class 0).
    """

    def draw(probabilities: Tensor, num_samples: int, replacement: bool = False, **kwargs: Any) -> Tensor:
        if num_samples != 1 or len(probabilities) > len(uniforms):
            raise ValueError(f"injected draws: {len(uniforms)} uniforms for a {tuple(probabilities.shape)} draw")
        ranked, order = probabilities.sort(dim=1, descending=True)
        threshold = ranked.sum(dim=1) * uniforms[: len(probabilities)].to(ranked)
        first = (ranked.cumsum(dim=1) >= threshold[:, None]).int().argmax(dim=1)
        return order.gather(1, first[:, None])

    return draw


# ------------------------------------------------------------------------------------------------ lit-kd's side
class InjectedDrawsMining(BoundarySampleMining):
    """lit-kd's mining, with its target-class draw fed the batch's uniforms (and the samples attacked recorded)."""

    def __init__(self, batches: Sequence[Batch], **settings: Any) -> None:
        super().__init__(**settings)
        self.batches = batches

    def mine(self, teacher: nn.Module, images: Tensor, targets: Tensor, *logits: Tensor) -> Any:
        batch = batch_of(self.batches, images)
        with mock.patch.object(torch, "multinomial", inverse_cdf(batch.uniforms)):
            samples = super().mine(teacher, images, targets, *logits)
        batch.attacked.setdefault("lit_kd", []).append(0 if samples is None else len(samples))
        return samples


def bss_module(problem: Problem, step_size: float | None = None, **overrides: Any) -> BSSDistillation:
    """``BSSDistillation`` (default ``T``) fed by a mining callback in epoch :data:`EPOCH` of :data:`NUM_EPOCHS`.

    The attack has its default number of steps, its default step size unless ``step_size`` is given, the official
    clamp and at most half a batch of samples; ``overrides`` go to the module.
    """
    module = build_module(BSSDistillation, problem, **overrides)
    mining = InjectedDrawsMining(
        problem.batches, max_samples=attacked_at_most(problem), clamp_range=OFFICIAL_CLAMP, num_epochs=NUM_EPOCHS
    )
    if step_size is not None:
        mining.step_size = step_size
    mining.on_train_epoch_start(types.SimpleNamespace(current_epoch=EPOCH - 1, global_step=0), module)
    module.boundary_mining = mining
    return module


# ------------------------------------------------------------------------------------------------ the official side
def zero_gradients(x: Any) -> None:
    """``torch.autograd.gradcheck.zero_gradients`` of PyTorch 0.4.1 (removed since), which the attack imports."""
    if isinstance(x, torch.Tensor):
        if x.grad is not None:
            x.grad.detach_()
            x.grad.zero_()
    elif isinstance(x, collections.abc.Iterable):
        for element in x:
            zero_gradients(element)


def import_attack(root: Path) -> types.ModuleType:
    """``attacks/attack_BSS.py`` of the checkout, its import of the removed ``zero_gradients`` served by ours."""
    gradcheck = sys.modules["torch.autograd.gradcheck"]
    with mock.patch.object(gradcheck, "zero_gradients", zero_gradients, create=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="size_average and reduce args will be deprecated")
        return import_official(root, ATTACK)


def at_line(node: ast.AST, line: int) -> ast.AST:
    """Put ``node`` and everything in it at ``line`` (an added statement traced as the line it belongs to)."""
    for child in ast.walk(node):
        if hasattr(child, "lineno"):
            child.lineno = child.end_lineno = line  # type: ignore[attr-defined]
            child.col_offset = child.end_col_offset = 0  # type: ignore[attr-defined]
    return node


def official_functions(root: Path, namespace: dict[str, Any]) -> None:
    """Compile ``train_attack_KD`` and the loss-weight schedule of the script into ``namespace``, at their lines.

    The schedule's two assignments (``ratio``, ``attack_ratio`` in the ``for epoch`` loop) become the body of
    ``official_weights(epoch, max_epoch)``. Nothing else of the script runs (it loads CIFAR-10 and a checkpoint).
    """
    path = (root / SCRIPT).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{root}: no {SCRIPT}; is this a checkout of {URL}?")
    tree = ast.parse(path.read_text(), filename=str(path))
    train = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train_attack_KD"]
    loops = [
        n for n in tree.body if isinstance(n, ast.For) and isinstance(n.target, ast.Name) and n.target.id == "epoch"
    ]
    schedule = [
        statement
        for loop in loops
        for statement in loop.body
        if isinstance(statement, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id in ("ratio", "attack_ratio") for t in statement.targets)
    ]
    if len(train) != 1 or len(schedule) != 2:
        raise LookupError(f"{path}: expected def train_attack_KD and a 'for epoch' loop setting ratio, attack_ratio")
    weights = ast.parse("def official_weights(epoch, max_epoch):\n    return ratio, attack_ratio\n").body[0]
    assert isinstance(weights, ast.FunctionDef)
    at_line(weights, schedule[0].lineno)
    at_line(weights.body[0], schedule[-1].lineno)
    weights.body = [*schedule, weights.body[0]]
    exec(compile(ast.Module(body=[*train, weights], type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102


def official_script(
    root: Path, temperature: float, mining: BoundarySampleMining, torch_module: types.ModuleType, optimizer: Any
) -> dict[str, Any]:
    """The script's globals that ``train_attack_KD`` reads, at lit-kd's settings, with ``train_attack_KD`` and
    ``official_weights`` compiled into them (:func:`official_functions`) and the official attack (line 71).

    ``torch_module`` stands in for ``torch`` (line 125 calls ``torch.rand(...).cuda()``), ``optimizer`` for the global
    optimiser (``zero_grad`` and ``step``, lines 92 and 144); ``use_cuda`` is ``False`` and ``print`` silent.
    """
    namespace: dict[str, Any] = dict(
        torch=torch_module,
        F=F,
        Variable=torch.autograd.Variable,
        time=time,
        print=lambda *args, **kwargs: None,
        use_cuda=False,
        optimizer=optimizer,
        criterion_CE=nn.CrossEntropyLoss(),  # train_BSS_distillation.py:74
        temperature=temperature,  # :21
        attack_size=mining.max_samples,  # :23
    )
    official_functions(root, namespace)
    namespace["attack"] = import_attack(root).AttackBSS(
        targeted=True, num_steps=mining.num_steps, max_epsilon=16, step_alpha=mining.step_size, cuda=True, norm=2
    )  # :71
    return namespace


class InjectedRand(types.ModuleType):
    """``torch`` for the script, whose ``torch.rand([M]).cuda()`` (line 125) returns the batch's first M uniforms."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.uniforms: Tensor | None = None
        self.drawn: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def rand(self, *size: Any, **kwargs: Any) -> types.SimpleNamespace:
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], Sequence) else size
        uniforms = self.uniforms
        if uniforms is None or len(shape) != 1 or shape[0] > len(uniforms):
            raise ValueError(f"injected draws: torch.rand{shape} for uniforms {uniforms!r}")
        self.drawn.append(shape[0])
        return types.SimpleNamespace(cuda=lambda: uniforms[: shape[0]].to(torch.get_default_dtype()))


class LossRecorder:
    """The script's global ``optimizer``: the harness takes the SGD step; this keeps the loss ``step()`` sees.

    ``optimizer.step()`` follows ``loss.backward()`` in ``train_attack_KD`` (lines 143-144): the loss is read from
    the calling frame's locals, so the gradients the official code left are the ones the harness steps with.
    """

    def __init__(self, parameters: list[Tensor]) -> None:
        self.parameters = parameters
        self.loss: Tensor | None = None

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            parameter.grad = None

    def step(self) -> None:
        self.loss = sys._getframe(1).f_locals["loss"]


def official_bss(root: Path, problem: Problem, module: BSSDistillation) -> Official:
    """The official ``train_attack_KD`` on one batch per step, set to the module's settings (see the module doc)."""
    mining = module.boundary_mining
    assert mining is not None and mining.num_epochs is not None
    student, teacher = problem.student_copy(), problem.teacher_copy()
    draws, recorder = InjectedRand(), LossRecorder(list(student.parameters()))
    namespace = official_script(root, module.temperature, mining, draws, recorder)
    ratio, attack_ratio = namespace["official_weights"](EPOCH, mining.num_epochs)  # :197-198

    def loss(step: int, batch: Batch) -> Tensor:
        assert isinstance(batch, BSSBatch)
        namespace["trainloader"] = [(batch.images, batch.targets)]
        draws.uniforms, drawn = batch.uniforms, len(draws.drawn)
        try:
            namespace["train_attack_KD"](teacher, student, ratio, attack_ratio, EPOCH)
        except IndexError as error:  # as with exactly one base sample: a 0-d attack_idx (lines 113-114)
            raise RuntimeError(
                f"the official step failed at step {step} ({error}); it does when exactly one sample of a batch is a "
                f"base sample ({SCRIPT}:113-114): try another --seed or --batch-size"
            ) from error
        batch.attacked.setdefault("official", []).append(draws.drawn[-1] if len(draws.drawn) > drawn else 0)
        assert recorder.loss is not None
        return recorder.loss.detach().requires_grad_()  # its backward ran in train_attack_KD: nothing left to do

    parameters, buffers = named_student(student)
    replicated = [
        f"{SCRIPT}:189-200 (the epoch loop: train_attack_KD(t_net, s_net, ratio, attack_ratio, epoch) for epoch "
        f"{EPOCH}, its trainloader one batch a step)",
        f"{SCRIPT}:71 (AttackBSS(targeted=True, num_steps, max_epsilon=16, step_alpha, cuda=True, norm=2) with "
        "lit-kd's num_steps and step_size)",
        f"{SCRIPT}:21,23,24,74 (temperature, attack_size, max_epoch: lit-kd's; criterion_CE = CrossEntropyLoss())",
    ]
    notes = [
        f"{SCRIPT}:77-153 and :197-198 are compiled from the checkout at their own lines and run; the rest of the "
        "script (data, checkpoint, test) is not",
        "the official optimiser (SGD lr 0.1, weight decay 1e-4, line 191) is replaced by the harness's, the same on "
        "both sides: its stand-in's zero_grad sets the gradients to None and its step() keeps the loss (read from the "
        "frame of train_attack_KD); the official backward (line 143) makes the gradients the harness steps with",
        "target classes: the same uniforms on both sides, one per attacked sample; official: torch.rand (line 125) "
        "returns them (.cuda() a no-op); lit-kd: torch.multinomial inside BoundarySampleMining.mine is replaced by "
        "the official cumulative rule (lines 121-131) fed them, so both draw the same class whenever their "
        "probabilities agree",
        "use_cuda = False and print silenced; attacks/attack_BSS.py imports zero_gradients, removed from PyTorch "
        "after 0.4.1 (the README's version): PyTorch 0.4.1's definition is put in its place during the import",
        "lit-kd's side: lit-kd's attack runs on its teacher's BN-folded inference copy, the official one on the plain "
        "teacher; the official code recomputes the teacher's logits on the attacked images (line 137), lit-kd keeps "
        "those of the attack's last step",
    ]
    return Official(Side(loss, list(student.parameters()), parameters, buffers), replicated, notes)


# ------------------------------------------------------------------------------------------------ defaults
def defaults_bss(root: Path, module: BSSDistillation) -> list[Setting]:
    """lit-kd's defaults (``BSSDistillation``, ``BoundarySampleMining()``, the paper recipe) against the checkout's."""
    mining = BoundarySampleMining()
    default_temperature = inspect.signature(BSSDistillation).parameters["temperature"].default
    attack_call = r"AttackBSS\(.*{}=([\d.]+)"
    recipe = yaml.safe_load(RECIPE.read_text())
    clamp, clamp_source = find_value(root, ATTACK, r"torch\.clamp\(.*?, ([-\d.]+, [-\d.]+)\)")
    settings = [
        setting("temperature", default_temperature, root, SCRIPT, rf"^temperature = {NUMBER}"),
        setting("max_samples (attack_size)", mining.max_samples, root, SCRIPT, rf"^attack_size = {NUMBER}"),
        setting("attack num_steps", mining.num_steps, root, SCRIPT, attack_call.format("num_steps")),
        setting("attack step_size (step_alpha)", mining.step_size, root, SCRIPT, attack_call.format("step_alpha")),
        setting("attack norm (lit-kd: L2 only)", 2, root, SCRIPT, attack_call.format("norm")),
        Setting("clamp_range", mining.clamp_range, clamp, clamp_source),
        setting(
            f"num_epochs ({RECIPE.parent.name}/{RECIPE.name} max_epochs)",
            recipe["trainer"]["max_epochs"],
            root,
            SCRIPT,
            rf"^max_epoch = {NUMBER}",
        ),
    ]
    namespace: dict[str, Any] = {}
    official_functions(root, namespace)
    for epoch in (1, 40, 60, 80):
        for index, name in enumerate(("r", "r_bss")):
            official = namespace["official_weights"](epoch, NUM_EPOCHS)[index]
            lit = bss_weights(epoch, NUM_EPOCHS)[index]
            settings.append(Setting(f"{name} at epoch {epoch} of {NUM_EPOCHS}", lit, official, f"{SCRIPT}:197-198"))
    return settings


# ------------------------------------------------------------------------------------------------ the row
METHOD = Method(
    "BSS",
    REFERENCE,
    bss_module,
    official_bss,
    defaults_bss,
    note=f"lit-kd side: BSSDistillation (default T) with BoundarySampleMining(max_samples=batch_size // 2, "
    f"clamp_range={OFFICIAL_CLAMP}, num_epochs={NUM_EPOCHS}, default num_steps and step_size) in epoch {EPOCH} "
    f"(r = {bss_weights(EPOCH, NUM_EPOCHS)[0]:g}, r_bss = {bss_weights(EPOCH, NUM_EPOCHS)[1]:.5g}); problem "
    "(bss_problem): each image coloured by its class, the teacher's classifier fitted to the classes, the "
    "student's underfitted, every fourth label moved to another class",
)
#: ``step_alpha`` as the official attack applies it: ``0.3 * mask.float()`` (attacks/attack_BSS.py:55).
OFFICIAL_STEP_SIZE = float(torch.tensor(BoundarySampleMining().step_size, dtype=torch.float32))


def run(root: Path, steps: int, batch_size: int, seed: int) -> dict:
    """The BSS row in ``parity.run_method``'s shape, plus the samples each side attacked per step (float32 run) and
    the float64 run with lit-kd's step size rounded as the official attack rounds it (``float64_official_step_size``).
    """
    problems: list[Problem] = []

    def problem_factory() -> Problem:
        problems.append(bss_problem(steps, batch_size, seed))
        return problems[-1]

    rounded_step = dataclasses.replace(METHOD, module=lambda p, **o: bss_module(p, OFFICIAL_STEP_SIZE, **o))
    with float32_teacher(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="size_average and reduce args will be deprecated")
        row = run_method(METHOD, {REFERENCE: root}, problem_factory, steps)
        if row["status"] != "compared":
            return row
        double = measure(rounded_step, root, problem_factory, steps, torch.float64)
    row["float64_official_step_size"] = {
        "what": f"float64, lit-kd's step_size {OFFICIAL_STEP_SIZE!r} (0.3 rounded to float32, as the official attack "
        "applies it: self.step_alpha * (...).float(), attacks/attack_BSS.py:55)",
        **{key: double[key] for key in FLOAT64_KEYS},
    }
    # float32: the comparison (both sides ran on its problem) and the noise floor's plain-teacher run (lit-kd only)
    in_float32 = [problem for problem in problems if problem.batches[0].images.dtype == torch.float32]
    compared = next(problem for problem in in_float32 if attacked_per_step(problem, "official"))
    floor = next(problem for problem in in_float32 if not attacked_per_step(problem, "official"))
    row["attacked_per_step"] = {
        "lit_kd": attacked_per_step(compared, "lit_kd"),
        "official": attacked_per_step(compared, "official"),
        "lit_kd_plain_teacher": attacked_per_step(floor, "lit_kd"),
    }
    row["max_samples"] = attacked_at_most(compared)
    weights = bss_weights(EPOCH, NUM_EPOCHS)
    row["schedule"] = {"epoch": EPOCH, "num_epochs": NUM_EPOCHS, "r": weights[0], "r_bss": weights[1]}
    return row


def float32_parting(row: dict) -> str:
    """A line on where the float32 losses of the two sides part, and why they do."""
    gaps = [abs(a - b) for a, b in zip(row["losses_lit_kd"], row["losses_official"], strict=True)]
    parted = next((step for step, gap in enumerate(gaps) if gap > 1e-5), len(gaps))
    agreed = f"differ by at most {max(gaps[:parted]):.1e} over the first {parted} steps" if parted else "differ at once"
    return (
        f"- float32: the losses {agreed}, then part: the attack follows the teacher's input gradient, which jumps "
        "where one of its ReLUs switches, and whether a sample has crossed is a near-tie by design, so a rounding "
        "difference can move a boundary sample by orders of magnitude more, and the trajectories carry it on; lit-kd "
        "against itself with its plain teacher parts as far (the noise floor)."
    )


def report(row: dict, payload: dict) -> str:
    """The markdown file: what was compared, the harness's table and section, and the samples attacked per step."""
    setup = payload["setup"]
    lines = [
        "# Step parity with the official code: BSS",
        "",
        f"lit-kd's BSSDistillation (`training_losses` with its BoundarySampleMining) against the official "
        f"`train_attack_KD` step and attack: {setup['steps']} SGD steps of each ({setup['optimizer']}, "
        f"{setup['dtype']}, {setup['device']}, {setup['threads']} thread) on the same batches of {setup['batch_size']} "
        f"32x32 images, from the same {setup['student']} student, with the same {setup['teacher']} teacher and the "
        f"same uniforms for the target classes. Target: max abs weight difference <= {TARGET:g} (float64: "
        f"<= {FLOAT64_TARGET:g}). Load average {payload['load_average']['start']:.2f} at the start, "
        f"{payload['load_average']['end']:.2f} at the end. `benchmarks/parity_bss.py` says how it is set up and run.",
        "",
        summary_table([row]),
        "",
        f"Reference: {REFERENCE} at {(payload['reference']['commit'] or 'unknown')[:7]}.",
        "",
    ]
    if row["status"] == "compared":
        lines += method_details(row)[:-1]
        attacked = row["attacked_per_step"]
        rounded = row.get("float64_official_step_size")
        if rounded:
            lines.append(
                f"- {rounded['what']}: max abs weight diff {rounded['max_abs_weight_diff']:.2e}, first-step grad diff "
                f"{rounded['first_step_max_abs_grad_diff']:.2e}, max abs loss diff {rounded['max_abs_loss_diff']:.2e}."
            )
        lines.append(float32_parting(row))
        lines.append(
            f"- samples attacked per step (at most {row['max_samples']}), lit-kd: {attacked['lit_kd']}; official: "
            f"{attacked['official']}; lit-kd with the plain teacher (the noise floor's run): "
            f"{attacked['lit_kd_plain_teacher']}."
        )
        lines.append("")
    return "\n".join(lines)


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
            "teacher": "resnet14 (random weights, BN statistics settled on 4 batches, classifier fitted)",
            "num_classes": 10,
            "device": "cpu",
            "dtype": "float32",
            "optimizer": "SGD lr 0.05 momentum 0.9 weight decay 5e-4 (both sides)",
        },
    )


if __name__ == "__main__":
    main()
