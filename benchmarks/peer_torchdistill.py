"""The torchdistill side of the peer throughput benchmark: training images/s of torchdistill 1.1.5 on CPU.

Run it with the benchmark's own virtual environment (torchdistill is not a lit-kd dependency)::

    /work/peer_venv/bin/python benchmarks/peer_torchdistill.py --data-dir /work/peer_data/cifar10 \
        --method kd --batch-size 128 --threads 2 --warmup 3 --steps 20 --json-out kd.json

What is built, each part through torchdistill's own machinery, as its example script
``examples/torchvision/image_classification.py`` (``main``/``load_model``/``train``) builds it:

* Models: ``torchdistill.models.registry.get_model('resnet56' | 'resnet20', num_classes=10, pretrained=False)``,
  torchdistill's CIFAR ResNets (``torchdistill/models/classification/resnet.py``, ``ResNet4Cifar``). The example's
  ``load_model`` first tries ``torchdistill.models.official.get_image_classification_model`` (torchvision's zoo),
  which has no ``resnet20``/``resnet56``, so it falls through to the registry exactly like this script. The teacher's
  weights are random (``pretrained=True`` would download them): only throughput is measured, and a ResNet costs the
  same per image whatever its weights.
* Data: ``torchvision.datasets.ImageFolder(<data-dir>/train)`` with ``RandomCrop(32, padding=4)``,
  ``RandomHorizontalFlip(0.5)``, ``ToTensor()``, ``Normalize(CIFAR-10 mean/std)``: the transforms of torchdistill's
  CIFAR-10 samples (``configs/sample/cifar10/ce/resnet20-final_run.yaml``, ``datasets: cifar10/train``), with
  ``ImageFolder`` instead of ``CIFAR10`` because the data are JPEG files. The ``DataLoader`` is built by torchdistill
  (``torchdistill/datasets/util.py``, ``build_data_loader``, called from ``DistillationBox.setup_data_loaders``):
  ``RandomSampler``, ``BaseDatasetWrapper`` (``requires_supp``), ``--batch-size`` (128), ``--num-workers`` (2),
  ``pin_memory=False`` (CPU only; the samples' ``True`` only matters with CUDA), ``drop_last=False``.
* Training box: ``torchdistill.core.distillation.get_distillation_box`` (``torchdistill/core/distillation.py``) from a
  ``train`` config dict equal to the sample YAML's ``train`` section after loading, with the loader, batch size and
  hook paths adapted as listed per method below; device ``cpu``, not distributed, ``lr_factor=1``. (The CIFAR-10 KD
  sample's own ``datasets`` section is still in the pre-1.0 ``key``/``splits`` form, which the example script no
  longer reads; the dataset here follows the current form of the ``ce`` samples.)

Methods (``--method``) and the sample configuration each mirrors (paths in yoshitomo-matsubara/torchdistill):

* ``kd``: ``configs/sample/cifar10/kd/resnet20_from_densenet_bc_k12_depth100-final_run.yaml`` with the teacher
  swapped for ``resnet56``: frozen teacher (``requires_grad: False``, run under ``torch.no_grad()`` by
  ``DistillationBox.get_teacher_output``), ``WeightedSumLoss`` of one ``KDLoss`` (``torchdistill/losses/mid_level.py``;
  ``temperature=4.0``, ``alpha=0.9``, ``reduction='batchmean'``: ``0.9 * CE + 0.1 * 16 * KL``), SGD (lr 0.1,
  momentum 0.9, weight decay 1e-4), ``MultiStepLR([91, 136])``.
* ``at``: ``configs/sample/ilsvrc2012/at/resnet18_from_resnet34.yaml`` (torchdistill has no CIFAR AT sample),
  moved to the CIFAR pair: forward hooks on the outputs of ``layer1``, ``layer2``, ``layer3`` of both networks
  (every stage of a CIFAR ResNet; the ImageNet sample hooks ``layer3`` and ``layer4``), ``WeightedSumLoss`` of
  ``CrossEntropyLoss`` (weight 1) and ``ATLoss`` (``mode='code'``, weight 1000 as in the sample), and the KD sample's
  SGD/scheduler. lit-kd's ``AttentionTransfer`` computes the same loss (CE + beta * the same ``(at_s - at_t)^2``
  mean over the three stages), so this is the like-for-like feature method.
* ``fitnets``: stage 1 of ``configs/sample/ilsvrc2012/fitnet/resnet18_from_resnet152.yaml``, built as the sample's
  two-stage config (so ``get_distillation_box`` returns a ``MultiStagesDistillationBox``) and timed in stage 1: both
  networks cut after the hint/guided layer by ``sequential`` (``conv1, bn1, relu, layer1, layer2``; layer2 is the
  middle of a CIFAR ResNet, as lit-kd's ``hint_layer=2``), a ``ConvReg`` adaptation (32 -> 32 channels, 1x1) appended
  to the student, ``MSELoss(reduction='sum')`` between its output and the teacher's ``layer2``, Adam (lr 1e-3).
  Stage 2 of that sample is plain KD (``T=1``, ``alpha=0.5``) and costs what ``kd`` costs. This is torchdistill's
  FitNets, but NOT the same computation as lit-kd's one-stage ``FitNets`` (CE + hint on the full networks): stage 1
  runs two of the three stages of each network and no head, so it is cheaper per image. Use ``at`` for a
  like-for-like ratio.

What is timed: ``--warmup`` iterations are run untimed, then ``--steps`` iterations, each exactly the body of the
example's ``train_one_epoch`` without its ``MetricLogger``: fetch ``(sample_batch, targets, supp_dict)`` from the
box's ``train_data_loader``, ``.to(device)``, ``box.forward_process(sample_batch, targets, supp_dict)`` (teacher
forward without gradients, student forward, forward hooks, criterion), ``box.post_forward_process(loss=loss)``
(``torchdistill/core/interfaces/post_forward_proc.py``, ``default_post_forward_process``: backward, ``optimizer.step``,
``zero_grad``) and ``loss.item()``. ``box.pre_epoch_process`` (student ``.train()``) runs once before, untimed.
Two rates are reported:

* ``images_per_s``: ``steps * batch_size`` over the wall time of the timed iterations, loader waits included (the
  end-to-end rate of the ImageFolder + DataLoader + box pipeline). The headline number.
* ``images_per_s_compute``: the same over the time from the batch's arrival to ``loss.item()`` only, which is what
  the example's own ``img/s`` meter measures (its ``start_time`` is taken after the batch is fetched).

The teacher is left in whatever mode the example leaves it in, which is training mode: ``load_model`` never calls
``.eval()``, ``pre_epoch_process`` only sets ``student_model.train()``, so its BatchNorm layers use batch statistics
(under ``no_grad``). ``--teacher-eval`` switches it to eval mode (what lit-kd does) for comparison.

Output (``--json-out``, also printed): the method, rates, medians, per-iteration times, torch/torchvision/torchdistill
versions, torch threads, worker count, the criterion as torchdistill prints it, the process's CPU seconds during the
timed steps (main process only; loader workers excluded), and ``os.getloadavg()`` before set-up and after the steps.
The machine is shared: a load average above the thread count means another process competed for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torchdistill
import torchvision
from torch.utils.data import RandomSampler
from torchdistill.common.main_util import set_seed
from torchdistill.core.distillation import get_distillation_box
from torchdistill.misc.log import set_basic_log_config
from torchdistill.models.official import get_image_classification_model
from torchdistill.models.registry import get_model
from torchvision import transforms
from torchvision.datasets import ImageFolder

TRAIN_ID = "cifar10/train"
# configs/sample/cifar10/*: Normalize kwargs of every CIFAR-10 sample.
CIFAR10_MEAN = [0.49139968, 0.48215841, 0.44653091]
CIFAR10_STD = [0.24703223, 0.24348513, 0.26158784]


def load_model(key: str, device: torch.device) -> torch.nn.Module:
    """The example's ``load_model``: torchvision's zoo first, then torchdistill's registry (random weights)."""
    model_config = {"key": key, "kwargs": {"num_classes": 10, "pretrained": False}}
    model = get_image_classification_model(model_config, distributed=False)
    if model is None:
        model = get_model(model_config["key"], None, **model_config["kwargs"])
    return model.to(device)


