"""Outcome parity with the authors' code: lit-kd's test accuracy against the official training code's, at one budget.

Step parity (``benchmarks/parity.py``) shows that lit-kd's losses take the official code's optimiser steps; this shows
that whole runs end where the official code's end. The official code is read from the checkouts named by
``--reference NAME=DIR`` (imported by path, never copied):

* Hinton KD, FitNets and AT: RepDistiller's own training epoch, ``helper/loops.py: train_distill`` (Tian et al.,
  2020), called once per epoch (below);
* BSS (BSS_distillation): the script's own training function, ``train_attack_KD``, with its attack and its
  loss-weight schedule over the budget's epochs (:func:`bss_training`: compiled from the checkout at its own lines
  by ``parity_bss.official_functions``), called once per batch;
* DKD (mdistiller), KD + logit standardisation (logit-standardization-KD) and DIST (DIST_KD): the official loss
  objects that run both networks themselves (the distiller's ``forward_train``, DIST's ``KDLoss``), built by
  ``parity.py``'s adapters at lit-kd's settings, called once per batch in the four lines their trainers run
  (:func:`loss_training`: clear gradients, loss, backward, step). Their trainers are monolithic (yacs configs, CUDA,
  logging), so their loops are restated, cited, and the loss code is what runs;
* DFAD (Data-Free-Adversarial-Distillation): the script's own ``train()``, once per data-free epoch at the DFAD
  row's own budget (``--dfad-epochs``, ``--dfad-batches-per-epoch``, ``--dfad-batch-size``), with ``main()``'s
  optimisers and ``--scheduler``, the row's latent batches and start weights (:func:`dfad_official_run`); it pairs
  only with a row of the same data-free budget.

Every kind gets:

* the batches of lit-kd's run of the same seed: gains.py's DataModule (``Runner.data``: ``--subset`` class-balanced
  images, batch 128, seeded by the run's seed), its sampler epoch set and its crop/flip draws made by the DataModule's
  own ``on_after_batch_transfer``, as ``(images, targets, indices)`` (what ``train_distill`` unpacks); the subset's
  image hashes are checked against the subset that data seed draws;
* for RepDistiller's loop: ``module_list`` = [the student, (FitNets: the official ``models/util.py: ConvReg``), the
  teacher], each network behind RepDistiller's ``model(x, is_feat=True, preact=False)``; ``criterion_list`` =
  [``nn.CrossEntropyLoss``, the official ``DistillKL(kd_T)``, the official criterion (``DistillKL``, ``HintLoss``,
  ``Attention``)]; ``opt`` with ``--distill``, ``-r``, ``-a``, ``-b``, ``--kd_T``, ``--hint_layer`` at lit-kd's
  defaults (``parity.repdistiller_flags``); for the per-batch losses: the settings of gains.py's rows (DKD's and
  DIST's defaults, whose sources ``benchmarks/results/parity.md`` lists; KD + LS at ``gains.LOGIT_STANDARDISATION``),
  and DKD's warm-up read from the epoch counted from 1, as mdistiller's trainer counts it;
* lit-kd's optimiser and schedule (SGD 0.1 Nesterov, momentum 0.9, weight decay 5e-4, cosine to 0 stepped after every
  optimiser step: the module's own ``build_optimizer`` and ``with_lr_schedule``), so that the two sides differ only by
  the code that computes and applies the loss;
* the student built exactly as gains.py builds it (the same seed before the same constructor: the same initial
  weights, and FitNets' regressor weights copied into ``ConvReg``), the adapted ResNet-56 teacher
  (``--teacher-checkpoint``) fed the data's batches converted to its ImageNet normalisation as lit-kd converts them
  (``match_input_normalization``), on the CPU (``torch.cuda.is_available`` reads ``False`` inside the loop, as lit-kd's
  rows ran on the CPU).

The official run's last weights are tested on the full test split with lit-kd's metric (top-1, ``test/acc``). The
lit-kd side is not re-run: its accuracies are gains.py's rows in ``--lit-kd-results`` (default
``benchmarks/results/gains_60_epochs.partial.json``, the plateau budget), paired seed by seed only where the budget
(subset, epochs, no held-out split) and the teacher's weights hash agree. Reported per method: per-seed accuracies,
lit-kd minus official (points), its mean and 95% interval (Student's t), and whether the target holds (|mean| <= 1
point and the interval holds 0); the official lines that ran in the first epoch (traced). Resumable as gains.py:
finished (method, seed) runs are kept in ``benchmarks/results/<name>.partial.json`` (``--commit`` commits that file
after each run) and skipped, and a run stopped between epochs continues from its last epoch (its state after every
epoch under ``--output-dir``/resume; the run records ``resumed_at_epoch``).

The campaign (8 methods x 3 seeds, each 60 epochs of 39 steps: the table's plateau budget; DFAD 20 data-free epochs
of 300 steps, the DFAD row's)::

    python benchmarks/outcome_parity.py --data-dir /tmp/data --weights-dir /work/shared/weights \\
        --teacher-checkpoint /work/runs/checkpoints/cifar10/adapt_pretrained_resnet56/last.ckpt \\
        --reference RepDistiller=/work/refs/RepDistiller mdistiller=/work/refs/mdistiller \\
        DIST_KD=/work/refs/DIST_KD logit-standardization-KD=/work/refs/logit-standardization-KD \\
        BSS_distillation=/work/refs/BSS_distillation \\
        Data-Free-Adversarial-Distillation=/work/refs/Data-Free-Adversarial-Distillation --dfad-epochs 20 \\
        --threads 1 --commit

(``--epochs 30 --lit-kd-results benchmarks/results/gains_converged.partial.json`` pairs with the 30-epoch rows.)

Its duration: RepDistiller's loop 0.79 to 0.88 s per official step in a smoke run (``--epochs 2 --subset 640
--seeds 0``, 1 thread, on a 2-core machine shared with the gains campaign, load average 3.5 to 4) and 0.90 s over the
first 60-epoch run (AT seed 0, 35 minutes, load about 2); BSS's function with its attack 1.39 s in a smoke run (load
3, both epochs attacking), so at most about 55 minutes a BSS run at 60 epochs (no attack from epoch 45 on).
Seeds split across processes (``--seeds 0``, ``--seeds 1 2``) share the partial file, as gains.py's do.
Runs whose lit-kd row is not in gains.py's file yet are kept and paired later: ``--summarize-only`` re-reads it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import os
import statistics
import sys
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from common import cpuinfo, load_average, markdown_table, quiet_benchmark, quiet_trainer, run_stoppable, write_results
from gains import (
    DFAD_GENERATOR,
    LOGIT_STANDARDISATION,
    Runner,
    add_dfad_arguments,
    add_runner_arguments,
    commit_partial,
    paired_interval,
    run_id,
    save_seed,
    set_aside_other_settings,
)
from parity import (
    checkout_commit,
    copy_into,
    dist_criterion,
    import_official,
    line_ranges,
    mdistiller_dkd,
    mdistiller_ls_kd,
    namespace,
    official_regressor,
    parse_references,
    repdistiller_flags,
    repdistiller_forward,
    trace_lines,
)
from parity_bss import SCRIPT as BSS_SCRIPT
from parity_bss import official_script
from parity_dfad import REFERENCE as DFAD_REFERENCE
from parity_dfad import InjectedNoise, LossLog
from parity_dfad import official_script as dfad_official_script
from torch import Tensor, nn

from lit_kd.callbacks import BoundarySampleMining, GeneratorUpdateSchedule
from lit_kd.data import CIFAR10DataModule
from lit_kd.methods import (
    AttentionTransfer,
    BSSDistillation,
    DataFreeAdversarialDistillation,
    DecoupledKD,
    DISTDistillation,
    FitNets,
    HintonKD,
    SupervisedModule,
)
from lit_kd.methods.base import DistillationModule
from lit_kd.models import create_model
from lit_kd.models.normalization import match_input_normalization
from lit_kd.runtime.memo import image_hashes, weights_hash
from lit_kd.runtime.optimization import with_lr_schedule

DFAD_ROW = "DFAD (no real training image)"
TARGET_POINTS = 1.0  # |mean difference| at most this, and the 95% interval holds 0
DEFAULT_LIT_KD_RESULTS = Path(__file__).parent / "results" / "gains_60_epochs.partial.json"
#: the settings of gains.py's file that must equal this campaign's for a pair (besides the seed and teacher hash)
PAIRED_SETTINGS = ("subset", "epochs")


class RepDistillerNetwork(nn.Module):
    """A zoo network behind RepDistiller's model API: ``model(x, is_feat=True)`` -> ``(features, logits)``.

    It declares the network's input normalisation (``input_mean``/``input_std``), so that
    :func:`~lit_kd.models.normalization.match_input_normalization` converts the data's batches for it as lit-kd's
    methods convert them for a pretrained teacher.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.input_mean = getattr(network, "input_mean", None)
        self.input_std = getattr(network, "input_std", None)

    def forward(self, x: Tensor, is_feat: bool = False, preact: bool = False) -> Any:
        """Logits, or ``(features, logits)`` with ``is_feat`` (post-activation maps: ``preact`` is not supported)."""
        if preact:
            raise NotImplementedError("pre-activation features (RepDistiller's --distill abound) are not adapted")
        features, logits = repdistiller_forward(self.network, x)
        return (features, logits) if is_feat else logits


