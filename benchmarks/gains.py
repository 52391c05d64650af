"""Does distillation make a better student? Every method against its baseline on the real CIFAR-10 test split.

One CPU-feasible budget for every row, recorded in the results: ``--subset`` class-balanced training images for
``--epochs`` epochs, batch 128, SGD 0.1 (Nesterov, weight decay 5e-4) with cosine annealing: lit-kd's defaults, the
same for every method, so rows differ only by the method. Each seed seeds the run *and* the data (the subset, the
order, the augmentation: the DataModule takes the run's seed). Settings are the papers' / official code's defaults
(lit-kd's module defaults); nothing is tuned, on the test split or anywhere else. Every student is tested with its
last weights (no checkpoint is chosen), on the full 10,000-image test split.

Rows (student ResNet-8 unless said; baselines trained alone at the same budget and seed):

* teacher-based (Hinton KD, BSS, FitNets, AT, AMA): the pretrained ResNet-56 adapted to the data
  (``--teacher-checkpoint``, from ``recipes/cifar10/adapt_pretrained_resnet56.yaml``) -> ResNet-8; baseline ResNet-8;
* ensemble distillation: the four pretrained ResNets (20/32/44/56) as the ensemble (its own accuracy is reported;
  its logits memoised in their own file, as the adapted teacher's are for the logit rows);
* self-distillation: one born-again generation taught by its vanilla parent (the baseline run of the same seed), from
  its own initialisation (seed + 1) on its parent's data;
* online (DML, AFD with both update schemes, AFD's 3-network cycle): ResNet-8 + ResNet-14 (+ ResNet-20); each network
  against the same network trained alone;
* DFAD: ResNet-8 from the adapted teacher without a real training image, as a share of the teacher's accuracy and
  against the untrained student;
* cGAN-KD with 10% of the labels: Hinton KD on the real 10% against Hinton KD on the real 10% plus filtered
  synthetic images (a class-conditional GAN trained on the 10% for ``--gan-steps`` steps).

Per row: per-seed accuracies, mean and std, the paired difference to the baseline with its 95% interval (Student's
t), and the mean wall time. Writes ``benchmarks/results/gains.{json,md}``. With ``--wandb`` every run is logged to
one W&B project, grouped by method and tagged with its seed and role (baseline / method).

    python benchmarks/gains.py --data-dir ~/data \
        --teacher-checkpoint checkpoints/cifar10/adapt_pretrained_resnet56/last.ckpt

A run stopped part-way (a session's end, a kill) loses at most one epoch: each fit writes ``last.ckpt`` after every
epoch under ``--output-dir``/resume (one folder per results file, settings and seed) and the same command continues it
from there, exactly (``tests/test_gains.py``); the row then records ``resumed_at_steps`` and the seconds of every
part. The row's folders are removed once it is in the partial file.

Every row the adapted teacher teaches records the hash of its weights (``teacher_weights``), so that a table continued
in another session can show it used the same teacher: a run of such rows whose ``--teacher-checkpoint`` hashes
otherwise than the file's rows stops before it trains (:func:`check_teacher`), and a row whose checkpoint changed while
it trained (a teacher still being re-made) is not recorded. The rows it does not teach (``TEACHER_FREE_ROWS``: the
vanilla, ensemble, born-again and online rows) record no hash and run beside any teacher; a table started on another
teacher copies them from the first (``--teacher-free-rows-from``, :func:`carry_teacher_free_rows`) instead of training
them again.

The adaptation run is deterministic on a given CPU, not across CPUs: on an AMD AVX-512 CPU it gives other weights (hash
a96c3ef9b3ddc827 against 841f9beccf41549c, 2026-12-04) unless ATen and oneDNN are held to AVX2, which reproduces the
AVX2 machines' teacher bit for bit:
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 lit-kd fit --config recipes/cifar10/adapt_pretrained_resnet56.yaml``.
On an Intel Xeon with AVX-512 (2026-12-07) the same command gives d0aba100d41e8e5e; with MKL held to AVX2 as well
(``MKL_ENABLE_INSTRUCTIONS=AVX2``; ``MKL_CBWR=AVX2`` gave the same losses for the steps it ran) aa99c7772dabc062, and
with ``MKL_ENABLE_INSTRUCTIONS=SSE4_2`` 2bac690c525bcfd9 (``AVX``: the same losses as ``SSE4_2`` for the steps it
ran), with ``MKL_CBWR=COMPATIBLE`` aabc5d4f8ad7a97a: there the taught rows cannot join this table unless the teacher's
weights are brought from an AMD machine (``--teacher-checkpoint`` takes any file of them; the path is not part of the
table's identity, :data:`PATH_OPTIONS`). Those four re-made teachers are other networks, not the same one rounded
otherwise: 89.06-89.30% on the test split, and any two of them disagree on 0.9-1.2% of its images
(``benchmarks/teacher_remake.py``, ``benchmarks/results/teacher_remake.md``). The first of them is committed
(``benchmarks/teachers/``): a table it teaches continues on any CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from common import cpuinfo, load_average, markdown_table, quiet_benchmark, quiet_trainer, run_stoppable, write_results

from lit_kd.callbacks import BoundarySampleMining, CyclicPairSchedule, ResumableCheckpoint
from lit_kd.checkpointing import load_network_weights
from lit_kd.data import CIFAR10DataModule, DataFreeDataModule
from lit_kd.methods import (
    ActivationMapAdaptation,
    AttentionTransfer,
    BSSDistillation,
    ConditionalGAN,
    ContrastiveRepresentationDistillation,
    DataFreeAdversarialDistillation,
    DecoupledKD,
    DeepMutualLearning,
    DISTDistillation,
    EnsembleDistillation,
    FitNets,
    HintonKD,
    OnlineAdversarialFeatureKD,
    SelfDistillation,
    SupervisedModule,
)
from lit_kd.models import ConditionalGenerator, DFADGenerator, PretrainedNetwork, ProjectionDiscriminator, create_model
from lit_kd.runtime.memo import weights_hash

#: the born-again row; the same row under ``[student initialised as its parent]`` is its ablation (rows recorded before
#: 2026-12-07 started the student from its parent's initial weights, see ``Runner.self_distillation``)
SELF_DISTILLATION = "self-distillation (born-again, 1 generation)"
SELF_DISTILLATION_SAME_INIT = f"{SELF_DISTILLATION} [student initialised as its parent]"
#: the adapted teacher's own test accuracy, recorded as a row
TEACHER_ROW = "teacher (adapted ResNet-56)"


class TrainingClock(pl.Callback):
    """Seconds of a fit, across stops: the seconds up to the last checkpoint travel in it and are added on resume.

    The time a stopped run spent after its last checkpoint (the end of an epoch; the step reached, on SIGTERM) is
    not counted: that part is trained again.
    """

    def __init__(self) -> None:
        self.start, self.before = time.perf_counter(), 0.0

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.before = state_dict["seconds"]


#: two-sided 95% quantiles of Student's t by degrees of freedom
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


class Runner:
    """Builds the data, trains and tests, for one seed; remembers what the rows share (baselines, the teacher)."""

    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        self.args, self.seed = args, seed
        self.results: dict[str, Any] = {}
        self.validation: dict[str, float] = {}  # the last fit's held-out accuracy (with --val-size)
        self.resumed: dict[str, int] = {}  # this row's fits that continued a stopped run: the step each resumed at
        self.folders: list[Path] = []  # this row's fits' checkpoint folders (removed once the row is recorded)

    def key(self, name: str) -> str:
        """The name a row is recorded under: ``AT [beta=100]`` when ``--set`` changes its settings."""
        settings = self.args.overrides.get(name)
        return f"{name} [{', '.join(f'{k}={v}' for k, v in settings.items())}]" if settings else name

    def kwargs(self, name: str, part: str = "") -> dict[str, Any]:
        """The settings ``--set`` gives row ``name``: the module's, or with ``part`` those of ``part.KEY`` (BSS's
        ``mining.max_samples``: its mining callback's). None by default: the defaults."""
        settings = self.args.overrides.get(name, {})
        if part:
            return {key.removeprefix(f"{part}."): v for key, v in settings.items() if key.startswith(f"{part}.")}
        return {key: value for key, value in settings.items() if "." not in key}

    # -------------------------------------------------------------------------------------------- helpers
    def data(self, **overrides: Any) -> CIFAR10DataModule:
        options = dict(batch_size=128, eval_batch_size=500, subset_size=self.args.subset, cache_dir=self.args.cache_dir)
        options["val_size"] = self.args.val_size  # held out before the subset is drawn (0: none)
        return CIFAR10DataModule(self.args.data_dir, **{**options, **overrides})

    def logger(self, method: str, role: str) -> Any:
        if not self.args.wandb:
            return False
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(
            project=self.args.wandb_project,
            group=method,
            name=f"{method} seed {self.seed} ({role})",
            tags=[f"seed={self.seed}", role],
            save_dir=str(self.args.output_dir),
            reinit=True,
        )

    def fit_test(
        self,
        module: pl.LightningModule,
        method: str,
        role: str = "method",
        data: Any = None,
        callbacks: tuple = (),
        epochs: int | None = None,
        **trainer: Any,
    ) -> tuple[dict, float]:
        """Train ``module`` (seeded) and test its last weights: (test metrics, seconds of training)."""
        logger = self.logger(method, role)
        data = data if data is not None else self.data()
        seconds = self.fit(
            module, method, role, data, callbacks, max_epochs=epochs or self.args.epochs, logger=logger, **trainer
        )
        self.validation = {}
        if self.args.val_size and getattr(data, "val_size", 0):  # the last weights on the held-out split
            (held_out,) = quiet_trainer(accelerator="cpu", logger=False).validate(module, data, verbose=False)
            self.validation = {key.replace("/", "_"): float(value) for key, value in held_out.items()}
        (metrics,) = quiet_trainer(accelerator="cpu", logger=logger).test(module, data, verbose=False)
        if logger:
            logger.experiment.finish()
        return {key: float(value) for key, value in metrics.items()}, seconds

    def fit(
        self, module: pl.LightningModule, method: str, role: str, data: Any, callbacks: tuple = (), **trainer: Any
    ) -> float:
        """Train ``module`` (resuming a stopped fit of this row, ``method`` and ``role``): seconds of training."""
        options = dict(logger=False, limit_val_batches=0)
        clock, saving, last = TrainingClock(), [], None
        if self.resume_dir() is not None:  # last.ckpt after every epoch: a stopped row resumes from its last epoch
            folder = self.resume_dir() / f"{method} ({role})".replace("/", "-")
            self.folders.append(folder)
            last = folder / "last.ckpt" if (folder / "last.ckpt").is_file() else None
            if last is not None:  # where it resumes: the step its last checkpoint holds
                self.resumed[folder.name] = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
                print(f"seed {self.seed}: {folder.name} resumes at step {self.resumed[folder.name]}", flush=True)
            saving = [ResumableCheckpoint(dirpath=folder, save_last=True, save_top_k=0, save_on_train_epoch_end=True)]
            options["enable_checkpointing"] = True
        fit = quiet_trainer(accelerator="cpu", callbacks=[*callbacks, clock, *saving], **{**options, **trainer})
        fit.fit(module, data, ckpt_path=last)
        return clock.seconds()

    def resume_dir(self) -> Path | None:
        """Where this seed's fits keep their last epoch until the row is recorded (``None``: not kept).

        One folder per results file, budget and ``--set`` settings (``args.run_id``) and seed, so a fit resumes only
        a fit of the same row at the same settings; :func:`main` removes a row's fit folders once it is recorded.
        """
        run_id = getattr(self.args, "run_id", None)
        return None if run_id is None else self.args.output_dir / "resume" / run_id / f"seed {self.seed}"

    def seeded(self, build: Callable[[], Any], seed: int | None = None) -> Any:
        """``build()`` after seeding with ``seed`` (by default the row's: the run, and so the data, take it)."""
        pl.seed_everything(self.seed if seed is None else seed, verbose=False)
        return build()

    def teacher(self, name: str = "cifar10_resnet56") -> PretrainedNetwork:
        return PretrainedNetwork(name, weights_dir=self.args.weights_dir)

    def adapted_teacher(self) -> PretrainedNetwork:
        """The teacher with the adapted weights of ``--teacher-checkpoint`` loaded (for use outside a method)."""
        teacher = self.teacher()
        if self.args.teacher_checkpoint:
            load_network_weights(teacher, self.args.teacher_checkpoint)
        return teacher

    def teacher_weights(self) -> str:
        """The hash of the adapted teacher's weights (:func:`lit_kd.runtime.memo.weights_hash`), computed once."""
        if not hasattr(self, "_teacher_weights"):
            self._teacher_weights = weights_hash(self.adapted_teacher())
        return self._teacher_weights

    def teacher_kwargs(self) -> dict[str, Any]:
        return {"teacher_checkpoint": self.args.teacher_checkpoint} if self.args.teacher_checkpoint else {}

    def memo_kwargs(self, teacher: str = "") -> dict[str, Any]:
        """The memo of ``teacher``'s logits, for the rows that only read them (one file per teacher, shared by every
        seed and row: the first run fills it, later ones read the views it holds). By default the adapted teacher's,
        named with its weights' hash: tables of two teachers can share ``--output-dir``."""
        if self.args.no_teacher_memo:
            return {}
        teacher = teacher or f"adapted_resnet56_{self.teacher_weights()}"
        return {"teacher_memo": str(self.args.output_dir / f"teacher_memo_{teacher}.safetensors")}

    def record(self, name: str, accuracy: float, seconds: float, **extra: Any) -> None:
        taught = name not in TEACHER_FREE_ROWS  # only the rows the adapted teacher teaches carry its hash
        if taught and weights_hash(self.adapted_teacher()) != self.teacher_weights():  # replaced mid-run
            raise SystemExit(
                f"seed {self.seed}: {name}: --teacher-checkpoint changed while the row ran (hash "
                f"{self.teacher_weights()} when it started): not recorded; run it again"
            )
        self.results[self.key(name)] = {
            "acc": accuracy,
            **{k: v for k, v in self.validation.items() if k.startswith("val_acc")},
            "seconds": seconds,
            "load": load_average(),
            "cpu": cpuinfo("model name"),  # float32 rounding, and so the numbers, depend on the CPU's kernels
            "threads": self.args.threads,
            **({"teacher_weights": self.teacher_weights()} if taught else {}),  # a re-made teacher must match it
            **({"resumed_at_steps": self.resumed} if self.resumed else {}),
            **extra,
        }
        self.resumed = {}
        print(f"seed {self.seed}: {name}: {100 * accuracy:.2f}% in {seconds:.0f} s", flush=True)

    # ----------------------------------------------------------------------------------------- baselines
    def vanilla(self, depth: int, record: bool = True) -> None:
        """The vanilla ResNet-``depth`` row; ``record=False`` retrains the ResNet-8 only as this seed's born-again
        parent (its row, done by an earlier process, keeps its record)."""
        module = self.seeded(lambda: SupervisedModule(create_model(f"resnet{depth}", num_classes=10)))
        metrics, seconds = self.fit_test(module, f"vanilla ResNet-{depth}", role="baseline")
        if record:
            self.record(f"vanilla ResNet-{depth}", metrics["test/acc"], seconds)
        if depth == 8:  # the born-again parent of this seed
            self.parent = Path(tempfile.mkdtemp()) / "parent.pt"
            self.parent_acc = metrics["test/acc"]
            torch.save(module.student.state_dict(), self.parent)

    def plateau_probe(self) -> None:
        """The vanilla ResNet-8 at 1.5x the epochs (the same schedule, stretched): plateau if < 1 point higher."""
        epochs = round(1.5 * self.args.epochs)
        module = self.seeded(lambda: SupervisedModule(create_model("resnet8", num_classes=10)))
        metrics, seconds = self.fit_test(module, "vanilla ResNet-8, 1.5x epochs", role="probe", epochs=epochs)
        self.record(PLATEAU_ROW, metrics["test/acc"], seconds, epochs=epochs)

    def teacher_accuracy(self) -> None:
        module = SupervisedModule(self.adapted_teacher())
        (metrics,) = quiet_trainer(accelerator="cpu").test(module, self.data(), verbose=False)
        self.record(TEACHER_ROW, metrics["test/acc"], 0.0)

    # ------------------------------------------------------------------------------------- teacher-based
    def distill(self, name: str, build: Callable[[Any, Any], pl.LightningModule], callbacks: tuple = ()) -> None:
        module = self.seeded(lambda: build(create_model("resnet8", num_classes=10), self.teacher()))
        metrics, seconds = self.fit_test(module, name, callbacks=callbacks)
        self.record(name, metrics["test/acc"], seconds)

    def ensemble(self) -> None:
        names = ["cifar10_resnet20", "cifar10_resnet32", "cifar10_resnet44", "cifar10_resnet56"]
        module = self.seeded(
            lambda: EnsembleDistillation(
                create_model("resnet8", 10),
                [self.teacher(n) for n in names],
                **self.memo_kwargs("cifar10_resnet20_32_44_56_ensemble"),
            )
        )
        data = self.data()
        metrics, seconds = self.fit_test(module, "ensemble distillation", data=data)
        (ensemble,) = quiet_trainer(accelerator="cpu").test(SupervisedModule(module.teacher), data, verbose=False)
        self.record("ensemble distillation", metrics["test/acc"], seconds, ensemble_acc=float(ensemble["test/acc"]))

    def self_distillation(self) -> None:
        """One born-again generation: a ResNet-8 from its own initialisation, taught by its parent on its parent's
        data (the seed's subset, order and augmentation).

        The student is initialised with seed ``seed + 1``, as ``lit-kd born-again`` seeds generation 1
        (:func:`lit_kd.born_again.generation_config`): Allen-Zhu & Li (2020, abstract) explain self-distillation as
        an implicit ensemble of networks that "only differ by the random seeds used in the initialization", which a
        student started from its parent's own weights, on its parent's batches, is not.
        """
        if not hasattr(self, "parent"):  # its vanilla row was done by an earlier process: retrain it as the parent
            self.vanilla(8, record=False)
        init_seed = self.seed + 1
        student = self.seeded(lambda: create_model("resnet8", 10), seed=init_seed)
        module = self.seeded(  # the run (and so the data) keeps the row's seed
            lambda: SelfDistillation(student, create_model("resnet8", 10), teacher_checkpoint=str(self.parent))
        )
        metrics, seconds = self.fit_test(module, SELF_DISTILLATION)
        self.record(
            SELF_DISTILLATION, metrics["test/acc"], seconds, parent_acc=self.parent_acc, student_init_seed=init_seed
        )

    # ------------------------------------------------------------------------------------------- online
    def online(
        self, name: str, depths: tuple[int, ...], build: Callable[[list], pl.LightningModule], callbacks: tuple = ()
    ) -> None:
        module = self.seeded(lambda: build([create_model(f"resnet{d}", num_classes=10) for d in depths]))
        metrics, seconds = self.fit_test(module, name, callbacks=callbacks)
        accuracies = {f"ResNet-{d}": metrics[f"test/net{i}/acc"] for i, d in enumerate(depths)}
        self.record(name, accuracies[f"ResNet-{depths[0]}"], seconds, networks=accuracies)

    # ------------------------------------------------------------------------------------------ data-free
    def budget(self, row: str) -> dict[str, str]:
        """The row's own budget options (``ROW_BUDGETS``) as this run sets them, to record with the row."""
        return {option: str(getattr(self.args, option)) for option in ROW_BUDGETS[row]}

    def dfad_data(self) -> DataFreeDataModule:
        """The DFAD row's data: ``--dfad-*`` latent batches (the run's seed), CIFAR-10's test split to test on."""
        evaluation = CIFAR10DataModule(self.args.data_dir, eval_batch_size=500, cache_dir=self.args.cache_dir)
        return DataFreeDataModule(
            evaluation,
            batch_size=self.args.dfad_batch_size,
            latent_dim=DFAD_GENERATOR["latent_dim"],
            batches_per_epoch=self.args.dfad_batches_per_epoch,
        )

    def dfad_module(self) -> DataFreeAdversarialDistillation:
        """The DFAD row's module, seeded: the generator, then the student and the teacher (outcome_parity.py's DFAD
        official side starts from these weights)."""

        def build() -> DataFreeAdversarialDistillation:
            generator = DFADGenerator(**DFAD_GENERATOR)
            return DataFreeAdversarialDistillation(
                create_model("resnet8", 10), self.teacher(), generator, **self.teacher_kwargs()
            )

        return self.seeded(build)

    def dfad(self) -> None:
        data, module = self.dfad_data(), self.dfad_module()
        metrics, seconds = self.fit_test(
            module, "DFAD (no real training image)", data=data, epochs=self.args.dfad_epochs
        )
        untrained = self.seeded(lambda: SupervisedModule(create_model("resnet8", 10)))
        (random,) = quiet_trainer(accelerator="cpu").test(untrained, self.data(), verbose=False)
        self.record(
            "DFAD (no real training image)",
            metrics["test/acc"],
            seconds,
            untrained_acc=float(random["test/acc"]),
            budget=self.budget("DFAD (no real training image)"),
        )

    # ------------------------------------------------------------------------------------------- cGAN-KD
    def gan(self) -> tuple[ConditionalGAN, CIFAR10DataModule]:
        """cGAN-KD's class-conditional GAN (seeded) and its data: the labelled 10% of the training split, uncropped."""
        gan = self.seeded(
            lambda: ConditionalGAN(
                ConditionalGenerator(10, 32, latent_dim=128, base_channels=self.args.gan_channels, embed_dim=128),
                ProjectionDiscriminator(10, 32, base_channels=self.args.gan_channels, embed_dim=128),
            )
        )
        return gan, self.data(train_fraction=0.1, subset_size=None, batch_size=64, crop_padding=0)

    def cgan_kd(self) -> None:
        from lit_kd.data import save_synthetic_set
        from lit_kd.synthesis import synthesize

        fraction = dict(train_fraction=0.1, subset_size=None)
        real = self.seeded(lambda: HintonKD(create_model("resnet8", 10), self.teacher(), **self.teacher_kwargs()))
        metrics, seconds = self.fit_test(real, "cGAN-KD (10% labels)", role="baseline", data=self.data(**fraction))
        self.record(
            "KD, 10% labels, real only", metrics["test/acc"], seconds, budget=self.budget("cGAN-KD (10% labels)")
        )

        gan, gan_data = self.gan()
        gan_seconds = self.fit(
            gan, "cGAN-KD (10% labels)", "GAN", gan_data, max_steps=self.args.gan_steps, max_epochs=-1
        )
        start = time.perf_counter()
        teacher = self.adapted_teacher()
        images, targets, counts = synthesize(
            gan.generator.eval(),
            teacher.eval(),
            gan_data,
            {},
            per_label=self.args.gan_per_label,
            min_confidence=0.9,
            max_per_label=self.args.gan_max_per_label,
            seed=self.seed,
        )
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary) / "synthetic"
            provenance = {"task": "classification", "num_classes": 10, "counts": counts}
            save_synthetic_set(folder, images, targets, provenance)
            synthesis_seconds = gan_seconds + time.perf_counter() - start
            module = self.seeded(lambda: HintonKD(create_model("resnet8", 10), self.teacher(), **self.teacher_kwargs()))
            metrics, seconds = self.fit_test(
                module, "cGAN-KD (10% labels)", data=self.data(**fraction, synthetic_dir=folder)
            )
        self.record(
            "cGAN-KD, 10% labels, real + synthetic",
            metrics["test/acc"],
            seconds + synthesis_seconds,
            synthetic_images=len(targets),
            synthetic_per_class={label: count["kept"] for label, count in counts.items()},  # the filter's class skew
            gan_and_synthesis_seconds=synthesis_seconds,
            budget=self.budget("cGAN-KD (10% labels)"),
        )


