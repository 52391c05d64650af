"""cGAN-KD's stage 2 against the official code: sample the conditional GAN, filter and relabel with the teacher.

lit-kd's side is :func:`lit_kd.synthesis.synthesize` (what ``lit-kd synthesize`` runs before it saves the set). The
official side is UBCDingXin/cGAN-KD: ``CIFAR-100/make_fake_datasets/main.py`` (classification) and
``UTKFace/generate_synthetic_data.py`` (regression). Both are scripts whose sampling and filtering are defined inline
(inside ``if args.filter or args.adjust:`` blocks, after loading CIFAR-100 / the UTKFace h5 file and a trained GAN),
so they cannot be imported. The adapter reads the statements it needs from the checkout at run time (found by name
with :mod:`ast`: ``def fn_filter_or_adjust``, the ``if args.filter or args.adjust:`` block, ...), and executes exactly
those lines, compiled under their own file name and line numbers, in a namespace whose names (``netG``,
``filter_precnn_net``, ``args``, ``fake_images``, ...) are bound to our objects; every block executed and every line
that ran (traced) is listed. Nothing of the official code is stored in lit-kd.

Both sides get the same conditional generator (:class:`~lit_kd.models.ConditionalGenerator` with seeded random
weights: the filter, not the GAN, is compared), the same latents and labels (lit-kd's draws are recorded and served
to the official ``torch.randn``), and the same teacher (a zoo network with settled BN statistics and a classifier
rescaled so that its predictions spread over the classes, or over ``[0, 1]`` for regression). CPU, float32, one
thread; the official ``.cuda()`` calls are the identity here.

Classification (the official CIFAR-100 code), four comparisons:

(a) the filter itself, set alike: the same uint8 images and labels; lit-kd with ``keep_quantile = rho``,
    ``min_confidence 0``, ``require_agreement false``; the official ``fn_filter_or_adjust`` in burn-in mode on the
    whole set (the cross-entropy cutoff) then in filter mode on the same set, without the filter-time augmentation.
    Compared: the kept sets (disagreements), the relabelled targets, the per-sample cross-entropy and the cutoff.
(b) the same with the filter-time augmentation the official run uses (``--dre_precnn_transform`` in
    ``scripts/run.sh``: random crop and flip of the images the teacher judges).
(c) the official pipeline as ``scripts/run.sh`` runs it (``fn_final_sampler`` per class: a burn-in draw fixes the
    class's cutoff, then batches are drawn and filtered until ``nfake`` are kept) on the same latents, against lit-kd
    set alike (plus ``max_per_label = nfake``). Compared: the generator outputs and the quantised images for the same
    latents, which latents each side keeps, and the final sets.
(d) lit-kd's defaults (``min_confidence 0.5``, agreement) against (c): counts and overlap.

Regression (the official UTKFace code): the official generation (``fn_sampleGAN_given_label`` per training age, the
label grid, ``fn_denorm_labels``) and its filter block, (a) on lit-kd's images (the filter alone) and (c) on its own
images, against lit-kd with ``keep_quantile = rho``.

Sizes are scaled down (see ``--per-label``, ``--nfake``, ``--burnin``); the official defaults are read from the checkout
and compared with lit-kd's separately. Run::

    git clone https://github.com/UBCDingXin/cGAN-KD
    python benchmarks/parity_cgan.py --reference cGAN-KD=cGAN-KD
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import inspect
import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as transforms
from common import load_average, markdown_table, write_results
from parity import (
    NUMBER,
    Setting,
    checkout_commit,
    defaults_text,
    find_value,
    line_ranges,
    namespace,
    parse_references,
    setting,
    summary_table,
)
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm, trange

from lit_kd import synthesis
from lit_kd.data import CIFAR10DataModule, UTKFaceDataModule
from lit_kd.data.base import InMemoryImageDataModule
from lit_kd.models import ConditionalGenerator, create_model
from lit_kd.synthesis import regression_keep_mask, synthesize, to_uint8

REFERENCE = "cGAN-KD"
REFERENCE_URL = "https://github.com/UBCDingXin/cGAN-KD"
CLASSIFICATION_ROW = "cGAN-KD (filtering and relabelling)"
REGRESSION_ROW = "cGAN-KD (filtering and relabelling, regression)"
MAIN = "CIFAR-100/make_fake_datasets/main.py"
MAIN_UTILS = "CIFAR-100/make_fake_datasets/utils.py"
MAIN_OPTS = "CIFAR-100/make_fake_datasets/opts.py"
MAIN_SCRIPT = "CIFAR-100/make_fake_datasets/scripts/run.sh"
UTK = "UTKFace/generate_synthetic_data.py"
UTK_UTILS = "UTKFace/utils.py"
UTK_OPTS = "UTKFace/opts.py"
UTK_SCRIPT = "UTKFace/scripts/run_gene_data.sh"
#: Statements of the official UTKFace filter block the adapter does not run: they build the filter CNN and load its
#: checkpoint (our teacher is bound to ``filter_precnn_net`` instead).
LOADS_THE_NETWORK = ("cnn_dict", "torch.load", "load_state_dict")


# ------------------------------------------------------------------------------------------------ official lines
class OfficialScript:
    """Statements of an official script, found by name and executed by line range in a namespace of our objects.

    Each block is compiled under the file's own path and line numbers (so tracing reports the checkout's lines) and
    run in :attr:`names`, where the script's globals are bound to our generator, teacher, settings and tensors.
    """

    def __init__(self, root: Path, names: dict[str, Any]) -> None:
        self.root = root
        self.names = names
        self.blocks: dict[tuple[str, str], set[int]] = {}  # (file, what) -> the lines of every block executed
        self._trees: dict[str, ast.Module] = {}

    def tree(self, relative: str) -> ast.Module:
        """The parsed file (raises if the checkout lacks it)."""
        if relative not in self._trees:
            path = self.root / relative
            if not path.is_file():
                raise FileNotFoundError(f"{self.root}: no {relative}; is this a checkout of {REFERENCE_URL}?")
            self._trees[relative] = ast.parse(path.read_text(), filename=str(path))
        return self._trees[relative]

    def node(self, relative: str, predicate: Callable[[ast.AST], bool], what: str) -> ast.AST:
        """The first node of the file (depth first) that ``predicate`` accepts."""
        for node in ast.walk(self.tree(relative)):
            if predicate(node):
                return node
        raise LookupError(f"{self.root / relative}: no {what}; the adapter was written against {REFERENCE_URL}")

    def run_lines(self, relative: str, first: int, last: int, indent: int, what: str) -> None:
        """Execute lines ``first..last`` of the file (their indentation ``indent`` removed) in :attr:`names`."""
        path = (self.root / relative).resolve()
        lines = path.read_text().splitlines()[first - 1 : last]
        body = [line[indent:] if not line[:indent].strip() else line for line in lines]
        source = "\n" * (first - 1) + "\n".join(body) + "\n"
        exec(compile(source, str(path), "exec"), self.names)  # noqa: S102 - the official lines, by range
        self.blocks.setdefault((relative, what), set()).update(range(first, last + 1))

    @property
    def executed(self) -> list[str]:
        """``file:ranges (what)`` of every block executed, definitions included."""
        return [f"{relative}:{line_ranges(lines)} ({what})" for (relative, what), lines in self.blocks.items()]

    def run_node(self, relative: str, node: ast.AST, what: str) -> None:
        self.run_lines(relative, node.lineno, node.end_lineno, node.col_offset, what)  # type: ignore[attr-defined]

    def define(self, relative: str, name: str) -> Any:
        """Execute the ``def``/``class`` named ``name`` (wherever it is nested); returns the object it defines."""
        node = self.node(
            relative,
            lambda n: isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == name,
            f"def/class {name}",
        )
        self.run_node(relative, node, f"{'class' if isinstance(node, ast.ClassDef) else 'def'} {name}")
        return self.names[name]

    def module_if(self, relative: str, test: str) -> ast.If:
        """The top-level ``if <test>:`` statement of the file."""
        for node in self.tree(relative).body:
            if isinstance(node, ast.If) and ast.unparse(node.test) == test:
                return node
        raise LookupError(f"{self.root / relative}: no top-level `if {test}:`; written against {REFERENCE_URL}")


@dataclass
class Call:
    """One call of a watched function: its arguments, its locals when it returned, and what it returned."""

    arguments: dict[str, Any]
    final_locals: dict[str, Any] = field(default_factory=dict)
    returned: Any = None


@contextmanager
def watch(root: Path | None, functions: dict[CodeType, str]) -> Iterator[tuple[dict[str, set[int]], dict]]:
    """Record the lines that run in files under ``root`` and the calls of ``functions`` (code object -> name).

    Unlike ``parity.trace_lines``, module-level code counts too: the official filter blocks run at module level.
    Yields ``({path relative to root: lines}, {name: [Call, ...]})``.
    """
    executed: dict[str, set[int]] = {}
    calls: dict[str, list[Call]] = {}
    prefix = str(root.resolve()) + "/" if root is not None else None

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        lined = prefix is not None and code.co_filename.startswith(prefix)
        name = functions.get(code)
        if not lined and name is None:
            return None
        call = None
        if name is not None:
            call = Call(dict(frame.f_locals))
            calls.setdefault(name, []).append(call)
        path = code.co_filename[len(prefix) :] if lined and prefix else ""

        def local(frame: Any, event: str, arg: Any) -> Any:
            if lined and event == "line":
                executed.setdefault(path, set()).add(frame.f_lineno)
            elif event == "return" and call is not None:
                call.final_locals, call.returned = dict(frame.f_locals), arg
            return local

        return local

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield executed, calls
    finally:
        sys.settrace(previous)


@contextmanager
def cuda_is_the_cpu() -> Iterator[None]:
    """Make ``.cuda()`` of tensors and modules the identity inside the block: both sides run on the CPU."""
    own = "cuda" in vars(torch.Tensor)
    tensor_cuda, module_cuda = torch.Tensor.cuda, nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.cuda = module_cuda  # type: ignore[method-assign]
        if own:
            torch.Tensor.cuda = tensor_cuda  # type: ignore[method-assign]
        else:
            del torch.Tensor.cuda  # the method of torch._C.TensorBase again


class LatentFeed:
    """``torch`` for the official lines, except that ``torch.randn`` serves injected latents, one stream per label.

    :meth:`sampler` wraps the official sampler so that it draws from the stream of its label; the rows it draws and
    then discards (it draws whole batches and keeps the first ``nfake``) are given back, so the next call starts
    where the kept ones end. :attr:`log` lists ``(stream, first row, end row)`` of every call.
    """

    def __init__(self, streams: dict[int, Tensor]) -> None:
        self.streams = streams
        self.position = dict.fromkeys(streams, 0)
        self.current: int | None = None
        self.log: list[tuple[int, int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def randn(self, *size: Any, dtype: torch.dtype | None = None, **kwargs: Any) -> Tensor:
        rows = int((size[0] if isinstance(size[0], tuple | list) else size)[0])
        if self.current is None:
            raise RuntimeError("the official code drew latents outside a sampler call")
        stream, start = self.streams[self.current], self.position[self.current]
        if start + rows > len(stream):
            raise RuntimeError(f"the official code drew more latents for label {self.current} than injected")
        self.position[self.current] = start + rows
        return stream[start : start + rows].to(dtype or torch.get_default_dtype())

    def sampler(self, official: Callable[..., Any], stream_of: Callable[[Any], int]) -> Callable[..., Any]:
        @functools.wraps(official)
        def sample(nfake: int, given_label: Any, *args: Any, **kwargs: Any) -> Any:
            stream = stream_of(given_label)
            self.current, start = stream, self.position[stream]
            result = official(nfake, given_label, *args, **kwargs)
            self.position[stream] = start + int(nfake)
            self.log.append((stream, start, start + int(nfake)))
            self.current = None
            return result

        return sample


def quiet_progress(function: Callable[..., Any]) -> Callable[..., Any]:
    """``tqdm``/``trange`` with the bar turned off (the official lines draw progress bars)."""
    return functools.partial(function, disable=True)


def unavailable(name: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name} is not available to the official lines here (only used for plots and logs)")

    return fail


# ------------------------------------------------------------------------------------------------ the shared problem
@dataclass
class FilterProblem:
    """What both sides share: the generator, the teacher, the data's description and how many samples to draw."""

    task: str
    generator: ConditionalGenerator
    teacher: nn.Module
    data: InMemoryImageDataModule
    gan_record: dict[str, Any]
    per_label: int
    seed: int
    teacher_name: str
    training_labels: np.ndarray | None = None  # regression: the GAN's training labels in the data's units (years)
    batch_size: int = 500

    def teacher_copy(self) -> nn.Module:
        return copy.deepcopy(self.teacher).eval()

    def generator_copy(self) -> ConditionalGenerator:
        return copy.deepcopy(self.generator).eval()