class TrainingEpoch:
    """One epoch of the DataModule's training batches as lit-kd's Trainer makes them, for a loop without a Trainer.

    Iterated like a DataLoader (``len``, ``iter``): the sampler's epoch is set as Lightning sets it, and each batch goes
    through the DataModule's own ``on_after_batch_transfer`` (crop/flip drawn from the data seed, the epoch and the
    batch index, then normalised), with each sample's index: ``(images, targets, indices)``.
    """

    def __init__(self, data: CIFAR10DataModule, loader: Any, epoch: int) -> None:
        self.data, self.loader, self.epoch = data, loader, epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        self.loader.sampler.set_epoch(self.epoch)
        self.data.trainer = namespace(training=True, overfit_batches=0, global_rank=0, world_size=1)
        try:
            for batch in self.loader:
                yield self.data.on_after_batch_transfer(batch, 0)
        finally:
            self.data.trainer = None


class ScheduledOptimizer:
    """The optimiser the official loop steps, with lit-kd's schedule stepped after every optimiser step."""

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        self.optimizer, self.scheduler = optimizer, scheduler

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        self.optimizer.step()
        self.scheduler.step()


def subset_hash(images: Tensor) -> str:
    """A hash of a set of images (their per-image hashes, sorted): equal for the same images in any order."""
    return hashlib.blake2b(image_hashes(images).sort().values.numpy().tobytes(), digest_size=8).hexdigest()


def expected_subset_hash(args: argparse.Namespace, seed: int) -> str:
    """The subset data seed ``seed`` draws, built apart (the seed given, not read from the environment)."""
    data = CIFAR10DataModule(args.data_dir, subset_size=args.subset, cache_dir=args.cache_dir, seed=seed)
    data.setup("fit")
    assert data.train_set is not None
    return subset_hash(data.train_set.images)


def checked_data(args: argparse.Namespace, runner: Runner, seed: int) -> tuple[CIFAR10DataModule, str]:
    """gains.py's DataModule for ``seed`` (built after the seed, as ``Runner.fit_test``), set up, and its subset's
    hash, checked against the subset data seed ``seed`` draws."""
    data = runner.data()
    data.setup("fit")
    assert data.train_set is not None
    subset = subset_hash(data.train_set.images)
    if data.data_seed != seed or subset != expected_subset_hash(args, seed):
        raise RuntimeError(f"seed {seed}: the official run's training subset is not the one data seed {seed} draws")
    return data, subset


# ------------------------------------------------------------------------------------------------ the official sides
@dataclass
class OfficialTraining:
    """The official side of a run: what the optimiser steps, and one training epoch of the official code."""

    trainable: nn.Module  # its parameters are what lit-kd's optimiser steps
    epoch: Callable[[TrainingEpoch, ScheduledOptimizer], float]  # one epoch; the mean training loss
    flags: dict[str, Any] | None = None  # RepDistiller's options (train_distill's opt)
    counts: dict[str, int] = field(default_factory=dict)  # events the official code met, recorded with the run