#: KD + LS: logit standardisation's official CIFAR settings (lit_kd/methods/hinton.py's docstring cites them)
LOGIT_STANDARDISATION = dict(temperature=2.0, standardize=True, ce_weight=0.1, kd_weight=9.0)
#: the DFAD row's generator (ours: a half-width DFADGenerator, ``base_channels`` 32 against the official ngf 64)
DFAD_GENERATOR = dict(latent_dim=256, base_channels=32, image_size=32)
#: the rows whose module settings ``--set`` can change (one teacher-student module each)
SETTABLE_ROWS = ("Hinton KD", "BSS", "FitNets", "AT", "DKD", "DIST", "KD + LS", "CRD", "AMA")


def teacher_rows(runner: Runner) -> dict[str, Callable[[], None]]:
    """The rows, in the order they run: baselines first (later rows read them), then the rows most users read."""
    teacher, memo = runner.teacher_kwargs(), runner.memo_kwargs  # the memo's name hashes the teacher: when a row runs
    online_pair, online_three = (8, 14), (8, 14, 20)
    return {
        "vanilla ResNet-8": lambda: runner.vanilla(8),
        PLATEAU_ROW: runner.plateau_probe,
        "vanilla ResNet-14": lambda: runner.vanilla(14),
        "vanilla ResNet-20": lambda: runner.vanilla(20),
        TEACHER_ROW: runner.teacher_accuracy,
        "Hinton KD": lambda: runner.distill(
            "Hinton KD", lambda s, t: HintonKD(s, t, **teacher, **memo(), **runner.kwargs("Hinton KD"))
        ),
        "BSS": lambda: runner.distill(
            "BSS",
            lambda s, t: BSSDistillation(s, t, **teacher, **memo(), **runner.kwargs("BSS")),
            (BoundarySampleMining(**runner.kwargs("BSS", "mining")),),
        ),
        "FitNets": lambda: runner.distill("FitNets", lambda s, t: FitNets(s, t, **teacher, **runner.kwargs("FitNets"))),
        "AT": lambda: runner.distill("AT", lambda s, t: AttentionTransfer(s, t, **teacher, **runner.kwargs("AT"))),
        "DKD": lambda: runner.distill(
            "DKD", lambda s, t: DecoupledKD(s, t, **teacher, **memo(), **runner.kwargs("DKD"))
        ),
        "DIST": lambda: runner.distill(
            "DIST", lambda s, t: DISTDistillation(s, t, **teacher, **memo(), **runner.kwargs("DIST"))
        ),
        "KD + LS": lambda: runner.distill(
            "KD + LS",
            lambda s, t: HintonKD(s, t, **{**LOGIT_STANDARDISATION, **runner.kwargs("KD + LS")}, **teacher, **memo()),
        ),
        "CRD": lambda: runner.distill(
            "CRD", lambda s, t: ContrastiveRepresentationDistillation(s, t, **teacher, **runner.kwargs("CRD"))
        ),
        "AMA": lambda: runner.distill(
            "AMA", lambda s, t: ActivationMapAdaptation(s, t, **teacher, **runner.kwargs("AMA"))
        ),
        "ensemble distillation": runner.ensemble,
        SELF_DISTILLATION: runner.self_distillation,
        "DML": lambda: runner.online("DML", online_pair, DeepMutualLearning),
        "DML, 3 networks": lambda: runner.online("DML, 3 networks", online_three, DeepMutualLearning),
        "AFD (alternating updates)": lambda: runner.online(
            "AFD (alternating updates)", online_pair, lambda n: OnlineAdversarialFeatureKD(n, update="alternating")
        ),
        "AFD (joint update)": lambda: runner.online(
            "AFD (joint update)", online_pair, lambda n: OnlineAdversarialFeatureKD(n, update="joint")
        ),
        "AFD, cycle of 3": lambda: runner.online(
            "AFD, cycle of 3", online_three, OnlineAdversarialFeatureKD, (CyclicPairSchedule(steps_per_pair=None),)
        ),
        "DFAD (no real training image)": runner.dfad,
        "cGAN-KD (10% labels)": runner.cgan_kd,
    }