def build_dataset_dict(data_dir: Path) -> dict[str, ImageFolder]:
    """``datasets`` of the CIFAR-10 samples after YAML loading (``!import_call`` objects), as an ImageFolder."""
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.ToTensor(),
            transforms.Normalize(mean=CIFAR10_MEAN, std=CIFAR10_STD),
        ]
    )
    return {TRAIN_ID: ImageFolder(str(data_dir / "train"), transform=transform)}


def train_data_loader_config(batch_size: int, num_workers: int) -> dict[str, Any]:
    """The samples' ``train_data_loader`` section (``!import_get`` resolved), at this benchmark's batch and workers."""
    return {
        "dataset_id": TRAIN_ID,
        "sampler": {"class_or_func": RandomSampler, "kwargs": None},
        "kwargs": {"batch_size": batch_size, "num_workers": num_workers, "pin_memory": False, "drop_last": False},
        "cache_output": None,
    }


def whole_model_config(hooked_outputs: list[str] | None = None, student: bool = False) -> dict[str, Any]:
    """A teacher/student entry that keeps the whole network (``sequential: []``), optionally with forward hooks."""
    config: dict[str, Any] = {
        "forward_proc": "forward_batch_only",
        "sequential": [],
        "wrapper": "DistributedDataParallel" if student else "DataParallel",  # no-ops on CPU (core/util.py wrap_model)
        "requires_grad": student,
        "frozen_modules": [],
    }
    if student:
        config["adaptations"] = None
    if hooked_outputs:
        config["forward_hook"] = {"input": [], "output": list(hooked_outputs)}
    return config