#: builds a row's official side: (checkout, row, lit-kd module, teacher network, data, epochs) -> its training
Builder = Callable[[Path, "Row", Any, nn.Module, CIFAR10DataModule, int], OfficialTraining]
#: an official per-batch loss: (images, targets, epoch from 0) -> the loss its trainer back-propagates
BatchLoss = Callable[[Tensor, Tensor, int], Tensor]
#: what ``.train()`` puts in training mode, and its official per-batch loss
Trained = tuple[nn.Module, BatchLoss]


@dataclass(frozen=True)
class Row:
    """One of gains.py's rows: how it builds its module, and the official code that trains the same student."""

    module: Callable[..., DistillationModule]  # (student, teacher, **teacher kwargs), as gains.py's row builds it
    reference: str  # the checkout it reads: --reference NAME=DIR
    official: str  # what of it runs, for the report
    training: Builder | None  # the official side within :func:`official_run`; None: ``run`` is the whole run
    criterion: Callable[[Path, Any], nn.Module] | None = None  # RepDistiller: (checkout, module) -> criterion_kd
    regressor: bool = False  # FitNets: module_list[1] is the official ConvReg
    loss: Callable[[Path, Any, nn.Module, nn.Module, Any], Trained] | None = None  # (checkout, module, s, t, data)
    run: Callable[..., dict[str, Any]] | None = None  # (args, checkout, name, seed, resume): a run of its own (DFAD)


def repdistiller_training(
    root: Path, row: Row, module: Any, teacher_network: nn.Module, data: CIFAR10DataModule, epochs: int
) -> OfficialTraining:
    """RepDistiller's ``train_distill`` (``helper/loops.py``), once per epoch, with the modules and criteria
    ``train_student.py:176-189, 267-279`` give it (FitNets: the official ``ConvReg``, its weights copied)."""
    loops, zoo_kd = import_official(root, "helper/loops.py"), import_official(root, "distiller_zoo/KD.py")
    teacher = RepDistillerNetwork(teacher_network)
    match_input_normalization(teacher, data.mean, data.std)  # ImageNet-normalised inputs, as lit-kd feeds it
    flags = repdistiller_flags(module)
    student = RepDistillerNetwork(module.student)
    extras = []
    if row.regressor:  # train_student.py:170-173, 187: the maps of a dummy batch size the regressor
        with torch.no_grad():
            probe = torch.randn(2, 3, 32, 32)
            feat_t, _ = teacher.eval()(probe, is_feat=True)
            feat_s, _ = copy.deepcopy(student).eval()(probe, is_feat=True)
        extras.append(official_regressor(root, module, feat_s[flags.hint_layer], feat_t[flags.hint_layer]))
    assert row.criterion is not None
    module_list = nn.ModuleList([student, *extras, teacher])
    criteria = nn.ModuleList([nn.CrossEntropyLoss(), zoo_kd.DistillKL(flags.kd_T), row.criterion(root, module)])

    def epoch(batches: TrainingEpoch, optimizer: ScheduledOptimizer) -> float:
        opt = namespace(**vars(flags), print_freq=len(batches) + 1)
        return float(loops.train_distill(batches.epoch + 1, batches, module_list, criteria, optimizer, opt)[1])

    return OfficialTraining(nn.ModuleList([student, *extras]), epoch, vars(flags))


def mdistiller_official(build: Callable[[Path, Any, nn.Module, nn.Module], nn.Module]) -> Callable[..., Trained]:
    """An mdistiller distiller (``build``: ``parity.py``'s adapter, at the module's settings) as a per-batch loss:
    called with the epoch counted from 1 (``engine/trainer.py:78-86``), its loss dict summed
    (``engine/trainer.py:164-167``), its teacher fed ImageNet-normalised inputs as lit-kd feeds them."""

    def official(root: Path, module: Any, student: nn.Module, teacher: nn.Module, data: Any) -> Trained:
        distiller = build(root, module, student, teacher)
        match_input_normalization(distiller.teacher, data.mean, data.std)

        def loss(images: Tensor, targets: Tensor, epoch: int) -> Tensor:
            _, losses = distiller(image=images, target=targets, epoch=epoch + 1)
            return sum(value.mean() for value in losses.values())

        return distiller, loss

    return official


def dist_kd_official(root: Path, module: Any, student: nn.Module, teacher: nn.Module, data: Any) -> Trained:
    match_input_normalization(teacher, data.mean, data.std)  # KDLoss calls the teacher itself
    criterion = dist_criterion(root, module, student, teacher)  # it puts the teacher in eval mode (kd_loss.py:45)
    return student, lambda images, targets, epoch: criterion(images, targets)


def loss_training(
    root: Path, row: Row, module: Any, teacher_network: nn.Module, data: CIFAR10DataModule, epochs: int
) -> OfficialTraining:
    """An official loss that runs both networks itself, once per batch in the loop its trainer runs
    (``network.train()``, then per batch: clear the gradients, the loss, backward, the optimiser step; mdistiller
    ``engine/trainer.py:153-169``, DIST_KD ``classification/tools/train.py:257-293`` without its gradient clipping,
    EMA and AMP, off in its CIFAR runs)."""
    assert row.loss is not None
    network, loss = row.loss(root, module, module.student, teacher_network, data)

    def epoch(batches: TrainingEpoch, optimizer: ScheduledOptimizer) -> float:
        network.train()
        total = 0.0
        for images, targets, _ in batches:
            optimizer.zero_grad()
            value = loss(images, targets, batches.epoch)
            value.backward()
            optimizer.step()
            total += float(value.detach())
        return total / len(batches)

    return OfficialTraining(module.student, epoch)