#: table rows: (label, result key, baseline key, what the baseline is)
TABLE_ROWS = [
    ("Hinton KD", "Hinton KD", "vanilla ResNet-8"),
    ("BSS", "BSS", "vanilla ResNet-8"),
    ("FitNets", "FitNets", "vanilla ResNet-8"),
    ("AT", "AT", "vanilla ResNet-8"),
    ("DKD", "DKD", "vanilla ResNet-8"),
    ("DIST", "DIST", "vanilla ResNet-8"),
    ("KD + logit standardisation", "KD + LS", "vanilla ResNet-8"),
    ("CRD", "CRD", "vanilla ResNet-8"),
    ("AMA", "AMA", "vanilla ResNet-8"),
    ("ensemble distillation (4 pretrained ResNets)", "ensemble distillation", "vanilla ResNet-8"),
    ("self-distillation, 1 born-again generation", SELF_DISTILLATION, "born-again parent"),
    (
        "self-distillation, student initialised as its parent (ablation)",
        SELF_DISTILLATION_SAME_INIT,
        "born-again parent [student initialised as its parent]",
    ),
    *[
        (f"{method}: ResNet-{depth}", f"{method}/ResNet-{depth}", f"vanilla ResNet-{depth}")
        for method, depths in (
            ("DML", (8, 14)),
            ("DML, 3 networks", (8, 14, 20)),
            ("AFD (alternating updates)", (8, 14)),
            ("AFD (joint update)", (8, 14)),
            ("AFD, cycle of 3", (8, 14, 20)),
        )
        for depth in depths
    ],
    ("DFAD (no real training image)", "DFAD (no real training image)", "DFAD untrained student"),
    ("cGAN-KD, 10% labels: real + synthetic", "cGAN-KD, 10% labels, real + synthetic", "KD, 10% labels, real only"),
]