def shape_teacher(teacher: nn.Module, images: Tensor, mean: Any, std: Any, center: float, spread: float) -> nn.Module:
    """Settle the teacher's BN statistics on ``images`` (uint8), then rescale its classifier over them.

    Each output gets mean ``center`` and standard deviation ``spread`` over the images, so that a random teacher's
    top class varies (it would name one class for everything) and a regression teacher predicts over ``[0, 1]``.
    """
    shape = (1, 3, 1, 1)
    inputs = (images.float() / 255 - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
    with torch.no_grad():
        norms = [m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)]
        for norm in norms:
            norm.momentum = None  # cumulative average
        teacher.train()
        for batch in inputs.split(100):
            teacher(batch)
        for norm in norms:
            norm.momentum = 0.1
        teacher.eval()
        outputs = teacher(inputs)
        scale = spread / outputs.std(dim=0)
        classifier = teacher.classifier
        classifier.bias.copy_((classifier.bias - outputs.mean(dim=0)) * scale + center)
        classifier.weight.mul_(scale[:, None])
    return teacher.eval().requires_grad_(False)


def make_classification_problem(
    seed: int = 0, num_classes: int = 10, per_label: int = 200, teacher: str = "resnet14"
) -> FilterProblem:
    """A 32x32 class-conditional generator and a CIFAR teacher with fixed random weights (CIFAR-10 normalisation)."""
    torch.manual_seed(seed)
    generator = ConditionalGenerator(num_classes, 32, latent_dim=32, base_channels=16, embed_dim=32).eval()
    teacher_net = create_model(teacher, num_classes)
    data = CIFAR10DataModule(data_dir="unused")  # read for its normalisation, task, classes and image size only
    calibration = torch.arange(num_classes).repeat(20)
    images = synthesis.generate(generator, calibration, seed=seed + 1000)
    shape_teacher(teacher_net, images, data.mean, data.std, center=0.0, spread=3.0)
    return FilterProblem("classification", generator, teacher_net, data, {}, per_label, seed, teacher)


def make_regression_problem(
    seed: int = 0, max_age: int = 60, per_label: int = 10, teacher: str = "resnet8", calibration_per_age: int = 5
) -> FilterProblem:
    """A 64x64 CcGAN-style generator (continuous label) and a one-output teacher; training ages ``1..max_age``."""
    torch.manual_seed(seed)
    generator = ConditionalGenerator(None, 64, latent_dim=32, base_channels=8, embed_dim=32).eval()
    teacher_net = create_model(teacher, 1)
    data = UTKFaceDataModule(data_dir="unused", max_age=max_age)
    ages = np.arange(1, max_age + 1)
    targets = torch.from_numpy(ages / max_age).float()  # as UTKFaceDataModule's targets
    record = {
        "label_min": targets.min().item(),
        "label_max": targets.max().item(),
        "num_distinct_labels": len(targets.unique()),
    }  # what ConditionalGAN.setup records (methods/cgan.py)
    calibration = targets.repeat(calibration_per_age)
    images = synthesis.generate(generator, calibration, seed=seed + 1000)
    shape_teacher(teacher_net, images, data.mean, data.std, center=0.5, spread=0.25)
    return FilterProblem("regression", generator, teacher_net, data, record, per_label, seed, teacher, ages)