class CpuTorch(types.ModuleType):
    """``torch`` for BSS's script on the CPU: ``torch.rand(...).cuda()`` (``train_BSS_distillation.py:125``) is the
    draw itself; everything else is torch's."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def rand(self, *size: Any, **kwargs: Any) -> Any:
        draws = torch.rand(*size, **kwargs)
        return namespace(cuda=lambda: draws)


class SteppingRecorder:
    """The script's global ``optimizer``: lit-kd's optimiser and schedule, keeping the loss each step applies (read
    from ``train_attack_KD``'s frame, where ``optimizer.step()`` follows ``loss.backward()``, lines 143-144)."""

    def __init__(self) -> None:
        self.optimizer: ScheduledOptimizer | None = None  # set for each epoch
        self.losses: list[float] = []

    def zero_grad(self) -> None:
        assert self.optimizer is not None
        self.optimizer.zero_grad()

    def step(self) -> None:
        assert self.optimizer is not None
        self.losses.append(float(sys._getframe(1).f_locals["loss"].detach()))
        self.optimizer.step()


def one_base_sample(error: IndexError) -> bool:
    """Whether ``error`` is the official BSS code's on a batch with exactly one base sample: raised at
    ``attack_idx.shape[0]`` (``train_BSS_distillation.py:114``), which the squeeze of line 113 made 0-d."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename.endswith(BSS_SCRIPT)]
    return bool(frames) and "attack_idx.shape[0]" in (frames[-1].line or "")


def bss_training(
    root: Path, row: Row, module: Any, teacher_network: nn.Module, data: CIFAR10DataModule, epochs: int
) -> OfficialTraining:
    """BSS's own training function, ``train_attack_KD`` of ``train_BSS_distillation.py`` (lines 77-153, compiled from
    the checkout at their lines by ``parity_bss.official_functions``), with its loss-weight schedule (lines 197-198)
    over this budget's epochs, the official attack (``attacks/attack_BSS.py``, line 71's settings) and lit-kd's
    optimiser; called once per batch (a one-batch ``trainloader``), so that a batch with exactly one base sample,
    where the official code raises (a 0-d ``attack_idx``, lines 113-114), is trained by the official code without its
    attack (``ratio_attack = 0``, from the BN statistics the student had before the failed call) instead of ending
    the run; such batches are counted. Any other error ends the run."""
    mining = BoundarySampleMining()  # gains.py's BSS row: the callback's defaults
    match_input_normalization(teacher_network, data.mean, data.std)  # t_net(inputs): ImageNet-normalised, as lit-kd's
    recorder = SteppingRecorder()
    script = official_script(root, module.temperature, mining, CpuTorch(), recorder)
    counts = {"one_base_sample_batches": 0}  # trained without their attack (see above)

    def epoch(batches: TrainingEpoch, optimizer: ScheduledOptimizer) -> float:
        recorder.optimizer, recorder.losses = optimizer, []
        ratio, attack_ratio = script["official_weights"](batches.epoch + 1, epochs)  # :197-198
        for images, targets, _ in batches:
            script["trainloader"] = [(images, targets)]
            buffers = {name: buffer.clone() for name, buffer in module.student.named_buffers()}
            try:
                script["train_attack_KD"](teacher_network, module.student, ratio, attack_ratio, batches.epoch + 1)
            except IndexError as error:
                if not one_base_sample(error):
                    raise
                counts["one_base_sample_batches"] += 1
                with torch.no_grad():  # undo the failed call's BN update (its forward pass, line 95)
                    for name, buffer in module.student.named_buffers():
                        buffer.copy_(buffers[name])
                script["train_attack_KD"](teacher_network, module.student, ratio, 0, batches.epoch + 1)
        return sum(recorder.losses) / len(recorder.losses)

    return OfficialTraining(module.student, epoch, counts=counts)


@dataclass
class Epochs:
    """What an official run's epochs left: their seconds and mean training losses, the first epoch this process ran
    (later than 0 for a resumed run), and the official lines traced (construction and first epoch)."""

    seconds: list[float]
    train_loss: list[float]
    first: int
    lines: dict[str, set[int]]

    def record(self, args: argparse.Namespace, steps: int, steps_per_epoch: int) -> dict[str, Any]:
        """The run record's fields on time, losses, load and the lines that ran."""
        return {
            "seconds": sum(self.seconds),
            "steps": steps,
            "seconds_per_step_untraced": (
                sum(self.seconds[1:]) / (steps - steps_per_epoch) if len(self.seconds) > 1 else None
            ),
            "train_loss_per_epoch": self.train_loss,
            "load": load_average(),
            "cpu": cpuinfo("model name"),
            "threads": args.threads,
            "resumed_at_epoch": self.first or None,
            "official_lines": {path: sorted(numbers) for path, numbers in sorted(self.lines.items())},
        }


def run_epochs(
    root: Path,
    resume: Path,
    stateful: dict[str, Any],
    epochs: int,
    one_epoch: Callable[[int], float],
    lines: dict[str, set[int]],
    counts: dict[str, int],
) -> Epochs:
    """``one_epoch(epoch)`` (the mean training loss) for the epochs not run yet, the official code's lines traced in
    the first and its printing silenced; after every epoch the state (``stateful``'s state dicts, torch's random
    state, ``counts``, times, losses, lines) is written to ``resume``, from which a stopped run continues as if it
    had not stopped (the batches of an epoch depend only on the seed and the epoch)."""
    seconds, train_loss, first = [], [], 0
    if resume.is_file():
        state = torch.load(resume, map_location="cpu", weights_only=False)
        for key, value in stateful.items():
            value.load_state_dict(state[key])
        torch.set_rng_state(state["rng"])
        counts.update(state["counts"])
        seconds, train_loss, first = state["epoch_seconds"], state["train_loss"], state["epoch"]
        lines = {path: set(numbers) for path, numbers in state["lines"].items()}
    for epoch in range(first, epochs):
        start = time.perf_counter()
        with (
            trace_lines(root if epoch == 0 else None) as executed,
            contextlib.redirect_stdout(io.StringIO()),  # the official code's progress lines
        ):
            train_loss.append(one_epoch(epoch))
        seconds.append(time.perf_counter() - start)
        for path, numbers in executed.items():
            lines.setdefault(path, set()).update(numbers)
        state = {key: value.state_dict() for key, value in stateful.items()}
        state.update(epoch=epoch + 1, rng=torch.get_rng_state(), counts=dict(counts), epoch_seconds=seconds)
        state.update(train_loss=train_loss, lines={path: sorted(numbers) for path, numbers in lines.items()})
        save_state(resume, state)
    return Epochs(seconds, train_loss, first, lines)