#: options that set one row's own budget (the data-free and the GAN rows), not the table's: each of those rows records
#: its values (``budget``), so that a file at the table's budget can take those rows at any budget stated there
ROW_BUDGETS = {
    "DFAD (no real training image)": ("dfad_epochs", "dfad_batches_per_epoch", "dfad_batch_size"),
    "cGAN-KD (10% labels)": ("gan_steps", "gan_channels", "gan_per_label", "gan_max_per_label"),
}
#: the result a row is recorded under, where it is not the row's own name
RECORDED_AS = {"cGAN-KD (10% labels)": "cGAN-KD, 10% labels, real + synthetic"}


#: options that say where things are on one machine, not what the table is: a table continued on another machine (the
#: data elsewhere, the teacher's weights in another file) is the same table; its teacher is checked by its weights'
#: hash (:func:`check_teacher`), not by the path it was read from
PATH_OPTIONS = ("data_dir", "weights_dir", "teacher_checkpoint", "cache_dir")


def table_settings(settings: dict[str, str]) -> dict[str, str]:
    """The settings every row of a results file shares (its identity): without the rows' own budgets and paths."""
    own = {option for options in ROW_BUDGETS.values() for option in options} | set(PATH_OPTIONS)
    return {key: value for key, value in settings.items() if key not in own}