def kd_sample_optimizer_and_scheduler() -> dict[str, Any]:
    """``optimizer`` and ``scheduler`` of configs/sample/cifar10/kd/resnet20_from_densenet_bc_k12_depth100-final_run."""
    return {
        "optimizer": {"key": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0001}},
        "scheduler": {"key": "MultiStepLR", "kwargs": {"milestones": [91, 136], "gamma": 0.1}},
    }


def kd_criterion(temperature: float, alpha: float) -> dict[str, Any]:
    """torchdistill's ``KDLoss`` on the two networks' outputs as the only ``WeightedSumLoss`` term (both samples)."""
    kd_loss = {
        "key": "KDLoss",
        "kwargs": {
            "student_module_path": ".",
            "student_module_io": "output",
            "teacher_module_path": ".",
            "teacher_module_io": "output",
            "temperature": temperature,
            "alpha": alpha,
            "reduction": "batchmean",
        },
    }
    return {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {"criterion": kd_loss, "weight": 1.0}}}}


def kd_train_config(loader: dict[str, Any]) -> dict[str, Any]:
    """``train`` of configs/sample/cifar10/kd/resnet20_from_densenet_bc_k12_depth100-final_run.yaml."""
    return {
        "log_freq": 100,
        "num_epochs": 182,
        "train_data_loader": loader,
        "teacher": whole_model_config(),
        "student": whole_model_config(student=True),
        **kd_sample_optimizer_and_scheduler(),
        "criterion": kd_criterion(temperature=4.0, alpha=0.9),
    }


def cross_entropy_term() -> dict[str, Any]:
    """The ``ce`` sub-term of the AT sample: CrossEntropyLoss on the student's logits and the labels."""
    return {
        "criterion": {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}},
        "criterion_wrapper": {
            "key": "SimpleLossWrapper",
            "kwargs": {
                "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
                "target": {"uses_label": True},
            },
        },
        "weight": 1.0,
    }


def at_train_config(loader: dict[str, Any]) -> dict[str, Any]:
    """``train`` of configs/sample/ilsvrc2012/at/resnet18_from_resnet34.yaml on the CIFAR pair's three stages."""
    stages = ["layer1", "layer2", "layer3"]
    at_pairs = {
        f"pair{i}": {"teacher": {"io": "output", "path": path}, "student": {"io": "output", "path": path}, "weight": 1}
        for i, path in enumerate(stages, start=1)
    }
    return {
        "log_freq": 100,
        "num_epochs": 182,
        "train_data_loader": loader,
        "teacher": whole_model_config(hooked_outputs=stages),
        "student": whole_model_config(hooked_outputs=stages, student=True),
        **kd_sample_optimizer_and_scheduler(),
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {
                "sub_terms": {
                    "ce": cross_entropy_term(),
                    "at_loss": {
                        "criterion": {"key": "ATLoss", "kwargs": {"at_pairs": at_pairs, "mode": "code"}},
                        "weight": 1000.0,
                    },
                }
            },
        },
    }