def dfad_official_run(args: argparse.Namespace, root: Path, name: str, seed: int, resume: Path) -> dict[str, Any]:
    """DFAD's official ``train()`` (``DFAD_cifar.py:17-52``) once per data-free epoch, for gains.py's DFAD row.

    The epochs as ``main()`` runs them (``DFAD_cifar.py:150-167``): the student's SGD and the generator's Adam at
    lit-kd's defaults (the official ones, ``benchmarks/results/parity.md``), both ``MultiStepLR([100, 200], 0.1)``
    stepped at the start of each epoch (``--scheduler``), then ``train(..., epoch)`` with ``epoch_itrs`` iterations
    of 5 student updates and 1 generator update. Both sides start from the row's weights (``Runner.dfad_module``:
    its student, and its generator copied by position into the official ``network/gan.py: GeneratorA``, of which
    lit-kd's ``DFADGenerator`` is a port) and draw the row's latent batches (``Runner.dfad_data`` of the seed, epoch
    by epoch, handed to the official ``torch.randn`` in order, ``parity_dfad.InjectedNoise``). The official teacher
    is the adapted ResNet-56 itself (never frozen, as ``DFAD_cifar.py:137-148`` leaves it), fed the generated images
    converted to its normalisation as lit-kd converts them. Resumable after every epoch, as :func:`official_run`."""
    runner = Runner(args, seed)
    data, module = runner.dfad_data(), runner.dfad_module()
    if data.data_seed != seed:
        raise RuntimeError(f"seed {seed}: the latent batches would be drawn from seed {data.data_seed}")
    student, student_start = module.student, weights_hash(module.student)
    teacher = runner.adapted_teacher().requires_grad_(True).eval()  # never frozen, in eval mode (DFAD_cifar.py:148)
    match_input_normalization(teacher, data.mean, data.std)
    budget = runner.budget(name)
    epochs, per_epoch = args.dfad_epochs, args.dfad_batches_per_epoch
    steps_per_iteration = GeneratorUpdateSchedule().steps_per_iteration  # 5 student + 1 generator (the row's)
    if per_epoch % steps_per_iteration:
        raise ValueError(f"--dfad-batches-per-epoch {per_epoch} is not a whole number of official iterations")
    script, gan = dfad_official_script(root)
    with trace_lines(root) as lines:
        generator = gan.GeneratorA(
            nz=DFAD_GENERATOR["latent_dim"], ngf=DFAD_GENERATOR["base_channels"], nc=3, img_size=32
        )  # DFAD_cifar.py:139
        for target, source in zip(generator.state_dict().values(), module.generator.state_dict().values(), strict=True):
            copy_into(target, source)
    sgd = module.optimizer_factory(student.parameters()).param_groups[0]  # lit-kd's defaults: the official values
    adam = module.generator_optimizer_factory(generator.parameters()).param_groups[0]
    optimizer_s = torch.optim.SGD(
        student.parameters(), lr=sgd["lr"], weight_decay=sgd["weight_decay"], momentum=sgd["momentum"]
    )  # DFAD_cifar.py:150
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=adam["lr"])  # DFAD_cifar.py:151
    schedulers = [torch.optim.lr_scheduler.MultiStepLR(o, [100, 200], 0.1) for o in (optimizer_s, optimizer_g)]
    stateful = {"student": student, "generator": generator, "optimizer_s": optimizer_s, "optimizer_g": optimizer_g}
    stateful.update(scheduler_s=schedulers[0], scheduler_g=schedulers[1])
    flags = namespace(
        batch_size=data.batch_size, nz=DFAD_GENERATOR["latent_dim"], epoch_itrs=per_epoch // steps_per_iteration
    )
    flags.log_interval = 1  # every iteration's losses (the official default logs every 10th)
    loader = data.train_dataloader()

    def one_epoch(epoch: int) -> float:
        loader.sampler.set_epoch(epoch)  # the row's latent batches of this epoch (as Lightning sets the epoch)
        noise, log = InjectedNoise(list(loader)), LossLog()
        with mock.patch.multiple(script, torch=noise, vp=log):
            for scheduler in schedulers:  # DFAD_cifar.py:163-165, before the epoch's training
                scheduler.step()
            script.train(flags, teacher, student, generator, torch.device("cpu"), [optimizer_s, optimizer_g], epoch + 1)
        if noise.drawn != per_epoch:
            raise RuntimeError(f"the official code drew {noise.drawn} latent batches in an epoch, the row {per_epoch}")
        return statistics.mean(log.scalars["Loss_S"])

    run = run_epochs(root, resume, stateful, epochs, one_epoch, lines, {})
    (metrics,) = quiet_trainer(accelerator="cpu").test(SupervisedModule(student), data, verbose=False)
    commit = checkout_commit(root)
    return {
        "acc": float(metrics["test/acc"]),
        **run.record(args, epochs * per_epoch, per_epoch),
        "teacher_weights": weights_hash(teacher),  # never stepped: gains.py's hash of the teacher
        "reference": ROWS[name].reference,
        "reference_commit": commit,
        "code_commits": [commit] if commit else [],
        "seed": seed,
        "budget": budget,
        "student_init": student_start,
        "flags": vars(flags),
    }