#: the plateau probe's row: run for the first seed only
PLATEAU_ROW = "vanilla ResNet-8 at 1.5x the epochs"
#: the rows the adapted teacher (``--teacher-checkpoint``) does not teach: they record no hash of it, and a run of
#: them alone does not check it (a session whose re-made teacher hashes otherwise can still run them)
TEACHER_FREE_ROWS = frozenset(
    (
        "vanilla ResNet-8",
        PLATEAU_ROW,
        "vanilla ResNet-14",
        "vanilla ResNet-20",
        "ensemble distillation",  # the four pretrained ResNets, not the adapted one
        SELF_DISTILLATION,
        "DML",
        "DML, 3 networks",
        "AFD (alternating updates)",
        "AFD (joint update)",
        "AFD, cycle of 3",
        SELF_DISTILLATION_SAME_INIT,  # taught by its parent; rows recorded before this set existed carry a hash
    )
)

#: each row's claim in its paper: (claim, result key of the better side, of the other side); checked on this table
CLAIMS = {
    "Hinton KD": ("KD > vanilla (Hinton et al. 2015)", "Hinton KD", "vanilla ResNet-8"),
    "BSS": ("BSS > KD (Heo et al. 2019, Table 2)", "BSS", "Hinton KD"),
    "FitNets": ("FitNets > vanilla (Romero et al. 2015)", "FitNets", "vanilla ResNet-8"),
    "AT": ("AT > vanilla (Zagoruyko & Komodakis 2017)", "AT", "vanilla ResNet-8"),
    "DKD": ("DKD > KD (Zhao et al. 2022)", "DKD", "Hinton KD"),
    "DIST": ("DIST > KD (Huang et al. 2022)", "DIST", "Hinton KD"),
    "KD + LS": ("KD + LS > KD (Sun et al. 2024)", "KD + LS", "Hinton KD"),
    "CRD": ("CRD > KD (Tian et al. 2020)", "CRD", "Hinton KD"),
    "AMA": ("AMA > vanilla (Wu et al. 2020)", "AMA", "vanilla ResNet-8"),
    "ensemble distillation": ("ensemble KD > vanilla", "ensemble distillation", "vanilla ResNet-8"),
    SELF_DISTILLATION: (
        "born-again > its parent (Furlanello et al. 2018)",
        SELF_DISTILLATION,
        "born-again parent",
    ),
    "DML": ("DML > alone (Zhang et al. 2018)", "DML/ResNet-8", "vanilla ResNet-8"),
    "AFD (alternating updates)": (
        "AFD > DML (Chung et al. 2020)",
        "AFD (alternating updates)/ResNet-8",
        "DML/ResNet-8",
    ),
    "AFD (joint update)": ("AFD > DML (Chung et al. 2020)", "AFD (joint update)/ResNet-8", "DML/ResNet-8"),
    "DML, 3 networks": ("DML > alone (Zhang et al. 2018)", "DML, 3 networks/ResNet-8", "vanilla ResNet-8"),
    # against DML of the same three networks, not the pair (a third peer may help DML as much)
    "AFD, cycle of 3": ("AFD > DML (Chung et al. 2020)", "AFD, cycle of 3/ResNet-8", "DML, 3 networks/ResNet-8"),
    "cGAN-KD, 10% labels, real + synthetic": (
        "real + synthetic > real only (Ding et al. 2021)",
        "cGAN-KD, 10% labels, real + synthetic",
        "KD, 10% labels, real only",
    ),
}


def paired_interval(results: dict[str, dict[str, Any]], key: str, baseline: str) -> tuple[list[float], float, float]:
    """Per-seed differences (points) of ``key`` over ``baseline``, their mean and the 95% half-width (Student's t)."""
    pairs = [(accuracy_of(results[s], key), accuracy_of(results[s], baseline)) for s in sorted(results)]
    differences = [100 * (a - b) for a, b in pairs if a is not None and b is not None]
    return differences, *mean_interval(differences)


def mean_interval(differences: list[float]) -> tuple[float, float]:
    """The mean of paired differences and its 95% half-width (Student's t; nan for fewer than two)."""
    if not differences:
        return float("nan"), float("nan")
    n = len(differences)
    half_width = T_975.get(n - 1, 1.96) * statistics.stdev(differences) / math.sqrt(n) if n > 1 else float("nan")
    return statistics.mean(differences), half_width


def agreement(results: dict[str, dict[str, Any]], result_key: str) -> tuple[str, str]:
    """The paper's claim for a row and whether this table agrees: yes, no, or not shown (the interval holds 0)."""
    if result_key not in CLAIMS:
        return "", ""
    claim, better, other = CLAIMS[result_key]
    differences, mean, half_width = paired_interval(results, better, other)
    if len(differences) < 2:
        return claim, "not measured" if not differences else f"{mean:+.2f} (1 seed)"
    verdict = "yes" if mean - half_width > 0 else "no" if mean + half_width < 0 else "not shown"
    return claim, f"{verdict} ({mean:+.2f} [{mean - half_width:+.2f}, {mean + half_width:+.2f}])"


def accuracy_of(result: dict[str, Any], key: str) -> float | None:
    """The accuracy behind a table key in one seed's results (online networks and derived baselines included)."""
    if "/" in key:
        method, network = key.split("/")
        return result.get(method, {}).get("networks", {}).get(network)
    if key == "DFAD untrained student":
        return result.get("DFAD (no real training image)", {}).get("untrained_acc")
    if key.startswith("born-again parent"):  # the network the row distilled: its retrained parent, which on another
        row = result.get(SELF_DISTILLATION + key.removeprefix("born-again parent"))  # CPU ISA ends elsewhere
        return None if row is None else row.get("parent_acc", result.get("vanilla ResNet-8", {}).get("acc"))
    return result.get(key, {}).get("acc")


def notes(results: dict[str, dict[str, Any]], seeds: list[str], key: str) -> str:
    """What a row adds: the ensemble's own accuracy, DFAD's share of the teacher, the synthetic images kept."""

    def mean_of(name: str, field: str) -> float | None:
        values = [results[s][name][field] for s in seeds if field in results[s].get(name, {})]
        return statistics.mean(values) if values else None

    teacher = mean_of(TEACHER_ROW, "acc")
    if key == "ensemble distillation" and mean_of(key, "ensemble_acc") is not None:
        return f"the ensemble itself: {100 * mean_of(key, 'ensemble_acc'):.2f}%"
    if key.startswith("DFAD") and teacher:
        return f"{100 * mean_of(key, 'acc') / teacher:.1f}% of the teacher's {100 * teacher:.2f}%"
    if key.startswith("self-distillation") and mean_of(key, "parent_acc") is not None:
        parents = [s for s in seeds if "parent_acc" in results[s].get(key, {})]
        same = sum(results[s][key]["parent_acc"] == results[s].get("vanilla ResNet-8", {}).get("acc") for s in parents)
        parent = 100 * mean_of(key, "parent_acc")
        retrained = f"parent (the seed's vanilla ResNet-8, retrained) {parent:.2f}%"
        return f"{retrained}, equal to the vanilla row in {same}/{len(parents)}"
    if key.startswith("cGAN-KD") and mean_of(key, "synthetic_images") is not None:
        kept = [
            results[s][key]["synthetic_per_class"] for s in seeds if "synthetic_per_class" in results[s].get(key, {})
        ]
        skew = f", {min(min(k.values()) for k in kept)} to {max(max(k.values()) for k in kept)} a class" if kept else ""
        return f"{mean_of(key, 'synthetic_images'):.0f} synthetic images kept (teacher p >= 0.9{skew})"
    if teacher and key in SETTABLE_ROWS:  # the rows the adapted teacher teaches
        return f"teacher {100 * teacher:.2f}%"
    return ""