def fitnets_train_config(loader: dict[str, Any]) -> dict[str, Any]:
    """``train`` of configs/sample/ilsvrc2012/fitnet/resnet18_from_resnet152.yaml, hinting at the CIFAR ``layer2``."""
    trunk = ["conv1", "bn1", "relu", "layer1", "layer2"]  # CIFAR ResNets have no maxpool
    stage1 = {
        "num_epochs": 5,
        "train_data_loader": loader,
        "teacher": {
            "forward_proc": "forward_batch_only",
            "sequential": trunk,
            "forward_hook": {"input": [], "output": ["layer2"]},
            "wrapper": "DistributedDataParallel",
            "requires_grad": False,
        },
        "student": {
            "forward_proc": "forward_batch_only",
            "adaptations": {
                "convreg": {
                    "key": "ConvReg",
                    "kwargs": {
                        "num_input_channels": 32,
                        "num_output_channels": 32,
                        "kernel_size": 1,
                        "stride": 1,
                        "padding": 0,
                        "uses_relu": True,
                    },
                }
            },
            "sequential": [*trunk, "+convreg"],
            "frozen_modules": [],
            "forward_hook": {"input": [], "output": ["+convreg"]},
            "wrapper": "DistributedDataParallel",
            "requires_grad": True,
        },
        "optimizer": {"key": "Adam", "kwargs": {"lr": 0.001}},
        "scheduler": {"key": "MultiStepLR", "kwargs": {"milestones": [3], "gamma": 0.1}},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {
                "sub_terms": {
                    "layer2": {
                        "criterion": {"key": "MSELoss", "kwargs": {"reduction": "sum"}},
                        "criterion_wrapper": {
                            "key": "SimpleLossWrapper",
                            "kwargs": {
                                "input": {"is_from_teacher": False, "module_path": "+convreg", "io": "output"},
                                "target": {"is_from_teacher": True, "module_path": "layer2", "io": "output"},
                            },
                        },
                        "weight": 1.0,
                    }
                }
            },
        },
    }
    stage2 = {
        "num_epochs": 15,
        "teacher": whole_model_config(),
        "student": whole_model_config(student=True),
        "optimizer": {"key": "SGD", "kwargs": {"lr": 0.0001, "momentum": 0.9, "weight_decay": 0.0005}},
        "scheduler": {"key": "MultiStepLR", "kwargs": {"milestones": [5, 10], "gamma": 0.1}},
        "criterion": kd_criterion(temperature=1.0, alpha=0.5),
    }
    return {"log_freq": 100, "stage1": stage1, "stage2": stage2}