# ------------------------------------------------------------------------------------------------ lit-kd's side
class RecordingGenerator(nn.Module):
    """The generator, recording the latents, labels and outputs of every call (lit-kd's draws, to give the official)."""

    def __init__(self, generator: ConditionalGenerator) -> None:
        super().__init__()
        self.generator = generator
        self.latent_dim = generator.latent_dim
        self.num_classes, self.image_size = generator.num_classes, generator.image_size
        self.calls: list[tuple[Tensor, Tensor, Tensor]] = []

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        images = self.generator(z, labels)
        self.calls.append((z.detach().clone(), labels.detach().clone(), images.detach().clone()))
        return images


@dataclass
class LitRun:
    """What :func:`synthesize` did, per generated sample (in generation order)."""

    latents: Tensor
    labels: Tensor  # conditioning labels (classes, or normalised continuous labels)
    raw: Tensor  # generator outputs in [-1, 1]
    images: Tensor  # uint8, as saved
    kept: np.ndarray  # bool
    targets: np.ndarray  # relabelled targets of the kept samples (NaN elsewhere)
    counts: dict[str, Any]
    scores: np.ndarray | None  # the filter's per-sample cross-entropy or absolute error (from its locals)


def image_positions(all_images: np.ndarray, some: np.ndarray) -> np.ndarray:
    """The index in ``all_images`` of each image of ``some`` (matched by their bytes; generated images are distinct)."""
    where = {image.tobytes(): index for index, image in enumerate(all_images)}
    if len(where) != len(all_images):
        raise ValueError("two generated images are identical: samples cannot be matched by their pixels")
    return np.array([where[image.tobytes()] for image in some], dtype=np.int64)


def run_lit_kd(problem: FilterProblem, **settings: Any) -> LitRun:
    """:func:`synthesize` on the problem (with ``settings``); the kept samples and targets matched to the draws."""
    recorder = RecordingGenerator(problem.generator_copy())
    mask = synthesis.classification_keep_mask if problem.task == "classification" else regression_keep_mask
    with watch(None, {mask.__code__: "mask"}) as (_, calls):
        images, targets, counts = synthesize(
            recorder,
            problem.teacher_copy(),
            problem.data,
            problem.gan_record,
            per_label=problem.per_label,
            batch_size=problem.batch_size,
            seed=problem.seed,
            **settings,
        )
    latents, labels, raw = (torch.cat(parts) for parts in zip(*recorder.calls, strict=True))
    generated = to_uint8(raw)
    kept = np.zeros(len(generated), dtype=bool)
    positions = image_positions(generated.numpy(), images.numpy())
    kept[positions] = True
    full_targets = np.full(len(generated), np.nan)
    full_targets[positions] = targets.double().numpy()
    score_name = "cross_entropy" if problem.task == "classification" else "errors"
    masks = calls.get("mask", [])
    scores = masks[0].final_locals.get(score_name) if len(masks) == 1 else None
    return LitRun(
        latents,
        labels,
        raw,
        generated,
        kept,
        full_targets,
        counts,
        None if scores is None else scores.double().numpy(),
    )