def spread(values: list[float]) -> float:
    """The sample standard deviation (0 for a single value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summary(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean +- std per row, the paired difference to the baseline and its 95% interval, the mean time."""
    rows = []
    seeds = sorted(results)
    for label, key, baseline in TABLE_ROWS:
        pairs = [(accuracy_of(results[s], key), accuracy_of(results[s], baseline)) for s in seeds]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        method, base = [100 * a for a, _ in pairs], [100 * b for _, b in pairs]
        differences, mean_difference, half_width = paired_interval(results, key, baseline)
        n = len(differences)
        result_key = key.split("/")[0]
        claim, agrees = agreement(results, result_key if "/" not in key or key.endswith("ResNet-8") else "")
        seconds = [results[s][result_key]["seconds"] for s in seeds if result_key in results[s]]
        low, high = mean_difference - half_width, mean_difference + half_width
        rows.append(
            {
                "row": label,
                "accuracy % (mean ± std)": f"{statistics.mean(method):.2f} ± {spread(method):.2f}",
                "baseline": baseline,
                "baseline %": f"{statistics.mean(base):.2f} ± {spread(base):.2f}",
                "gain (points)": f"{mean_difference:+.2f}",
                "95% interval": f"[{low:+.2f}, {high:+.2f}]" if n > 1 else "- (1 seed)",
                "gain shown": "yes" if n > 1 and low > 0 else ("no" if n > 1 and high < 0 else "not significant"),
                "seeds": n,
                "time per run (s)": statistics.mean(seconds) if seconds else float("nan"),
                "per seed": ", ".join(f"{a:.2f}" for a in method),
                "paper's claim": claim,
                "this table agrees": agrees,
                "notes": notes(results, seeds, result_key),
            }
        )
    return rows


def teacher_comparison(results: dict[str, dict[str, Any]], source: dict[str, dict[str, Any]], name: str) -> str:
    """The taught rows, the table's and those run with ``--set`` settings, beside the same rows of table ``name``
    (``source``: its results), whose teacher-free rows this table carries: the same seeds (subsets, orders,
    augmentations, initial weights), another teacher.

    Per row: each table's mean over the seeds both have, the paired difference (this table minus ``name``) with its
    95% interval, and the paper's claim as each whole table decides it.
    """
    lines = []
    rows = [(label, key) for label, key, _ in TABLE_ROWS] + [(row, row) for row in settings_rows(results)]
    for label, key in rows:
        if key.split("/")[0].split(" [")[0] in TEACHER_FREE_ROWS:
            continue
        pairs = {s: (accuracy_of(results[s], key), accuracy_of(source.get(s, {}), key)) for s in sorted(results)}
        pairs = {s: (100 * a, 100 * b) for s, (a, b) in pairs.items() if a is not None and b is not None}
        if not pairs:
            continue
        mean, half_width = mean_interval([a - b for a, b in pairs.values()])
        lines.append(
            {
                "row": label,
                "seeds": ", ".join(pairs),
                "this table %": f"{statistics.mean(a for a, _ in pairs.values()):.2f}",
                f"{name} %": f"{statistics.mean(b for _, b in pairs.values()):.2f}",
                "difference (points)": f"{mean:+.2f}",
                "95% interval": f"[{mean - half_width:+.2f}, {mean + half_width:+.2f}]" if len(pairs) > 1 else "-",
                "claim here": agreement(results, key)[1],
                f"claim in {name}": agreement(source, key)[1],
            }
        )
    if not lines:
        return ""

    def teacher(tables: dict[str, dict[str, Any]]) -> str:
        accuracies = [100 * rows[TEACHER_ROW]["acc"] for rows in tables.values() if TEACHER_ROW in rows]
        return f"{statistics.mean(accuracies):.2f}%" if accuracies else "not recorded"

    title = (
        f"The taught rows against the same seeds of `{name}`, whose teacher-free rows this table carries (its teacher: "
        f"{teacher(source)}; this table's: {teacher(results)}): how far another adapted teacher moves each row"
    )
    return f"\n\n{title}:\n\n" + markdown_table(lines)


def parse_overrides(items: list[list[str]]) -> dict[str, dict[str, Any]]:
    """``--set ROW KEY=VALUE ...`` as ``{row: {key: value}}`` (values read as YAML: ``100`` is a number)."""
    overrides: dict[str, dict[str, Any]] = {}
    for row, *pairs in items:
        if row not in SETTABLE_ROWS:
            raise SystemExit(f"--set {row!r}: the row must be one of {', '.join(SETTABLE_ROWS)}")
        for pair in pairs:
            key, separator, value = pair.partition("=")
            if not separator or not key:
                raise SystemExit(f"--set {row} {pair!r}: expected KEY=VALUE")
            overrides.setdefault(row, {})[key] = yaml.safe_load(value)
    return overrides


def settings_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    """The rows run with ``--set`` settings that the table itself does not show, as ``ROW [KEY=VALUE]``."""
    tabled = {key for _, key, _ in TABLE_ROWS}
    return sorted({name for rows in results.values() for name in rows if " [" in name and name not in tabled})


def variants_table(results: dict[str, dict[str, Any]]) -> str:
    """Rows run with ``--set`` settings and, with ``--val-size``, every row's held-out accuracy, per seed."""
    seeds = sorted(results)
    held_out_rows = {name for s in seeds for name in results[s] if "val_acc" in results[s][name]}
    names = sorted(set(settings_rows(results)) | held_out_rows)
    if not names:
        return ""
    lines = []
    for name in names:
        cells = [results[s].get(name) for s in seeds]
        test = [100 * c["acc"] for c in cells if c]
        held_out = [100 * c["val_acc"] for c in cells if c and "val_acc" in c]
        lines.append(
            {
                "row (settings)": name,
                "held-out accuracy % (mean ± std)": (
                    f"{statistics.mean(held_out):.2f} ± {spread(held_out):.2f}" if held_out else "-"
                ),
                "test accuracy % (mean ± std)": f"{statistics.mean(test):.2f} ± {spread(test):.2f}",
                "seeds": len(test),
                "per seed (test)": ", ".join(f"{a:.2f}" for a in test),
            }
        )
    title = (
        "Rows with other settings (`--set`) and held-out accuracies (`--val-size`: choose on these, not on the test)"
    )
    return f"\n\n{title}:\n\n" + markdown_table(lines)