REPDISTILLER_LOOP = "`helper/loops.py: train_distill`, once per epoch"
MDISTILLER_LOOP = "the distiller's `forward_train` once per batch in `engine/trainer.py: train_iter`'s steps"
ROWS = {  # RepDistiller's criteria as train_student.py:183-186, 199-200 builds them
    "Hinton KD": Row(
        HintonKD,
        "RepDistiller",
        REPDISTILLER_LOOP,
        repdistiller_training,
        lambda root, m: import_official(root, "distiller_zoo/KD.py").DistillKL(m.temperature),
    ),
    "FitNets": Row(
        FitNets,
        "RepDistiller",
        REPDISTILLER_LOOP,
        repdistiller_training,
        lambda root, m: import_official(root, "distiller_zoo/FitNet.py").HintLoss(),
        regressor=True,
    ),
    "AT": Row(
        AttentionTransfer,
        "RepDistiller",
        REPDISTILLER_LOOP,
        repdistiller_training,
        lambda root, m: import_official(root, "distiller_zoo/AT.py").Attention(p=int(m.p)),
    ),
    "BSS": Row(
        BSSDistillation,
        "BSS_distillation",
        "`train_BSS_distillation.py: train_attack_KD` once per batch, its weight schedule over the budget",
        bss_training,
    ),
    "DKD": Row(DecoupledKD, "mdistiller", MDISTILLER_LOOP, loss_training, loss=mdistiller_official(mdistiller_dkd)),
    "DIST": Row(
        DISTDistillation,
        "DIST_KD",
        "`KDLoss(input, target)` once per batch in `tools/train.py: train_epoch`'s steps",
        loss_training,
        loss=dist_kd_official,
    ),
    "KD + LS": Row(
        lambda s, t, **kw: HintonKD(s, t, **LOGIT_STANDARDISATION, **kw),
        "logit-standardization-KD",
        MDISTILLER_LOOP,
        loss_training,
        loss=mdistiller_official(mdistiller_ls_kd),
    ),
    DFAD_ROW: Row(
        DataFreeAdversarialDistillation,
        DFAD_REFERENCE,
        "`DFAD_cifar.py: train` once per data-free epoch, with `main()`'s optimisers and `--scheduler`",
        None,
        run=dfad_official_run,
    ),
}


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` whole or not at all (a stop while writing leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)


def official_run(args: argparse.Namespace, root: Path, name: str, seed: int, resume: Path) -> dict[str, Any]:
    """Train row ``name``'s student for seed ``seed`` with its official code (``Row.training``); test its last
    weights. Resumable after every epoch (:func:`run_epochs`: what the optimiser steps, the optimiser, the schedule,
    torch's random state and the official code's counts are its state)."""
    row, runner = ROWS[name], Runner(args, seed)
    assert row.training is not None
    # the student as gains.py's row builds it: the same seed before the same constructor gives the same weights
    module = runner.seeded(lambda: row.module(create_model("resnet8", 10), runner.teacher(), **runner.teacher_kwargs()))
    student_start = weights_hash(module.student)
    data, subset = checked_data(args, runner, seed)
    teacher_network = runner.adapted_teacher()
    data.return_indices = True  # the batches carry the sample indices (train_distill unpacks them); same draws
    loader = data.train_dataloader()
    with trace_lines(root) as lines:
        official = row.training(root, row, module, teacher_network, data, args.epochs)
    optimizer = module.build_optimizer(module.optimizer_factory, official.trainable.parameters())
    steps = args.epochs * len(loader)
    schedule = with_lr_schedule(optimizer, module.lr_scheduler_factory, namespace(estimated_stepping_batches=steps))
    if module.lr_scheduler_factory is not None or schedule["lr_scheduler"]["interval"] != "step":
        raise ValueError(f"{name}: only lit-kd's default schedule (cosine, stepped per optimiser step) is replicated")
    stepped = ScheduledOptimizer(optimizer, schedule["lr_scheduler"]["scheduler"])

    def one_epoch(epoch: int) -> float:
        with mock.patch("torch.cuda.is_available", return_value=False):  # lit-kd's rows ran on the CPU
            return official.epoch(TrainingEpoch(data, loader, epoch), stepped)

    stateful = {"trainable": official.trainable, "optimizer": optimizer, "scheduler": stepped.scheduler}
    run = run_epochs(root, resume, stateful, args.epochs, one_epoch, lines, official.counts)
    (metrics,) = quiet_trainer(accelerator="cpu").test(SupervisedModule(module.student), data, verbose=False)
    return {
        "acc": float(metrics["test/acc"]),
        **run.record(args, steps, len(loader)),
        "teacher_weights": weights_hash(teacher_network),  # gains.py's hash of the teacher (Runner.teacher_weights)
        "reference": row.reference,
        "reference_commit": checkout_commit(root),
        # the commits of the code that ran (DIST_KD's loss is in a submodule: its own commit)
        "code_commits": sorted({commit for path in run.lines if (commit := checkout_commit((root / path).parent))}),
        "seed": seed,
        "subset": args.subset,
        "epochs": args.epochs,
        "subset_hash": subset,
        "subset_verified": True,  # against expected_subset_hash, or the run raised
        "student_init": student_start,
        "flags": official.flags,
        **official.counts,
    }


# ------------------------------------------------------------------------------------------------ pairing and report
def refused_settings(lit_settings: dict[str, str], settings: dict[str, str]) -> list[str]:
    """The budget settings on which gains.py's results and this campaign differ (none: they may be paired)."""
    differ = [
        f"{key}: {lit_settings.get(key)} vs {settings[key]}"
        for key in PAIRED_SETTINGS
        if lit_settings.get(key) != settings[key]
    ]
    if lit_settings.get("val_size", "0") != "0":
        differ.append(f"val_size: {lit_settings['val_size']} training images held out vs none")
    return differ


def pairs(official: dict[str, dict], lit_kd: dict[str, Any], name: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Seed by seed, ``{"official": ..., "lit-kd": ...}`` results for row ``name``, and why a seed is not paired."""
    paired, unpaired = {}, {}
    refused = refused_settings(
        lit_kd["settings"], {key: str(value) for key, value in official.get("settings", {}).items()}
    )
    for seed, rows in sorted(official["results"].items()):
        run, lit = rows.get(name), lit_kd["results"].get(seed, {}).get(name)
        if run is None:
            continue
        if lit is None:
            unpaired[seed] = "no lit-kd row yet"
        elif refused:
            unpaired[seed] = "settings differ: " + "; ".join(refused)
        elif lit.get("budget") != run.get("budget"):  # a row with a budget of its own (DFAD): the same one
            unpaired[seed] = f"budget differs: {lit.get('budget')} vs {run.get('budget')}"
        elif lit["teacher_weights"] != run["teacher_weights"]:
            unpaired[seed] = f"teacher differs: {lit['teacher_weights']} vs {run['teacher_weights']}"
        else:
            paired[seed] = {"official": {"acc": run["acc"]}, "lit-kd": {"acc": lit["acc"]}}
    return paired, unpaired


def summary(official: dict[str, dict], lit_kd: dict[str, Any]) -> list[dict[str, Any]]:
    """Per method: per-seed accuracies, lit-kd minus official (mean, 95% interval) and whether the target holds."""
    rows = []
    for name in ROWS:
        paired, unpaired = pairs(official, lit_kd, name)
        if not paired and not unpaired:
            continue
        differences, mean, half_width = paired_interval(paired, "lit-kd", "official")
        n = len(differences)
        low, high = mean - half_width, mean + half_width
        met = abs(mean) <= TARGET_POINTS and low <= 0 <= high if n > 1 else None
        rows.append(
            {
                "method": name,
                "seeds paired": ", ".join(paired) or "-",
                "official % (per seed)": ", ".join(f"{100 * p['official']['acc']:.2f}" for p in paired.values()),
                "lit-kd % (per seed)": ", ".join(f"{100 * p['lit-kd']['acc']:.2f}" for p in paired.values()),
                "lit-kd − official (points)": f"{mean:+.2f}" if n else "-",
                "95% interval": f"[{low:+.2f}, {high:+.2f}]" if n > 1 else "-",
                "target met": "not measured" if met is None else "yes" if met else "no",
                "not paired": "; ".join(f"seed {seed}: {why}" for seed, why in unpaired.items()) or "-",
            }
        )
    return rows


def official_lines(official: dict[str, dict]) -> dict[str, dict[str, str]]:
    """Per method, the official lines that ran (the first epoch and the construction), over every seed run."""
    lines: dict[str, dict[str, set[int]]] = {}
    for rows in official["results"].values():
        for name, run in rows.items():
            for path, numbers in run["official_lines"].items():
                lines.setdefault(name, {}).setdefault(path, set()).update(numbers)
    return {name: {path: line_ranges(numbers) for path, numbers in paths.items()} for name, paths in lines.items()}


def dfad_budgets(payload: dict[str, Any]) -> str:
    """DFAD's own data-free budgets in the runs (it reads no training image: the budget above is not its)."""
    budgets = {
        json.dumps(run[DFAD_ROW]["budget"], sort_keys=True)
        for run in payload["results"].values()
        if DFAD_ROW in run and "budget" in run[DFAD_ROW]
    }
    if not budgets:
        return ""
    shown = "; ".join(
        "{dfad_epochs} data-free epochs of {dfad_batches_per_epoch} updates, batch {dfad_batch_size}".format(
            **json.loads(budget)
        )
        for budget in sorted(budgets)
    )
    return f" DFAD reads no training image: its runs' own budget is {shown}, paired only with rows of that budget."


def report(rows: list[dict[str, Any]], payload: dict[str, Any]) -> str:
    """The markdown file: the table, what was paired with what, the official lines that ran, what is not equal."""
    settings, lit_file = payload["settings"], payload["lit_kd_results"]
    official_code = {}  # method -> what of which checkout ran
    for seed_runs in payload["results"].values():
        for name, run in seed_runs.items():
            commits = official_code.setdefault(name, (run["reference"], set()))[1]
            commits.update(run.get("code_commits") or [run["reference_commit"] or "(unknown commit)"])
    lines = [
        "# Outcome parity with the official code",
        "",
        markdown_table(rows) if rows else "No official run yet.",
        "",
        f"Test accuracy of the last weights on the full CIFAR-10 test split (lit-kd's top-1), ResNet-8 students of the "
        f"adapted ResNet-56, {settings['subset']} class-balanced training images, {settings['epochs']} epochs, batch "
        "128, lit-kd's SGD and per-step cosine schedule on both sides, the same batches and initial weights per seed. "
        f"lit-kd side: gains.py's rows of the same names in `{lit_file['file']}` (settings: subset "
        f"{lit_file['settings'].get('subset')}, epochs {lit_file['settings'].get('epochs')}), paired seed by seed "
        "where subset, epochs, held-out split and teacher hash agree. Target: |mean| <= "
        f"{TARGET_POINTS:g} point and the 95% interval (Student's t) holds 0." + dfad_budgets(payload),
        "",
        "| method | official code | commit | s per official step (untraced epochs, mean) |",
        "|---|---|---|---|",
    ]
    for name, (reference, commits) in official_code.items():
        per_step = [
            run[name]["seconds_per_step_untraced"]
            for run in payload["results"].values()
            if run.get(name, {}).get("seconds_per_step_untraced")
        ]
        seconds = f"{statistics.mean(per_step):.3f}" if per_step else "-"
        lines.append(f"| {name} | {reference}: {ROWS[name].official} | {', '.join(sorted(commits))} | {seconds} |")
    lines.append("")
    one_base = {
        seed: runs["BSS"]["one_base_sample_batches"] for seed, runs in payload["results"].items() if "BSS" in runs
    }
    if one_base:
        lines += [
            "BSS: batches with exactly one base sample, where the official code raises, trained by it without their "
            "attack: " + ", ".join(f"seed {seed}: {count}" for seed, count in sorted(one_base.items())) + ".",
            "",
        ]
    lines += ["## Official lines that ran (first epoch and construction)", ""]
    for name, paths in official_lines(payload).items():
        lines.append(f"- {name}: " + "; ".join(f"`{path}:{ranges}`" for path, ranges in paths.items()))
    lines += ["", "## What is not the same on both sides", ""] + [f"- {note}." for note in NOT_EQUAL]
    return "\n".join(lines)


#: what the two sides do differently besides the loss code, and why it stays so
NOT_EQUAL = [
    "lit-kd runs the teacher as its BN-folded inference copy (the rows that read only its logits, Hinton KD, DKD, "
    "DIST and KD + LS: its memoised float32 logits, keyed by sample and crop/flip view); the official code runs the "
    "teacher itself: the logits agree to float32 rounding (5.4e-7 for the ResNet-14 teacher of "
    "benchmarks/results/parity.md). Rounding (this, and the two loss codes' orders of operations) is all that "
    "separates the two trajectories, and over thousands of steps it grows into seed-like differences: hence several "
    "seeds and an interval, not one run",
    "DKD, DIST and KD + LS: the official loss code runs, but not the official trainers' loops, which are restated "
    "in four lines (`loss_training`: clear the gradients, the loss, backward, the optimiser step; cited there): "
    "mdistiller's and DIST_KD's trainers need CUDA, their configs and loggers. DIST_KD's gradient clipping and mixed "
    "precision (off by default: `classification/lib/utils/args.py:45,49`) and EMA (off: "
    "`configs/strategies/distill/dist_cifar.yaml:17`) are not restated",
    "BSS: the official attack clamps the boundary samples to [-2.5, 2.5] in the data's normalisation "
    "(`attacks/attack_BSS.py:72`, hard-coded), lit-kd to the data's image range (its default; "
    "benchmarks/results/parity.md lists it as the one default that differs); the official code runs the plain "
    "teacher (with gradients, discarded), lit-kd its BN-folded copy and memoised clean logits; the target classes "
    "are drawn from other random streams (`torch.rand`, line 125, against lit-kd's `torch.multinomial`); a batch "
    "with exactly one base sample, where the official code raises (lines 113-114), is trained by it without its "
    "attack and counted (`one_base_sample_batches`)",
    "FitNets: RepDistiller's ConvReg convolution has a bias (lit-kd's none); its gradient is zero behind the "
    "BatchNorm, so only weight decay moves it, and the BatchNorm cancels it either way",
    "lit-kd keeps the student in channels-last memory format on the CPU (its default speed option); the official "
    "side's student is contiguous: the same values, other summation orders",
    "DFAD: its own data-free budget (the row's, recorded with each run: the epochs, batch and 32-channel generator "
    "of gains.py's DFAD row, not the official 500 epochs, batch 256 and 64 channels); the official side runs the "
    "adapted ResNet-56 itself with its parameters' gradients on (never frozen, `DFAD_cifar.py:137-148`), the "
    "official optimisers (`:150-151`, at lit-kd's defaults, which are the official ones) and the official "
    "`MultiStepLR([100, 200])` stepped before each epoch (`:153-165`; no drop within a shorter budget), and the "
    "official `network/gan.py: GeneratorA` with the row's generator weights copied in by position",
    "both sides use lit-kd's zoo ResNet-8 and ResNet-56, lit-kd's data pipeline and lit-kd's optimiser and schedule, "
    "not RepDistiller's own networks, DataLoader or step-decay schedule (lr 0.05, decay at 150/180/210 of 240 "
    "epochs): what is compared is the code that computes and applies the loss",
]


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (``benchmarks/results/...``), else as given."""
    repository = Path(__file__).resolve().parents[1]
    resolved = path.resolve()
    return str(resolved.relative_to(repository)) if resolved.is_relative_to(repository) else str(path)


def stored_results(partial: Path, settings: dict[str, str]) -> dict[str, dict]:
    """The finished runs in ``partial`` (a file from other settings is set aside first, as gains.py does)."""
    set_aside_other_settings(partial, settings)
    return json.loads(partial.read_text())["results"] if partial.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_runner_arguments(parser)  # gains.py's: --data-dir, --weights-dir, --teacher-checkpoint, --cache-dir, ...
    add_dfad_arguments(parser)  # and the DFAD row's data-free budget
    parser.add_argument(
        "--reference",
        nargs="+",
        action="extend",
        required=True,
        metavar="NAME=DIR",
        help="the checkouts the --methods read: " + ", ".join(sorted({f"{r.reference}=DIR" for r in ROWS.values()})),
    )
    parser.add_argument("--epochs", type=int, default=60, help="the budget of --lit-kd-results' rows")
    parser.add_argument("--methods", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lit-kd-results", type=Path, default=DEFAULT_LIT_KD_RESULTS, help="gains.py's partial file")
    parser.add_argument("--name", default="outcome_parity", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--partial-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--commit", action="store_true", help="git-commit the partial results after every run")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("runs/outcome_parity"), help="each run's state after every epoch"
    )
    parser.add_argument("--summarize-only", action="store_true", help="run nothing: pair and tabulate")
    args = parser.parse_args()
    references = parse_references(args.reference)
    missing = sorted({ROWS[name].reference for name in args.methods} - set(references))
    if missing and not args.summarize_only:
        raise SystemExit(
            f"--methods {' '.join(args.methods)} read these checkouts too: --reference "
            + " ".join(f"{reference}=DIR" for reference in missing)
        )
    quiet_benchmark(args.threads)
    warnings.filterwarnings("ignore")  # the official code's size_average deprecation, Lightning's data warnings
    os.environ["LIT_KD_TEACHER_PRECISION"] = "32"  # as gains.py's rows and the official teacher: float32
    args.val_size, args.overrides = 0, {}  # gains.py's Runner: no held-out split, the modules' defaults
    lit_kd = json.loads(args.lit_kd_results.read_text())
    settings = {
        **{key: str(getattr(args, key)) for key in ("data_dir", "weights_dir", "teacher_checkpoint", "cache_dir")},
        **{key: str(getattr(args, key)) for key in (*PAIRED_SETTINGS, "name")},
    }  # each run records its checkout's commit
    refused = refused_settings(lit_kd["settings"], settings)
    if refused and not args.summarize_only:
        raise SystemExit(f"{args.lit_kd_results} was run at other settings ({'; '.join(refused)}): nothing to pair")
    partial = args.partial_dir / f"{args.name}.partial.json"
    if args.summarize_only:
        if not partial.is_file():
            raise SystemExit(f"--summarize-only: no runs to tabulate ({partial} does not exist)")
        stored = json.loads(partial.read_text())
        settings, results = stored["settings"], stored["results"]
    else:
        results = stored_results(partial, settings)
    for name in [] if args.summarize_only else args.methods:
        for seed in args.seeds:
            if name in results.get(str(seed), {}):
                continue
            resume = args.output_dir / "resume" / run_id(args.name, settings) / f"seed {seed}" / f"{name}.pt"
            run = (ROWS[name].run or official_run)(args, references[ROWS[name].reference], name, seed, resume)
            print(f"seed {seed}: {name} (official loop): {100 * run['acc']:.2f}% in {run['seconds']:.0f} s", flush=True)
            results = save_seed(partial, settings, str(seed), {**results.get(str(seed), {}), name: run})
            resume.unlink()  # the run is recorded
            if args.commit:
                commit_partial(partial, f"outcome parity {args.name}: seed {seed}, {name} (official loop)")
    official = {"settings": settings, "results": results}
    payload = {
        "settings": settings,
        "references": {name: {"path": str(root), "commit": checkout_commit(root)} for name, root in references.items()},
        "lit_kd_results": {"file": shown_path(args.lit_kd_results), "settings": lit_kd["settings"]},
        "results": results,
    }
    rows = summary(official, lit_kd)
    payload["rows"] = rows
    payload["official_lines"] = official_lines(payload)
    write_results(args.name, payload, report(rows, payload))


if __name__ == "__main__":
    run_stoppable(main)