TRAIN_CONFIGS = {"kd": kd_train_config, "at": at_train_config, "fitnets": fitnets_train_config}
SAMPLE_CONFIGS = {
    "kd": "configs/sample/cifar10/kd/resnet20_from_densenet_bc_k12_depth100-final_run.yaml (teacher -> resnet56)",
    "at": "configs/sample/ilsvrc2012/at/resnet18_from_resnet34.yaml (hooks -> layer1..3, optimizer of the kd sample)",
    "fitnets": "configs/sample/ilsvrc2012/fitnet/resnet18_from_resnet152.yaml, stage 1 (hint: layer2, ConvReg 32->32)",
}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (its threads, not the loader's worker processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the box like the example script, run the warm-up and timed iterations, and return the record."""
    loadavg_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    device = torch.device("cpu")
    setup_start = time.perf_counter()
    teacher = load_model(args.teacher, device)
    student = load_model(args.student, device)
    if args.teacher_eval:
        teacher.eval()
    loader_config = train_data_loader_config(args.batch_size, args.num_workers)
    train_config = TRAIN_CONFIGS[args.method](loader_config)
    box = get_distillation_box(
        teacher, student, build_dataset_dict(args.data_dir), train_config, device, None, False, 1, accelerator=None
    )
    setup_s = time.perf_counter() - setup_start

    epoch = 0
    box.pre_epoch_process(epoch=epoch)
    batches = iter(box.train_data_loader)
    iteration_times: list[float] = []  # loader wait + step
    step_times: list[float] = []  # from the batch's arrival to loss.item() (the example's img/s window)
    losses: list[float] = []
    epoch_restarts = 0
    cpu_at_start = 0.0
    for index in range(args.warmup + args.steps):
        if index == args.warmup:
            cpu_at_start = cpu_seconds()
        start = time.perf_counter()
        try:
            sample_batch, targets, supp_dict = next(batches)
        except StopIteration:  # only when warmup + steps exceed an epoch; the restart is inside the timed window
            box.post_epoch_process()
            epoch += 1
            epoch_restarts += 1
            box.pre_epoch_process(epoch=epoch)
            batches = iter(box.train_data_loader)
            sample_batch, targets, supp_dict = next(batches)
        arrived = time.perf_counter()
        sample_batch, targets = sample_batch.to(device), targets.to(device)
        loss = box.forward_process(sample_batch, targets, supp_dict)
        box.post_forward_process(loss=loss)
        loss_value = loss.item()
        end = time.perf_counter()
        if index >= args.warmup:
            iteration_times.append(end - start)
            step_times.append(end - arrived)
            losses.append(loss_value)
    process_cpu_s = cpu_seconds() - cpu_at_start
    loadavg_after = os.getloadavg()
    del batches  # shut the loader's workers down

    images = args.steps * args.batch_size
    return {
        "framework": "torchdistill",
        "method": args.method,
        "box": type(box).__name__,
        "sample_config": SAMPLE_CONFIGS[args.method],
        "comparable_to_lit_kd": args.method != "fitnets",
        "teacher": args.teacher,
        "student": args.student,
        "teacher_weights": "random (throughput only)",
        "teacher_mode": "eval" if args.teacher_eval else "train (as left by the example script)",
        "criterion": str(box.criterion),
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "steps": args.steps,
        "images_per_s": images / sum(iteration_times),
        "images_per_s_compute": images / sum(step_times),
        "median_iteration_s": statistics.median(iteration_times),
        "median_step_s": statistics.median(step_times),
        "iteration_times_s": iteration_times,
        "step_times_s": step_times,
        "loader_wait_s": [total - step for total, step in zip(iteration_times, step_times, strict=True)],
        "losses": losses,
        "epoch_restarts_in_timed_window": epoch_restarts,
        "setup_s": setup_s,
        "process_cpu_s": process_cpu_s,
        "torch_threads": torch.get_num_threads(),
        "num_workers": args.num_workers,
        "data_dir": str(args.data_dir),
        "num_train_images": len(box.train_data_loader.dataset),
        "loadavg_before": list(loadavg_before),
        "loadavg_after": list(loadavg_after),
        "cpu_count": os.cpu_count(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "torchdistill": torchdistill.__version__,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="ImageFolder root: <dir>/train/<class>/*.jpg")
    parser.add_argument("--method", choices=sorted(TRAIN_CONFIGS), default="kd")
    parser.add_argument("--teacher", default="resnet56", help="torchdistill model registry key")
    parser.add_argument("--student", default="resnet20", help="torchdistill model registry key")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in the training process")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--steps", type=int, default=20, help="timed iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-eval", action="store_true", help="teacher in eval mode (the example: train)")
    parser.add_argument("--json-out", type=Path, help="write the record here as well as to stdout")
    parser.add_argument("--verbose", action="store_true", help="torchdistill's INFO logging (set_basic_log_config)")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if not (args.data_dir / "train").is_dir():
        parser.error(f"{args.data_dir / 'train'} is not a directory (expected an ImageFolder root with train/)")
    if args.verbose:
        set_basic_log_config()

    record = run(args)
    text = json.dumps(record, indent=2)
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text + "\n")
    summary = (
        f"torchdistill {record['versions']['torchdistill']} {args.method}: {record['images_per_s']:.1f} images/s "
        f"end to end, {record['images_per_s_compute']:.1f} images/s in the step "
        f"(median step {record['median_step_s'] * 1000:.0f} ms; load {loadavg_str(record)})"
    )
    print(text)
    print(summary, file=sys.stderr)


def loadavg_str(record: dict[str, Any]) -> str:
    """``before -> after`` one-minute load averages."""
    return f"{record['loadavg_before'][0]:.2f} -> {record['loadavg_after'][0]:.2f}"


if __name__ == "__main__":
    main()