def save_seed(
    partial: Path,
    settings: dict[str, str],
    seed: str,
    rows: dict[str, Any],
    identity: Callable[[dict[str, str]], dict[str, str]] = table_settings,
    replace: bool = True,
) -> dict[str, Any]:
    """Store one seed's rows in the partial file, keeping the other seeds' and this seed's other rows (runs of other
    seeds, or of other rows of the same seed, may share the file). With ``replace=False`` a row the file already has
    stays as it is (rows copied from another table never overwrite this table's own).

    Returns every seed's results as stored. A lock file serialises the read-merge-write of processes running side by
    side (``--seeds 1`` and ``--seeds 2``, or ``--rows DIST --set DIST kd_weight=1`` and ``kd_weight=4``, with
    ``--threads 1`` each). Files are the same table when ``identity`` of their settings agree (by default
    :func:`table_settings`: the rows' own budgets aside); a file of another table is moved aside first
    (:func:`set_aside_other_settings`). The file is replaced whole, so a stop while writing leaves the previous one.
    """
    with open(partial.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        set_aside_other_settings(partial, settings, identity)  # another table's results are kept, not replaced
        stored = json.loads(partial.read_text()) if partial.is_file() else {"settings": settings}
        # row by row: another process may have added rows of this seed since the caller read the file
        results = {**stored.get("results", {})}
        results[seed] = {**results.get(seed, {}), **rows} if replace else {**rows, **results.get(seed, {})}
        # the settings as written first (a file of older rows may name budgets); written whole or not at all
        written = partial.with_name(f".{partial.name}.{os.getpid()}.tmp")
        try:
            written.write_text(json.dumps({"settings": stored["settings"], "results": results}, indent=1))
            os.replace(written, partial)
        finally:
            written.unlink(missing_ok=True)
    return results


def set_aside_other_settings(
    partial: Path, settings: dict[str, str], identity: Callable[[dict[str, str]], dict[str, str]] = table_settings
) -> None:
    """Move ``partial`` aside (timestamped) when it holds results at other settings (compared by ``identity``, as
    :func:`save_seed`): never mixed in, nor lost."""
    stored = json.loads(partial.read_text()).get("settings", {}) if partial.is_file() else None
    if stored is not None and identity(stored) != identity(settings):
        kept = partial.with_name(f"{partial.stem}.{time.strftime('%Y%m%d-%H%M%S')}.json")
        partial.rename(kept)
        print(f"{partial} held results at other settings: moved to {kept}", flush=True)


def check_teacher(results: dict[str, dict[str, Any]], teacher: str, partial: Path) -> None:
    """Refuse to add rows taught by another teacher than the rows of ``partial`` (``teacher``: its weights' hash).

    A table continued in another session needs its teacher re-made bit for bit (the module docstring says how); a
    checkpoint from another machine, a half-written one (a row started while the teacher still trains) or another
    teacher would otherwise be recorded beside the old rows and paired with them.
    """
    recorded = sorted(
        {row["teacher_weights"] for rows in results.values() for row in rows.values() if "teacher_weights" in row}
    )
    if recorded and recorded != [teacher]:
        raise SystemExit(
            f"--teacher-checkpoint's weights hash to {teacher}, but the rows of {partial} were taught by "
            f"{', '.join(recorded)}: re-make that teacher, or start another table (--name)"
        )


def carry_teacher_free_rows(partial: Path, source: Path, settings: dict[str, str]) -> int:
    """Copy into ``partial`` the rows of another table (``source``: its partial file) that the adapted teacher does
    not teach (:data:`TEACHER_FREE_ROWS`): they are the same rows under any teacher, so a table started on another
    teacher (one whose weights every CPU can load) does not train them again.

    The two tables must agree on every setting but their names (:func:`table_settings`). Each copied row records
    ``carried_from`` (the source's name) and no teacher hash (rows recorded before the teacher-free rows stopped
    recording one carry it); rows ``partial`` already has are kept. Returns the number of rows copied.
    """
    stored = json.loads(source.read_text())

    def identity(values: dict[str, str]) -> dict[str, str]:
        return {key: value for key, value in table_settings(values).items() if key != "name"}

    theirs, ours = identity(stored["settings"]), identity(settings)
    if theirs != ours:
        differ = sorted(key for key in theirs.keys() | ours.keys() if theirs.get(key) != ours.get(key))
        raise SystemExit(f"{source} is a table at other settings ({', '.join(differ)} differ): no row carried")
    present = json.loads(partial.read_text())["results"] if partial.is_file() else {}
    name = stored["settings"]["name"]
    carried = 0
    for seed, rows in stored["results"].items():
        copies = {
            row: {**{key: value for key, value in values.items() if key != "teacher_weights"}, "carried_from": name}
            for row, values in rows.items()
            if row in TEACHER_FREE_ROWS and row not in present.get(seed, {})
        }
        if copies:  # not replacing: a row the table gained since ``present`` was read stays its own
            save_seed(partial, settings, seed, copies, replace=False)
            carried += len(copies)
    return carried


def commit_partial(partial: Path, message: str) -> None:
    """Commit the partial results file alone (other staged or unstaged changes stay as they are)."""
    folder = partial.parent
    subprocess.run(["git", "add", partial.name], cwd=folder, check=False)
    done = subprocess.run(["git", "commit", "-q", "-m", message, "--", partial.name], cwd=folder, check=False)
    if done.returncode != 0:  # e.g. another git command held the index: the next row's commit carries this one
        print(f"could not commit {partial} now (git exit status {done.returncode})", flush=True)


def run_id(name: str, *identity: Any) -> str:
    """``NAME-<hash>``: the folder name of one results file's fits at these settings (``Runner.resume_dir``)."""
    return f"{name}-{hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]}"


def done(runner: Runner, name: str, stored_settings: dict[str, str]) -> bool:
    """Whether this seed has row ``name`` already, at this run's settings (a row's own budget included).

    A row recorded at another budget of its own stops the run: it would be neither kept nor mixed in silently.
    """
    recorded = runner.results.get(runner.key(RECORDED_AS.get(name, name)))
    if recorded is None:
        return False
    if name in ROW_BUDGETS:
        before = recorded.get(
            "budget", {k: stored_settings.get(k) for k in ROW_BUDGETS[name]}
        )  # older rows: the file's
        if before != runner.budget(name):
            raise SystemExit(
                f"seed {runner.seed}: {name} is recorded at {before}, this run asks for {runner.budget(name)}: "
                "run it with those options, or under another --name"
            )
    return True


def budgets_note(results: dict[str, dict[str, Any]], settings: dict[str, str]) -> str:
    """The own budgets of the DFAD and cGAN rows in ``results``, as their rows record them (older rows: the file's)."""
    parts = []
    for name, described in (
        ("DFAD (no real training image)", "DFAD: {dfad_epochs} data-free epochs of {dfad_batches_per_epoch} steps"),
        ("cGAN-KD (10% labels)", "cGAN: {gan_steps} GAN updates"),
    ):
        key, options = RECORDED_AS.get(name, name), ROW_BUDGETS[name]
        budgets = [
            rows[key].get("budget", {k: settings.get(k) for k in options}) for rows in results.values() if key in rows
        ]
        parts += sorted({described.format(**budget) for budget in budgets})
    return f" ({'; '.join(parts)})" if parts else ""


def plateau_note(results: dict[str, dict[str, Any]], settings: dict[str, str]) -> str:
    """The plateau check: the vanilla ResNet-8 at the budget and at 1.5x its epochs, on the same seed."""
    for seed, rows in sorted(results.items()):
        if PLATEAU_ROW in rows and "vanilla ResNet-8" in rows:
            base, stretched = 100 * rows["vanilla ResNet-8"]["acc"], 100 * rows[PLATEAU_ROW]["acc"]
            verdict = "plateaued" if stretched - base < 1 else "NOT plateaued"
            return (
                f" Plateau check (seed {seed}): the vanilla ResNet-8 reaches {base:.2f}% at {settings['epochs']} "
                f"epochs and {stretched:.2f}% at {rows[PLATEAU_ROW]['epochs']} (the same schedule, stretched): "
                f"{stretched - base:+.2f} points, {verdict} (the bar: under 1 point higher)."
            )
    return ""


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """The options :class:`Runner` reads (data, weights, teacher, subset) and the seeds (benchmarks/outcome_parity.py
    takes them too)."""
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar10/ (the JPEG export)")
    parser.add_argument("--weights-dir", default=os.environ.get("LIT_KD_WEIGHTS"), help="the pretrained weights")
    parser.add_argument("--teacher-checkpoint", help="the adapted ResNet-56 (adapt_pretrained_resnet56 recipe)")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default ~/.cache/lit-kd)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--subset", type=int, default=5000, help="class-balanced training images per run")


