"""``lit-kd teacher-memo``: fill a recipe's teacher memo with every view of every training image, beforehand.

A run with ``teacher_memo`` (:class:`~lit_kd.methods.DistillationModule`) computes each entry the first time a
batch draws it. This command computes them all at once, with the recipe's teacher, data and augmentation, so that
every later run of that teacher on that data (any seed, method or setting that memoises the teacher) reads its
targets and never runs the teacher: ``num_views`` teacher passes per training image (162 for CIFAR's pad-4 crop and
flip), stated before it starts with the file's size. It saves as it goes, so an interrupted run resumes where it
stopped, and skips what is stored.

Examples:
    lit-kd teacher-memo --config recipes/cifar10/kd_resnet56_resnet20.yaml --data.data_dir data
    --model.init_args.teacher_memo memos/resnet56_cifar10.safetensors  (one command line)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from lit_kd.data.augmentation import normalize
from lit_kd.errors import one_line_errors
from lit_kd.lightning_cli import LitKDCLI
from lit_kd.runtime.memo import TeacherMemo, describe


def precompute(
    module: Any, datamodule: Any, trainer: Any, batch_size: int = 500, save_every: float = 60.0, log: Any = print
) -> TeacherMemo:
    """Fill ``module``'s teacher memo with every view of ``datamodule``'s training images; return the memo.

    The teacher runs as in ``trainer.fit`` (:meth:`~lit_kd.methods.DistillationModule.teacher_forward`, with the
    same input conversion and memory format, on views made by the DataModule's
    :attr:`~lit_kd.data.InMemoryImageDataModule.augmentation` and normalised as its batches are), on ``trainer``'s
    device and in its precision context. The memo is saved every ``save_every`` seconds and at the end.
    """
    datamodule.setup("fit")
    if module.num_classes is None:  # as the module's setup takes it
        module.num_classes = int(datamodule.num_classes)
    module.to(trainer.strategy.root_device)
    module.convert_inputs_for_networks(datamodule)
    module.apply_speed_options()
    memo = module.teacher_memo = module.open_teacher_memo(datamodule, str(trainer.precision))
    log(describe(memo))
    images, sources = datamodule.train_set.images, datamodule.train_sources
    augmentation, device = datamodule.augmentation, module.device
    num_views = augmentation.num_views
    missing = ~memo.stored(sources)  # [samples, views]
    todo = (missing.any(dim=1)).nonzero().squeeze(1)
    log(f"{len(todo)} of {len(sources)} training images have views to compute ({int(missing.sum())} teacher passes)")
    started = last_save = time.monotonic()
    network = module.frozen_teacher
    per_chunk = max(1, batch_size // num_views) if num_views <= batch_size else 1
    for start in range(0, len(todo), per_chunk):
        chunk = todo[start : start + per_chunk]
        views = torch.arange(num_views).repeat(len(chunk))
        samples = chunk.repeat_interleave(num_views)
        keep = missing[samples, views]
        samples, views = samples[keep], views[keep]
        for offset in range(0, len(samples), batch_size):
            index, view = samples[offset : offset + batch_size], views[offset : offset + batch_size]
            batch = augmentation.apply(images[index].to(device), view.to(device))
            with trainer.precision_plugin.forward_context():
                outputs = module.teacher_forward(network, normalize(batch, datamodule.mean, datamodule.std))
            memo.fill(sources[index], view, outputs)
        if time.monotonic() - last_save > save_every:
            memo.save()
            last_save = time.monotonic()
            elapsed = last_save - started
            log(f"{start + len(chunk)} of {len(todo)} images done, {elapsed:.0f} s, saved")
    memo.save()
    log(f"done in {time.monotonic() - started:.0f} s: {describe(memo)}")
    return memo


def main(args: list[str] | None = None) -> None:
    """``lit-kd teacher-memo``: :func:`precompute` for a recipe; every other option is ``lit-kd fit``'s."""
    parser = argparse.ArgumentParser(
        prog="lit-kd teacher-memo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a recipe whose method memoises its teacher (e.g. KD)")
    parser.add_argument("--batch_size", type=int, default=500, help="views per teacher pass (default 500)")
    known, cli_args = parser.parse_known_args(args)
    with one_line_errors("lit-kd teacher-memo"):
        cli = LitKDCLI(args=["--config", known.config, *cli_args], run=False)
        module, datamodule = cli.model, cli.datamodule
        if getattr(module, "teacher_memo_path", None) is None:
            raise ValueError("set the memo file: --model.init_args.teacher_memo PATH")
        precompute(module, datamodule, cli.trainer, known.batch_size)