# ------------------------------------------------------------------------------------------------ official: classes
def classification_script(
    root: Path,
    problem: FilterProblem,
    rho: float,
    augment: bool,
    nfake: int = 0,
    burnin: int = 0,
    feed: LatentFeed | None = None,
) -> OfficialScript:
    """The official CIFAR-100 sampler and filter, defined in a namespace bound to the problem.

    ``args`` holds the flags of ``scripts/run.sh``'s last command (``--filter --adjust``, threshold ``rho``; the
    filter-time augmentation of ``--dre_precnn_transform`` if ``augment``); no cDR-RS subsampling.
    """
    args = namespace(
        filter=True,
        adjust=True,
        subsampling=False,
        dre_precnn_transform=augment,
        img_size=problem.data.image_size,
        gan_dim_g=problem.generator.latent_dim,
        samp_filter_ce_percentile_threshold=rho,
        samp_filter_precnn_net=f"{problem.teacher_name} (lit-kd zoo)",
        samp_filter_batch_size=problem.batch_size,
        samp_batch_size=max(1, nfake // 2),  # run.sh: 600; the sampler's batches only decide how many it discards
        samp_filter_burnin_size=burnin,
        samp_nfake_per_class=nfake,
        num_classes=problem.data.num_classes,
    )
    names: dict[str, Any] = dict(
        args=args,
        np=np,
        torch=feed if feed is not None else torch,
        nn=nn,
        F=F,
        transforms=transforms,
        Image=Image,
        tqdm=quiet_progress(tqdm),
        trange=quiet_progress(trange),
        save_image=unavailable("save_image"),
        SimpleProgressBar=unavailable("SimpleProgressBar"),
        train_means=list(problem.data.mean),  # main.py:116-122 computes them from CIFAR-100; ours are the data's
        train_stds=list(problem.data.std),
        netG=problem.generator_copy(),
        filter_precnn_net=problem.teacher_copy(),
    )
    script = OfficialScript(root, names)
    script.define(MAIN_UTILS, "IMGs_dataset")
    script.define(MAIN, "fn_filter_or_adjust")
    if feed is not None:
        official_sampler = script.define(MAIN, "fn_sampleGAN_given_label")
        script.names["fn_sampleGAN_given_label"] = feed.sampler(official_sampler, int)
        script.define(MAIN, "fn_final_sampler")
    return script


def run_transform_block(script: OfficialScript) -> None:
    """``transform_precnn_train`` as main.py builds it (with or without ``--dre_precnn_transform``)."""
    script.run_node(MAIN, script.module_if(MAIN, "args.dre_precnn_transform"), "if args.dre_precnn_transform")


def official_filter_pooled(
    root: Path, problem: FilterProblem, images: np.ndarray, labels: np.ndarray, rho: float, augment: bool
) -> dict[str, Any]:
    """``fn_filter_or_adjust`` in burn-in mode on the whole set (its cutoff), then filtering the same set."""
    script = classification_script(root, problem, rho, augment)
    function = script.names["fn_filter_or_adjust"]
    torch.manual_seed(problem.seed)  # the augmenting transform's draws
    with (
        cuda_is_the_cpu(),
        redirect_stdout(io.StringIO()),
        watch(root, {function.__code__: "filter"}) as (lines, calls),
    ):
        run_transform_block(script)
        cutoff = function(images, labels, burnin_mode=True)
        kept_images, kept_labels = function(fake_images=images, fake_labels=labels, CE_cutoff_point=cutoff)
    kept = np.zeros(len(images), dtype=bool)
    positions = image_positions(images, kept_images)
    kept[positions] = True
    targets = np.full(len(images), np.nan)
    targets[positions] = np.asarray(kept_labels, dtype=np.float64)
    filtered = calls["filter"][-1].final_locals
    scores = filtered.get("fake_CE_loss")
    return {
        "kept": kept,
        "targets": targets,
        "cutoff": float(cutoff),
        "scores": None if scores is None else np.asarray(scores, dtype=np.float64),
        "lines": lines,
        "executed": script.executed,
    }


def compare_filters(lit: LitRun, official: dict[str, Any], labels: np.ndarray, rho: float) -> dict[str, Any]:
    """Kept sets, relabelled targets, per-sample scores and cutoffs of two filters of the same samples."""
    both = lit.kept & official["kept"]
    target_diff = np.abs(lit.targets[both] - official["targets"][both])
    result: dict[str, Any] = {
        "samples": len(lit.kept),
        "kept_lit_kd": int(lit.kept.sum()),
        "kept_official": int(official["kept"].sum()),
        "kept_disagreements": int((lit.kept != official["kept"]).sum()),
        "kept_by_lit_kd_only": int((lit.kept & ~official["kept"]).sum()),
        "kept_by_official_only": int((~lit.kept & official["kept"]).sum()),
        "target_mismatches": int((target_diff > 0).sum()),
        "max_abs_target_diff": float(target_diff.max()) if len(target_diff) else 0.0,
        "cutoff_official": official["cutoff"],
        "per_label": per_label_counts(labels, lit.kept, official["kept"]),
    }
    if lit.scores is not None and official["scores"] is not None:
        result["max_abs_score_diff"] = float(np.abs(lit.scores - official["scores"]).max())
        result["cutoff_lit_kd"] = lit_kd_cutoff(lit.scores, rho)
    return result


def lit_kd_cutoff(scores: np.ndarray, rho: float) -> float:
    """lit-kd's cutoff, recomputed from its filter's scores as ``synthesis.py`` does (``torch.quantile``, float32)."""
    return float(torch.quantile(torch.from_numpy(scores).float(), rho))


def per_label_counts(labels: np.ndarray, lit_kept: np.ndarray, official_kept: np.ndarray) -> dict[str, dict]:
    return {
        f"{value:g}": {
            "generated": int((labels == value).sum()),
            "lit_kd": int(lit_kept[labels == value].sum()),
            "official": int(official_kept[labels == value].sum()),
        }
        for value in np.unique(labels)
    }


def official_pipeline(
    root: Path, problem: FilterProblem, lit: LitRun, rho: float, nfake: int, burnin: int
) -> dict[str, Any]:
    """``fn_final_sampler`` per class, as ``scripts/run.sh`` runs main.py (without cDR-RS), on lit-kd's latents.

    Each class's latent stream is ``burnin`` rows of its own (the burn-in draw lit-kd does not make), then lit-kd's
    latents of that class in order, then spare rows (drawn only if the official loop needs more than lit-kd drew).
    """
    classes = lit.labels.numpy()
    spare = torch.Generator().manual_seed(problem.seed + 7)
    dim = problem.generator.latent_dim
    streams = {
        int(c): torch.cat(
            [
                torch.randn(burnin, dim, generator=spare),
                lit.latents[classes == c],
                torch.randn(4 * nfake + problem.batch_size, dim, generator=spare),  # it draws whole batches
            ]
        )
        for c in np.unique(classes)
    }
    feed = LatentFeed(streams)
    script = classification_script(root, problem, rho, augment=False, nfake=nfake, burnin=burnin, feed=feed)
    filter_code = script.names["fn_filter_or_adjust"].__code__
    sampler_code = script.names["fn_sampleGAN_given_label"].__wrapped__.__code__
    final = {}
    with (
        cuda_is_the_cpu(),
        redirect_stdout(io.StringIO()),
        watch(root, {filter_code: "filter", sampler_code: "sample"}) as (lines, calls),
    ):
        run_transform_block(script)
        for c in streams:
            final[c] = script.names["fn_final_sampler"](nfake=nfake, label_i=c)
    per_class_index = {int(c): np.flatnonzero(classes == c) for c in streams}

    def lit_index(stream: int, row: int) -> int | None:
        position = row - burnin
        members = per_class_index[stream]
        return int(members[position]) if 0 <= position < len(members) else None

    raw_diff, pixels_differ, pixels_total, max_pixel_diff = 0.0, 0, 0, 0
    seen = np.zeros(len(classes), dtype=bool)
    official_kept = np.zeros(len(classes), dtype=bool)
    official_final = np.zeros(len(classes), dtype=bool)
    official_only_final = 0
    cutoffs = {}
    samples, filters = calls["sample"], calls["filter"]
    for (stream, start, end), sampled, filtered in zip(feed.log, samples, filters, strict=True):
        if filtered.arguments.get("burnin_mode"):
            cutoffs[stream] = float(filtered.returned)
            continue
        raw = torch.from_numpy(np.asarray(sampled.returned[0]))
        quantised = filtered.arguments["fake_images"]
        kept_positions = image_positions(quantised, filtered.returned[0])
        for offset in range(end - start):
            index = lit_index(stream, start + offset)
            if index is None:
                continue
            seen[index] = True
            raw_diff = max(raw_diff, float((raw[offset] - lit.raw[index]).abs().max()))
            difference = np.abs(quantised[offset].astype(np.int16) - lit.images[index].numpy().astype(np.int16))
            pixels_differ += int((difference > 0).sum())
            pixels_total += difference.size
            max_pixel_diff = max(max_pixel_diff, int(difference.max()))
        for offset in kept_positions:
            index = lit_index(stream, start + int(offset))
            if index is not None:
                official_kept[index] = True
    for c, (images, _) in final.items():  # the final set: the first nfake kept, in drawing order
        kept_rows = []
        for (stream, start, _end), filtered in zip(feed.log, filters, strict=True):
            if stream == c and not filtered.arguments.get("burnin_mode"):
                positions = image_positions(filtered.arguments["fake_images"], filtered.returned[0])
                kept_rows += [start + int(p) for p in positions]
        for row in kept_rows[: len(images)]:
            index = lit_index(c, row)
            if index is None:
                official_only_final += 1
            else:
                official_final[index] = True
    return {
        "seen": seen,
        "kept": official_kept,
        "final": official_final,
        "final_from_spare_latents": official_only_final,
        "final_sizes": {str(c): int(len(images)) for c, (images, _) in final.items()},
        "cutoffs_per_class": cutoffs,
        "latents_drawn": {str(c): int(feed.position[c]) for c in streams},
        "max_abs_generator_output_diff": raw_diff,
        "pixels_differing": pixels_differ,
        "pixels_compared": pixels_total,
        "max_abs_pixel_diff": max_pixel_diff,
        "lines": lines,
        "executed": script.executed,
    }


def run_classification(
    root: Path, problem: FilterProblem, rho: float, nfake: int, burnin: int
) -> tuple[dict[str, Any], dict[str, set[int]], list[str]]:
    """The four classification comparisons; returns their results, the official lines that ran and the blocks run."""
    alike = dict(min_confidence=0.0, require_agreement=False, keep_quantile=rho)
    lit = run_lit_kd(problem, **alike)
    images, labels = lit.images.numpy(), lit.labels.numpy().astype(np.int64)
    results: dict[str, Any] = {}
    lines: dict[str, set[int]] = {}
    executed: list[str] = []

    def merge(official: dict[str, Any]) -> None:
        for path, numbers in official.pop("lines").items():
            lines.setdefault(path, set()).update(numbers)
        executed.extend(e for e in official.pop("executed") if e not in executed)

    plain = official_filter_pooled(root, problem, images, labels, rho, augment=False)
    merge(plain)
    results["filter_set_alike"] = compare_filters(lit, plain, labels, rho)
    augmented = official_filter_pooled(root, problem, images, labels, rho, augment=True)
    merge(augmented)
    results["filter_with_official_augmentation"] = compare_filters(lit, augmented, labels, rho)

    capped = run_lit_kd(problem, **alike, max_per_label=nfake)
    defaults = run_lit_kd(problem)
    for other in (capped, defaults):
        if not torch.equal(other.latents, lit.latents):
            raise RuntimeError("lit-kd's runs drew different latents: the seed does not fix them")
    pipeline = official_pipeline(root, problem, lit, rho, nfake, burnin)
    merge(pipeline)
    seen = pipeline["seen"]
    assert lit.scores is not None
    class_cutoff = np.array([pipeline["cutoffs_per_class"][int(c)] for c in labels])
    at_class_cutoffs = lit.scores < class_cutoff  # lit-kd's images and cross-entropies, the official cutoffs
    results["official_pipeline"] = {
        "nfake_per_class": nfake,
        "burnin_per_class": burnin,
        "latents_drawn_per_class": pipeline["latents_drawn"],
        "lit_kd_latents_the_official_filtered": int(seen.sum()),
        "max_abs_generator_output_diff": pipeline["max_abs_generator_output_diff"],
        "pixels_differing": pipeline["pixels_differing"],
        "pixels_compared": pipeline["pixels_compared"],
        "max_abs_pixel_diff": pipeline["max_abs_pixel_diff"],
        "cutoff_lit_kd_pooled": results["filter_set_alike"].get("cutoff_lit_kd"),
        "cutoffs_official_per_class": pipeline["cutoffs_per_class"],
        "kept_disagreements_on_shared_latents": int((lit.kept[seen] != pipeline["kept"][seen]).sum()),
        "kept_lit_kd_on_shared_latents": int(lit.kept[seen].sum()),
        "kept_official_on_shared_latents": int(pipeline["kept"][seen].sum()),
        "differing_from_the_cutoffs": int((lit.kept[seen] != at_class_cutoffs[seen]).sum()),
        "differing_from_the_quantisation": int((at_class_cutoffs[seen] != pipeline["kept"][seen]).sum()),
        "final_sizes_official": pipeline["final_sizes"],
        "final_sizes_lit_kd": per_class_sizes(labels, capped.kept),
        "final_symmetric_difference": int((capped.kept != pipeline["final"]).sum())
        + pipeline["final_from_spare_latents"],
        "final_from_spare_latents": pipeline["final_from_spare_latents"],
        "final_in_both": int((capped.kept & pipeline["final"]).sum()),
    }
    results["lit_kd_defaults"] = {
        "settings": "min_confidence 0.5, require_agreement true, no keep_quantile, no cap",
        "kept": int(defaults.kept.sum()),
        "kept_per_class": per_class_sizes(labels, defaults.kept),
        "in_official_final": int((defaults.kept & pipeline["final"]).sum()),
        "official_final_on_lit_kd_latents": int(pipeline["final"].sum()),
    }
    return results, lines, executed


def per_class_sizes(labels: np.ndarray, kept: np.ndarray) -> dict[str, int]:
    return {f"{value:g}": int(kept[labels == value].sum()) for value in np.unique(labels)}


# ------------------------------------------------------------------------------------------------ official: regression
def regression_script(root: Path, problem: FilterProblem, rho: float, feed: LatentFeed) -> OfficialScript:
    """The official UTKFace label helpers, sampler and dataset, defined in a namespace bound to the problem."""
    scale = float(problem.data.target_scale)
    args = namespace(
        max_label=scale,
        samp_num_fake_labels=-1,
        subsampling=False,
        samp_nfake_per_label=problem.per_label,
        samp_batch_size=problem.batch_size,
        gan_dim_g=problem.generator.latent_dim,
        filter=True,
        adjust=True,
        samp_filter_mae_percentile_threshold=rho,
        samp_filter_batch_size=problem.batch_size,
        samp_filter_precnn_net=f"{problem.teacher_name} (lit-kd zoo)",
        num_workers=0,
    )
    names: dict[str, Any] = dict(
        args=args,
        np=np,
        torch=feed,
        nn=nn,
        tqdm=quiet_progress(tqdm),
        trange=quiet_progress(trange),
        plt=unavailable("matplotlib"),
        labels_train=problem.training_labels,
        netG=problem.generator_copy(),
        net_embed_y2h=nn.Flatten(0),  # lit-kd's generator embeds the label itself: y2h hands it the label [B]
        filter_precnn_net=problem.teacher_copy(),
    )
    script = OfficialScript(root, names)
    script.define(UTK_UTILS, "IMGs_dataset")
    script.define(UTK, "fn_norm_labels")
    script.define(UTK, "fn_denorm_labels")
    return script


def regression_filter_statements(script: OfficialScript) -> tuple[list[ast.stmt], list[str]]:
    """The official filter block's statements up to the relabelling; and why the others are not run."""
    block = script.module_if(UTK, "args.filter or args.adjust")
    run, loading, skipped = [], set(), []
    for number, statement in enumerate(block.body):
        if any(word in ast.unparse(statement) for word in LOADS_THE_NETWORK):
            loading.update(range(statement.lineno, statement.end_lineno + 1))  # type: ignore[operator]
            continue
        run.append(statement)
        if isinstance(statement, ast.If) and ast.unparse(statement.test) == "args.adjust":
            rest = block.body[number + 1 :]
            if rest:
                skipped.append(f"{UTK}:{rest[0].lineno}-{rest[-1].end_lineno} (after the relabelling: the histogram)")
            break
    if loading:
        skipped.insert(0, f"{UTK}:{line_ranges(loading)} (build and load the filter CNN; ours is filter_precnn_net)")
    return run, skipped


def run_regression(
    root: Path, problem: FilterProblem, rho: float
) -> tuple[dict[str, Any], dict[str, set[int]], list[str], list[str]]:
    """The official UTKFace generation and filter against :func:`synthesize` with ``keep_quantile = rho``."""
    scale = float(problem.data.target_scale)
    lit = run_lit_kd(problem, keep_quantile=rho)
    grid = synthesis.label_grid("regression", 1, problem.gan_record, None)
    lit_group = np.repeat(np.arange(len(grid)), problem.per_label)
    streams = {g: lit.latents[lit_group == g] for g in range(len(grid))}
    feed = LatentFeed(streams)
    script = regression_script(root, problem, rho, feed)
    official_sampler = script.define(UTK, "fn_sampleGAN_given_label")
    script.names["fn_sampleGAN_given_label"] = feed.sampler(
        official_sampler, lambda label: int(np.abs(grid.double().numpy() - float(label)).argmin())
    )
    generation = script.module_if(UTK, "os.path.isfile(fake_data_h5file_fullpath) and (args.filter or args.adjust)")
    statements, skipped = regression_filter_statements(script)
    names = script.names
    results: dict[str, Any] = {}
    with cuda_is_the_cpu(), redirect_stdout(io.StringIO()), watch(root, {}) as (lines, _):
        for statement in generation.orelse:  # no unfiltered h5 file: generate (the grid, then per label)
            script.run_node(UTK, statement, "generation (else branch of the h5 check)")
        official_images, official_labels = names["fake_images"], names["fake_labels"]
        official_grid = np.asarray(names["target_labels_norm"], dtype=np.float64)
        for case, images in (("filter_set_alike", lit.images.numpy()), ("official_pipeline", official_images)):
            names["fake_images"], names["fake_labels"] = images, official_labels
            for statement in statements:
                script.run_node(UTK, statement, "filter block")
            kept = np.zeros(len(images), dtype=bool)
            kept[np.asarray(names["indx_sel"])] = True
            targets = np.full(len(images), np.nan)
            targets[kept] = np.asarray(names["fake_labels"], dtype=np.float64)
            predictions = np.asarray(names["fake_labels_pred"], dtype=np.float64)  # every sample, before the filter
            errors = np.asarray(names["fake_mae_loss"], dtype=np.float64)
            results[case] = regression_comparison(
                lit, kept, targets, predictions, errors, float(names["mae_cutoff_point"]), official_labels, rho, scale
            )
        pixels = np.abs(official_images.astype(np.int16) - lit.images.numpy().astype(np.int16))
    results["generation"] = {
        "labels": len(official_grid),
        "per_label": problem.per_label,
        "max_abs_grid_diff_normalised": float(np.abs(official_grid - grid.double().numpy()).max()),
        "max_abs_conditioning_label_diff_years": float(
            np.abs(np.asarray(official_labels, dtype=np.float64) - lit.labels.double().numpy() * scale).max()
        ),
        "latents_drawn": int(sum(feed.position.values())),
        "pixels_differing": int((pixels > 0).sum()),
        "pixels_compared": int(pixels.size),
        "max_abs_pixel_diff": int(pixels.max()),
    }
    return results, lines, script.executed, skipped


def regression_comparison(
    lit: LitRun,
    kept: np.ndarray,
    targets: np.ndarray,
    predictions: np.ndarray,
    errors: np.ndarray,
    cutoff: float,
    labels: np.ndarray,
    rho: float,
    scale: float,
) -> dict[str, Any]:
    """Kept sets and targets (years) of lit-kd and the official filter, and what explains their differences."""
    both = lit.kept & kept
    lit_years = lit.targets[both].astype(np.float32) * np.float32(scale)
    target_diff = np.abs(lit_years - targets[both])
    explained = regression_keep_mask(
        torch.from_numpy(predictions).float(), torch.from_numpy(np.asarray(labels, dtype=np.float64)).float(), None, rho
    ).numpy()
    result = {
        "samples": len(kept),
        "kept_lit_kd": int(lit.kept.sum()),
        "kept_official": int(kept.sum()),
        "kept_disagreements": int((lit.kept != kept).sum()),
        "kept_by_lit_kd_only": int((lit.kept & ~kept).sum()),
        "kept_by_official_only": int((~lit.kept & kept).sum()),
        "max_abs_target_diff_years": float(target_diff.max()) if len(target_diff) else 0.0,
        "official_targets_equal_floor_of_lit_kd": bool((np.floor(lit_years) == targets[both]).all()),
        "cutoff_official_years": cutoff,
        "official_error_values": int(len(np.unique(errors))),
        "lit_kd_mask_on_official_integer_errors_disagreements": int((explained != kept).sum()),
        "per_label_kept": per_label_counts(np.asarray(labels, dtype=np.float64), lit.kept, kept),
    }
    if lit.scores is not None:
        result["cutoff_lit_kd_years"] = lit_kd_cutoff(lit.scores, rho) * scale
        result["max_abs_error_diff_years"] = float(np.abs(lit.scores * scale - errors).max())
    return result


# ------------------------------------------------------------------------------------------------ defaults
def lit_default(name: str) -> Any:
    """The default of ``lit-kd synthesize``'s option ``name`` (:func:`lit_kd.synthesis.run`)."""
    return inspect.signature(synthesis.run).parameters[name].default


def flag_setting(name: str, lit_value: Any, root: Path, relative: str, pattern: str, note: str) -> Setting:
    """A flag the official script passes (``True`` where the line is, with its place) or leaves out."""
    value, source = find_value(root, relative, pattern)
    return Setting(name, lit_value, value is not None, f"{source} ({note})" if value is not None else source)


def described(name: str, lit_value: str, official: str, root: Path, relative: str, pattern: str) -> Setting:
    """A behaviour rather than a number: what each side does, with the official line that shows it."""
    value, source = find_value(root, relative, pattern, group=0)
    return Setting(name, lit_value, official if value is not None else None, source)


def defaults_classification(root: Path) -> list[Setting]:
    main, script = MAIN, MAIN_SCRIPT
    return [
        setting(
            "keep_quantile (FILTER_THRESH)", lit_default("keep_quantile"), root, script, rf"^FILTER_THRESH={NUMBER}"
        ),
        described(
            "min_confidence",
            str(lit_default("min_confidence")),
            "none (the CE cutoff is the only test)",
            root,
            main,
            r"indx_sel = np.where\(fake_CE_loss<CE_cutoff_point\)",
        ),
        described(
            "require_agreement",
            str(lit_default("require_agreement")),
            "False (a sample the teacher assigns elsewhere is kept if its CE is low, then relabelled)",
            root,
            main,
            r"fake_labels_pred = fake_labels_pred\[indx_sel\]",
        ),
        flag_setting("relabel (--adjust)", True, root, script, r"(--filter --adjust)", "last command"),
        setting(
            "per_label (SAMP_NFAKE_PER_CLASS)", lit_default("per_label"), root, script, r"^SAMP_NFAKE_PER_CLASS=(\d+)"
        ),
        described(
            "cutoff computed over",
            "the filtered samples of all classes, pooled",
            "a separate burn-in draw per class",
            root,
            main,
            r"CE_cutoff_point = fn_filter_or_adjust\(brunin_images",
        ),
        setting(
            "burn-in per class (--samp_filter_burnin_size)",
            "none",
            root,
            MAIN_OPTS,
            r"'--samp_filter_burnin_size', type=int, default=(\d+)",
        ),
        flag_setting(
            "filter-time augmentation (--dre_precnn_transform)",
            False,
            root,
            script,
            r"(--dre_precnn_transform)",
            "crop + flip the images the teacher judges; main.py:134-140, 407",
        ),
        flag_setting(
            "subsampling (cDR-RS; lit-kd's is DRS)",
            lit_default("subsampling"),
            root,
            script,
            r"(--subsampling)",
            "every filtering command",
        ),
        described(
            "uint8 quantisation",
            "round",
            "truncate",
            root,
            main,
            r"brunin_images = brunin_images.astype\(np.uint8\)",
        ),
    ]


def defaults_regression(root: Path) -> list[Setting]:
    return [
        setting("keep_quantile (PERC)", lit_default("keep_quantile"), root, UTK_SCRIPT, rf"^PERC={NUMBER}"),
        setting(
            "per_label (--samp_nfake_per_label)",
            lit_default("per_label"),
            root,
            UTK_SCRIPT,
            r"--samp_nfake_per_label (\d+)",
        ),
        described(
            "label grid",
            "linspace(min, max, number of distinct training labels)",
            "the sorted distinct training labels",
            root,
            UTK,
            r"target_labels_norm = np.sort\(np.array\(list\(set\(labels_train\)\)\)\)",
        ),
        described(
            "error filtered",
            "|prediction - label| (unclipped, continuous)",
            "|int(clip(prediction, 0, 1) * max_label) - label| (whole years)",
            root,
            UTK,
            r"labels_pred = fn_denorm_labels\(labels_pred.cpu\(\)\)",
        ),
        described(
            "relabel",
            "clip(prediction, 0, 1) (float)",
            "int(clip(prediction, 0, 1) * max_label) (truncated years)",
            root,
            UTK,
            r"fake_labels = fake_labels_pred\[indx_sel\]",
        ),
        flag_setting(
            "subsampling (cDR-RS; lit-kd's is DRS)",
            lit_default("subsampling"),
            root,
            UTK_SCRIPT,
            r"(--subsampling)",
            "the filtered set is a cDR-RS subsample",
        ),
        described(
            "uint8 quantisation",
            "round",
            "truncate",
            root,
            UTK,
            r"batch_fake_images = batch_fake_images.type\(torch.uint8\)",
        ),
    ]


# ------------------------------------------------------------------------------------------------ rows
CLASSIFICATION_NOTES = [
    "not compared: the official subsampling before the filter (cDR-RS, main.py:218-362: a ResNet-34 feature "
    "extractor trained on CIFAR-100, an MLP5 conditional density-ratio model, rejection sampling against a burn-in "
    "maximum), which run.sh uses in every filtering command; lit-kd has no cDR-RS (its `subsampling=True` is "
    "discriminator rejection sampling with the GAN's own discriminator, synthesis.py:187-200, a documented stand-in). "
    "Both sides run without subsampling here",
    "the teacher has random weights: the counts of (b) and (d) depend on it (a trained teacher is steadier under "
    "crops and agrees with the conditioning class far more often than one time in ten); (a) and (c) compare "
    "decisions on identical inputs",
    "cross-entropy: lit-kd takes -log(softmax) with the probability clamped at 1e-12 (synthesis.py:158), the official "
    "code CrossEntropyLoss on the logits (main.py:413, 424); they part only below a probability of 1e-12, where "
    "lit-kd caps the CE at 27.6, far above any quantile cutoff",
    "bound by the adapter: train_means/train_stds (main.py:116-122 computes them from CIFAR-100's training images) "
    "to the data's normalisation, which lit-kd uses; the sampler's batch size (run.sh: SAMP_BS 600) to nfake/2, "
    "which only decides how many drawn latents it throws away; the filter batch size to lit-kd's (500)",
    "lit-kd's text 'cGAN-KD uses 0.7 (CIFAR and UTKFace)' (synthesis.py:321, the keep_quantile help) holds for the "
    "older CIFAR-10 code (commit 1629fae); this CIFAR-100 code uses 0.9 with per-class cutoffs",
]
REGRESSION_NOTES = [
    "net_embed_y2h is bound to a flatten: lit-kd's ConditionalGenerator embeds the continuous label itself, where "
    "the official netG takes the embedding of net_y2h",
    "run_gene_data.sh filters an unfiltered h5 file made with cDR-RS subsampling (--unfiltered_fake_dataset_filename)"
    "; here the generation lines run without subsampling and the filter lines filter what they made",
    "the teacher has random weights and predicts beyond [0, 1] for some images, where the official clipping and "
    "lit-kd's unclipped error part most (the error max abs diff)",
]


def settings_rows(settings: list[Setting]) -> list[dict[str, Any]]:
    return [{**vars(s), "matches": s.matches} for s in settings]


def mismatched(settings: list[dict[str, Any]]) -> str:
    names = [s["name"].split(" (")[0] for s in settings if not s["matches"]]
    return "match" if not names else "differ: " + ", ".join(names)


def run(
    root: Path,
    seed: int = 0,
    task: str = "classification",
    per_label: int | None = None,
    rho: float | None = None,
    nfake: int = 100,
    burnin: int = 100,
) -> dict[str, Any]:
    """One row of the parity table: lit-kd's filtering and relabelling against the official code of ``task``.

    Args:
        root: the cGAN-KD checkout.
        seed: seed of the networks' weights and of the draws.
        task: ``"classification"`` (CIFAR-100 code) or ``"regression"`` (UTKFace code).
        per_label: samples lit-kd draws per class (default 200) or per age (default 10).
        rho: the quantile threshold (default: the official script's, 0.9 for CIFAR-100, 0.7 for UTKFace).
        nfake: classification: samples the official pipeline keeps per class (``--samp_nfake_per_class``).
        burnin: classification: the official burn-in draw per class (``--samp_filter_burnin_size``).
    """
    row: dict[str, Any] = {
        "method": CLASSIFICATION_ROW if task == "classification" else REGRESSION_ROW,
        "reference": REFERENCE,
        "status": "compared",
        "kind": "filter",
        "reference_commit": checkout_commit(root),
        "seed": seed,
    }
    if task == "classification":
        if rho is None:
            rho = float(find_value(root, MAIN_SCRIPT, rf"^FILTER_THRESH={NUMBER}")[0] or 0.9)
        problem = make_classification_problem(seed, per_label=per_label or 200)
        results, lines, executed = run_classification(root, problem, rho, nfake, burnin)
        settings = defaults_classification(root)
        skipped: list[str] = []
        notes = CLASSIFICATION_NOTES
        key = results["filter_set_alike"]
        identical = key["kept_disagreements"] == 0 and key["target_mismatches"] == 0
        cells = {
            "first loss lit-kd": f"CE cutoff {key.get('cutoff_lit_kd', float('nan')):.6f}",
            "first loss official": f"CE cutoff {key['cutoff_official']:.6f}",
            "first-step grad diff": f"CE max abs diff {key.get('max_abs_score_diff', float('nan')):.1e}",
        }
        pipeline = results["official_pipeline"]
        verdict = (
            f"{'match' if identical else 'DIFFERS'} when set alike; as run.sh runs it "
            f"{pipeline['kept_disagreements_on_shared_latents']}/{pipeline['lit_kd_latents_the_official_filtered']} "
            "keep decisions differ (per-class burn-in cutoff, truncation)"
        )
    else:
        if rho is None:
            rho = float(find_value(root, UTK_SCRIPT, rf"^PERC={NUMBER}")[0] or 0.7)
        problem = make_regression_problem(seed, per_label=per_label or 10)
        results, lines, executed, skipped = run_regression(root, problem, rho)
        settings = defaults_regression(root)
        notes = REGRESSION_NOTES
        key = results["filter_set_alike"]
        identical = key["kept_disagreements"] == 0 and key["max_abs_target_diff_years"] == 0
        cells = {
            "first loss lit-kd": f"error cutoff {key.get('cutoff_lit_kd_years', float('nan')):.4f} y",
            "first loss official": f"error cutoff {key['cutoff_official_years']:.4f} y",
            "first-step grad diff": f"error max abs diff {key.get('max_abs_error_diff_years', float('nan')):.2f} y",
        }
        explained = key["lit_kd_mask_on_official_integer_errors_disagreements"] == 0
        verdict = f"{'match' if identical else 'DIFFERS'}: official errors and targets are whole years" + (
            " (lit-kd's mask on them: identical)" if explained else ""
        )
    settings_list = settings_rows(settings)
    target_key = "max_abs_target_diff" if task == "classification" else "max_abs_target_diff_years"
    cells = {
        "official code that ran": "; ".join(f"{path}:{line_ranges(n)}" for path, n in sorted(lines.items())),
        "max abs weight diff": (
            f"n/a; kept: {key['kept_disagreements']}/{key['samples']} differ, targets: max abs diff "
            f"{key[target_key]:.3g}"
        ),
        "float32 noise floor": "-",
        "float64 weight diff": "-",
        **cells,
        "defaults": mismatched(settings_list),
    }
    return {
        **row,
        "rho": rho,
        "problem": {
            "task": task,
            "teacher": f"{problem.teacher_name} (random weights, BN settled on generated images, classifier "
            "rescaled over them)",
            "generator": "lit_kd.models.ConditionalGenerator " + str(problem.generator.config) + " (random weights)",
            "per_label": problem.per_label,
            "labels": problem.data.num_classes if task == "classification" else len(problem.training_labels),
            "batch_size": problem.batch_size,
        },
        "comparisons": results,
        "identical_when_set_alike": identical,
        "official_lines_run": {path: line_ranges(numbers) for path, numbers in sorted(lines.items())},
        "official_blocks_executed": executed,
        "official_lines_not_run": skipped,
        "notes": notes,
        "defaults": settings_list,
        "defaults_match": all(s["matches"] for s in settings_list),
        "verdict": verdict,
        "summary_cells": cells,
    }


# ------------------------------------------------------------------------------------------------ report
def detail_table(rows: list[dict[str, Any]]) -> str:
    """One line per comparison: samples, kept on each side, disagreements, targets, cutoffs."""
    table = []
    for row in rows:
        for name, result in row["comparisons"].items():
            if "kept_disagreements" not in result:
                continue
            regression = "max_abs_target_diff_years" in result
            table.append(
                {
                    "row": row["method"],
                    "comparison": name.replace("_", " "),
                    "samples": result["samples"],
                    "kept lit-kd": result["kept_lit_kd"],
                    "kept official": result["kept_official"],
                    "keep decisions differing": result["kept_disagreements"],
                    "targets: max abs diff": (
                        f"{result['max_abs_target_diff_years']:.3g} y"
                        if regression
                        else f"{result['max_abs_target_diff']:.3g} ({result['target_mismatches']} differ)"
                    ),
                    "cutoff lit-kd / official": (
                        f"{result.get('cutoff_lit_kd_years', float('nan')):.4f} / {result['cutoff_official_years']:.4f}"
                        if regression
                        else f"{result.get('cutoff_lit_kd', float('nan')):.6f} / {result['cutoff_official']:.6f}"
                    ),
                }
            )
    return markdown_table(table)


def report(rows: list[dict[str, Any]], payload: dict[str, Any]) -> str:
    """The markdown file: the parity-table rows, the comparisons, then per row the findings, defaults and lines."""
    setup = payload["setup"]
    load = payload["load_average"]
    lines = [
        "# cGAN-KD stage 2 (filtering and relabelling) against the official code",
        "",
        f"lit-kd's `synthesize` against UBCDingXin/cGAN-KD at {(payload['reference']['commit'] or 'unknown')[:7]}, "
        "whose sampling and filtering lines were executed from the checkout by line range with their names bound to "
        "the same generator (random weights), latents, labels and teacher (random weights, BN settled, classifier "
        "rescaled). No weights are trained, so the table's weight columns hold what replaces them here: how many "
        "keep decisions differ, how far the relabelled targets are apart, and the filter's cutoff (cross-entropy for "
        f"classification, absolute error in years for regression). CPU, float32, {setup['threads']} thread, seed "
        f"{setup['seed']}. Load average {load['start']:.2f} at the start, {load['end']:.2f} at the end. "
        "`benchmarks/parity_cgan.py` says how to run it.",
        "",
        summary_table(rows),
        "",
        detail_table(rows),
        "",
    ]
    for row in rows:
        lines += row_details(row)
    return "\n".join(lines)


def row_details(row: dict[str, Any]) -> list[str]:
    problem, results = row["problem"], row["comparisons"]
    lines = [f"## {row['method']}", ""]
    lines.append(
        f"- problem: {problem['labels']} {'classes' if problem['task'] == 'classification' else 'ages'} x "
        f"{problem['per_label']} samples; teacher {problem['teacher']}; generator {problem['generator']}; "
        f"quantile threshold rho = {row['rho']:g} (the official script's)."
    )
    if problem["task"] == "classification":
        alike, augmented = results["filter_set_alike"], results["filter_with_official_augmentation"]
        pipeline, defaults = results["official_pipeline"], results["lit_kd_defaults"]
        lines += [
            f"- (a) the filter set alike (lit-kd `keep_quantile {row['rho']:g}, min_confidence 0, require_agreement "
            "false`; the official `fn_filter_or_adjust`, its burn-in call on the same pooled set, no filter-time "
            f"augmentation): {alike['kept_disagreements']} of {alike['samples']} keep decisions differ, "
            f"{alike['target_mismatches']} relabelled targets differ; per-sample cross-entropy max abs diff "
            f"{alike.get('max_abs_score_diff', float('nan')):.1e}; cutoff "
            f"{alike.get('cutoff_lit_kd', float('nan')):.6f} / {alike['cutoff_official']:.6f}.",
            f"- (b) with the official filter-time augmentation (`--dre_precnn_transform`, random crop + flip of the "
            f"image the teacher judges; lit-kd judges the image it saves): {augmented['kept_disagreements']} of "
            f"{augmented['samples']} keep decisions and {augmented['target_mismatches']} relabels differ.",
            f"- (c) the official pipeline (`fn_final_sampler` per class: a burn-in of {pipeline['burnin_per_class']} "
            f"fixes each class's cutoff, then batches of nfake/2 until nfake = {pipeline['nfake_per_class']} are kept) "
            f"on lit-kd's latents: the generator outputs agree to {pipeline['max_abs_generator_output_diff']:.1e}; "
            f"the uint8 images differ in {pipeline['pixels_differing']} of {pipeline['pixels_compared']} values "
            f"(max {pipeline['max_abs_pixel_diff']}: the official code truncates, lit-kd rounds); of the "
            f"{pipeline['lit_kd_latents_the_official_filtered']} latents both filtered, "
            f"{pipeline['kept_disagreements_on_shared_latents']} keep decisions differ (kept: lit-kd "
            f"{pipeline['kept_lit_kd_on_shared_latents']}, official {pipeline['kept_official_on_shared_latents']}); "
            f"lit-kd's cross-entropies at the official per-class cutoffs differ from lit-kd's decisions on "
            f"{pipeline['differing_from_the_cutoffs']} (the cutoff) and from the official decisions on "
            f"{pipeline['differing_from_the_quantisation']} (the images: truncation); "
            f"cutoffs per class {', '.join(f'{v:.3f}' for v in pipeline['cutoffs_official_per_class'].values())} "
            f"against lit-kd's pooled {pipeline['cutoff_lit_kd_pooled']:.3f}. Final sets (lit-kd with "
            f"`max_per_label {pipeline['nfake_per_class']}`): {pipeline['final_in_both']} samples in both, symmetric "
            f"difference {pipeline['final_symmetric_difference']} ({pipeline['final_from_spare_latents']} official "
            "samples from latents beyond lit-kd's draw); per class, official "
            f"{sorted(set(pipeline['final_sizes_official'].values()))}, lit-kd "
            f"{min(pipeline['final_sizes_lit_kd'].values())}-{max(pipeline['final_sizes_lit_kd'].values())}.",
            f"- (d) lit-kd's defaults ({defaults['settings']}) keep {defaults['kept']} samples "
            f"({min(defaults['kept_per_class'].values())}-{max(defaults['kept_per_class'].values())} per class), "
            f"{defaults['in_official_final']} of them in the official final set "
            f"({defaults['official_final_on_lit_kd_latents']} on lit-kd's latents).",
        ]
    else:
        generation, alike, pipeline = results["generation"], results["filter_set_alike"], results["official_pipeline"]
        lines += [
            f"- generation: label grid max abs diff {generation['max_abs_grid_diff_normalised']:.1e} (normalised), "
            f"conditioning labels {generation['max_abs_conditioning_label_diff_years']:.1e} years; the uint8 images "
            f"differ in {generation['pixels_differing']} of {generation['pixels_compared']} values (max "
            f"{generation['max_abs_pixel_diff']}: truncation against rounding).",
        ]
        for name, result in (("(a) the filter on lit-kd's images", alike), ("(c) the official pipeline", pipeline)):
            lines.append(
                f"- {name}: {result['kept_disagreements']} of {result['samples']} keep decisions differ (kept: "
                f"lit-kd {result['kept_lit_kd']}, official {result['kept_official']}); targets max abs diff "
                f"{result['max_abs_target_diff_years']:.3f} years (official = floor of lit-kd's: "
                f"{result['official_targets_equal_floor_of_lit_kd']}); cutoff "
                f"{result.get('cutoff_lit_kd_years', float('nan')):.3f} / {result['cutoff_official_years']:.3f} "
                f"years, the official errors take {result['official_error_values']} distinct values; lit-kd's "
                "`regression_keep_mask` applied to the official whole-year predictions disagrees with the official "
                f"kept set on {result['lit_kd_mask_on_official_integer_errors_disagreements']} samples."
            )
    lines.append(f"- defaults, lit-kd / official: {defaults_text(row['defaults'])}.")
    lines.append(
        "- official blocks executed by line range: "
        + "; ".join(f"`{e}`" for e in row["official_blocks_executed"])
        + "."
    )
    lines += [f"- {note}." for note in row["notes"]]
    if row["official_lines_not_run"]:
        lines.append("- official lines of those blocks not run: " + "; ".join(row["official_lines_not_run"]) + ".")
    lines.append("")
    return lines


def parity_rows(root: Path, steps: int, batch_size: int, seed: int) -> list[dict[str, Any]]:
    """This script's rows of ``benchmarks/parity.py``'s table: classification and regression (no steps: a filter)."""
    return [run(root, seed, "classification", 200), run(root, seed, "regression", 10)]  # main()'s defaults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", action="append", default=[], metavar="cGAN-KD=DIR", help="the official checkout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-label", type=int, default=200, help="classification: samples lit-kd draws per class")
    parser.add_argument("--per-age", type=int, default=10, help="regression: samples per training age (1-60)")
    parser.add_argument("--nfake", type=int, default=100, help="official samples kept per class (run.sh: 5000)")
    parser.add_argument("--burnin", type=int, default=100, help="official burn-in per class (opts.py: 1000)")
    parser.add_argument("--skip-regression", action="store_true")
    parser.add_argument("--name", default="parity_cgan", help="results file name under benchmarks/results")
    args = parser.parse_args()
    references = parse_references(args.reference)
    if REFERENCE not in references:
        raise SystemExit(f"give the official checkout: --reference {REFERENCE}=DIR (git clone {REFERENCE_URL})")
    root = references[REFERENCE]
    torch.set_num_threads(1)
    load_before = load_average()
    rows = [run(root, args.seed, "classification", args.per_label, nfake=args.nfake, burnin=args.burnin)]
    if not args.skip_regression:
        rows.append(run(root, args.seed, "regression", args.per_age))
    load_after = load_average()
    payload = {
        "setup": {"device": "cpu", "dtype": "float32", "threads": 1, "seed": args.seed},
        "reference": {"name": REFERENCE, "path": str(root), "commit": checkout_commit(root)},
        "load_average": {"start": load_before, "end": load_after},
        "rows": rows,
    }
    write_results(args.name, payload, report(rows, payload))


if __name__ == "__main__":
    main()