def add_dfad_arguments(parser: argparse.ArgumentParser) -> None:
    """The DFAD row's own data-free budget (outcome_parity.py's DFAD run takes it too)."""
    parser.add_argument("--dfad-epochs", type=int, default=2)
    parser.add_argument("--dfad-batches-per-epoch", type=int, default=300, help="50 x (5 student + 1 generator) steps")
    parser.add_argument("--dfad-batch-size", type=int, default=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_runner_arguments(parser)
    parser.add_argument("--epochs", type=int, default=4)
    add_dfad_arguments(parser)
    parser.add_argument("--gan-steps", type=int, default=1000, help="cGAN updates (4 discriminator : 1 generator)")
    parser.add_argument("--gan-channels", type=int, default=32)
    parser.add_argument("--gan-per-label", type=int, default=1000, help="samples generated per class before filtering")
    parser.add_argument("--gan-max-per-label", type=int, default=500, help="synthetic images kept per class at most")
    parser.add_argument("--rows", nargs="+", default=None, help="run only these rows, in this order (default: all)")
    parser.add_argument(
        "--val-size",
        type=int,
        default=0,
        help="hold out this many training images (before the subset is drawn) and record each row's last weights' "
        "accuracy on them (val_acc): for choosing a setting without the test split",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="append",
        default=[],
        metavar=("ROW", "KEY=VALUE"),
        help="run ROW with these module settings (YAML values), recorded as 'ROW [KEY=VALUE, ...]' beside the row "
        f"with its defaults; ROW one of {', '.join(SETTABLE_ROWS)}. E.g. --set AT beta=100 --rows AT. BSS's mining "
        "callback takes mining.KEY=VALUE (mining.max_samples=0: no boundary samples, the ablation)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/gains"))
    parser.add_argument("--wandb", action="store_true", help="log every run to one W&B project")
    parser.add_argument("--wandb-project", default="lit-kd-gains")
    parser.add_argument("--name", default="gains", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--summarize-only", action="store_true", help="run nothing: tabulate the partial results")
    parser.add_argument(
        "--partial-dir",
        type=Path,
        default=Path(__file__).parent / "results",
        help="where the partial results live (default benchmarks/results, so that commits carry them)",
    )
    parser.add_argument("--commit", action="store_true", help="git-commit the partial results after every row")
    parser.add_argument(
        "--teacher-free-rows-from",
        metavar="NAME",
        help="first copy the rows no adapted teacher teaches from results file NAME (same settings but the name)",
    )
    parser.add_argument(
        "--no-teacher-memo",
        action="store_true",
        help="recompute the teacher for every row (default: the logit rows share one teacher memo in --output-dir)",
    )
    args = parser.parse_args()
    args.overrides = parse_overrides(args.set)
    quiet_benchmark(args.threads)
    warnings.filterwarnings("ignore")
    # the table's teachers in float32 on every CPU ("auto" would pick bf16 where it is native): its rows compare
    # across machines and sessions, and with the rows run before bf16 became the default there
    os.environ["LIT_KD_TEACHER_PRECISION"] = "32"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    # what the numbers depend on; the threads only change the times, which each row records with its threads
    ignored = ("rows", "seeds", "wandb", "output_dir", "threads", "summarize_only", "partial_dir", "commit")
    ignored += ("set", "overrides")  # in each row's name instead: one file holds a row with several settings
    ignored += ("val_size",) if not args.val_size else ()  # files from before the option keep their settings
    ignored += ("no_teacher_memo",)  # the memo gives the same teacher logits: float32, the same batches
    ignored += ("teacher_free_rows_from",)  # each copied row names its source (carried_from)
    settings = {k: str(v) for k, v in vars(args).items() if k not in ignored}
    if not args.summarize_only:  # names the folder where fits keep their last epoch (Runner.resume_dir)
        args.run_id = run_id(args.name, settings, args.overrides)
    partial = args.partial_dir / f"{args.name}.partial.json"
    results: dict[str, dict[str, Any]] = {}
    if not args.summarize_only:
        set_aside_other_settings(partial, settings)
    if args.teacher_free_rows_from:
        source = args.partial_dir / f"{args.teacher_free_rows_from}.partial.json"
        carried = carry_teacher_free_rows(partial, source, settings)
        print(f"{carried} teacher-free rows copied from {source}", flush=True)
        if args.commit and carried:
            commit_partial(
                partial, f"gains {args.name}: {carried} teacher-free rows from {args.teacher_free_rows_from}"
            )
    if args.summarize_only and not partial.is_file():
        raise SystemExit(f"--summarize-only: no partial results at {partial}")
    stored_settings = settings
    if partial.is_file():
        results = json.loads(partial.read_text())["results"]  # resume a run that stopped: skip the rows it has
        stored_settings = json.loads(partial.read_text())["settings"]
        settings = stored_settings if args.summarize_only else settings
    # row by row, every seed of a row before the next row (the rows most users read first: --rows in its order)
    runners = {seed: Runner(args, seed) for seed in ([] if args.summarize_only else args.seeds)}
    order = list(teacher_rows(Runner(args, 0)))
    order = [name for name in args.rows if name in order] if args.rows else order
    taught = any(name not in TEACHER_FREE_ROWS for name in order)  # rows that read --teacher-checkpoint
    for seed, runner in runners.items():
        runner.results = results.setdefault(str(seed), {})
        if taught:  # before any row runs, not after hours of one
            check_teacher(results, runner.teacher_weights(), partial)
    for name in order:
        for seed, runner in runners.items():
            if done(runner, name, stored_settings) or (name == PLATEAU_ROW and seed != args.seeds[0]):
                continue
            teacher_rows(runner)[name]()
            results = save_seed(partial, settings, str(seed), runner.results)
            for folder in runner.folders:  # recorded: its fits need not resume (other rows' stopped fits stay)
                shutil.rmtree(folder, ignore_errors=True)
                for parent in (folder.parent, folder.parent.parent):  # the seed's and the settings' folders, if empty
                    with contextlib.suppress(OSError):
                        parent.rmdir()
            runner.folders = []
            if args.commit:
                message = f"gains {args.name}: seed {seed}, {runner.key(name)} ({len(runner.results)} rows)"
                commit_partial(partial, message)
    rows = summary(results)
    budgets = budgets_note(results, stored_settings)
    table = (markdown_table(rows) if rows else "No row has both its method and its baseline yet.") + (
        f"\n\nCIFAR-10 JPEG export (not comparable with published CIFAR-10 tables), {settings['subset']} "
        f"class-balanced training images, {settings['epochs']} epochs{budgets}, batch 128, "
        f"seeds {sorted(results)} (each seeds the run and the data); accuracy of the last weights on the full test "
        "split; gain = paired difference to the baseline of the same seed, 95% interval from Student's t; 'gain shown' "
        "= the interval lies above 0; 'this table agrees' = the paired interval of the paper's comparison lies on "
        "its side of 0 (yes), on the other (no), or holds 0 (not shown)." + plateau_note(results, settings)
    )
    if "val_size" in settings:
        table += f" {settings['val_size']} training images held out (before the subset is drawn) for val_acc."
    table += variants_table(results)
    for source in sorted(
        {row["carried_from"] for rows in results.values() for row in rows.values() if "carried_from" in row}
    ):
        source_partial = args.partial_dir / f"{source}.partial.json"
        if source_partial.is_file():
            table += teacher_comparison(results, json.loads(source_partial.read_text())["results"], source)
    write_results(args.name, {"settings": settings, "seeds": sorted(results), "results": results, "rows": rows}, table)


if __name__ == "__main__":
    run_stoppable(main)
