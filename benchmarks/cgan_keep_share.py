"""How long must cGAN-KD's GAN train before the teacher's filter keeps a meaningful share of what it generates?

The cGAN-KD row of ``gains.py`` trains a class-conditional GAN on 10% of the labels for ``--gan-steps`` updates
(4 discriminator : 1 generator), draws ``--gan-per-label`` images per class and keeps those the adapted teacher gives
their conditioning class with p >= 0.9. At the smoke budget (1,000 updates) the filter kept 819 of 10,000 images
(8%, ``benchmarks/results/gains.md``). This trains that same GAN (``gains.Runner.gan``: the same seed, data and
networks) once, to ``--gan-steps``, and every ``--every`` updates draws ``--per-label`` images per class with
:func:`lit_kd.synthesis.synthesize` as the row does (its own noise seed: the GAN's training is not disturbed) and
records the share the filter keeps, with the time and the load. The row's ``--gan-steps`` is then chosen where that
share is meaningful, and stated with the table.

Resumable as ``gains.py``: the GAN's ``last.ckpt`` after every epoch under ``--output-dir``/resume, the shares so far
in ``benchmarks/results/<name>.partial.json`` (``--commit`` commits that file after each one).

    python benchmarks/cgan_keep_share.py --data-dir /tmp/data --weights-dir /work/shared/weights \\
        --teacher-checkpoint /work/runs/checkpoints/cifar10/adapt_pretrained_resnet56/last.ckpt \\
        --gan-steps 8000 --every 1000 --threads 1 --commit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from common import load_average, markdown_table, quiet_benchmark, run_stoppable, write_results
from gains import Runner, add_runner_arguments, commit_partial, run_id, save_seed, set_aside_other_settings

from lit_kd.synthesis import synthesize

#: the teacher's confidence the filter asks for (gains.py's cGAN-KD row)
MIN_CONFIDENCE = 0.9


class KeepShare(pl.Callback):
    """Every ``every`` GAN updates: the share of ``per_label`` images per class that the teacher's filter keeps."""

    def __init__(self, runner: Runner, data: Any, every: int, per_label: int, done: dict[str, Any], save: Any) -> None:
        self.runner, self.data, self.every, self.per_label = runner, data, every, per_label
        self.done, self.save = done, save
        self.teacher = runner.adapted_teacher().eval()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if (step % self.every and step != trainer.max_steps) or str(step) in self.done:
            return
        clock = next(c for c in trainer.callbacks if type(c).__name__ == "TrainingClock")
        measuring = sum(row["filter_seconds"] for row in self.done.values() if row["gan_steps"] < step)
        training_seconds = clock.seconds() - measuring  # the GAN's own time: the measurements so far taken out
        start = time.perf_counter()
        _, targets, counts = synthesize(
            module.generator, self.teacher, self.data, {}, per_label=self.per_label, min_confidence=MIN_CONFIDENCE
        )
        module.generator.train()  # synthesize put it in eval mode; the GAN trains on
        generated = sum(count["generated"] for count in counts.values())
        self.done[str(step)] = {
            "gan_steps": step,
            "generated": generated,
            "kept": len(targets),
            "share": len(targets) / generated,
            "kept_per_class": {label: count["kept"] for label, count in counts.items()},
            "training_seconds": training_seconds,
            "filter_seconds": time.perf_counter() - start,
            "load": load_average(),
        }
        print(f"{step} GAN updates: the filter keeps {len(targets)} of {generated}", flush=True)
        self.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_runner_arguments(parser)  # gains.py's data, weights, teacher and seeds (the first seed is used)
    parser.add_argument(
        "--gan-steps", type=int, default=8000, help="GAN updates in all (4 discriminator : 1 generator)"
    )
    parser.add_argument("--every", type=int, default=1000, help="measure the share every this many updates")
    parser.add_argument("--per-label", type=int, default=200, help="images drawn per class for each measurement")
    parser.add_argument("--gan-channels", type=int, default=32, help="as gains.py's --gan-channels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/gains"))
    parser.add_argument("--name", default="cgan_keep_share")
    parser.add_argument("--partial-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--commit", action="store_true", help="git-commit the partial results after every share")
    args = parser.parse_args()
    quiet_benchmark(args.threads)
    warnings.filterwarnings("ignore")
    os.environ["LIT_KD_TEACHER_PRECISION"] = "32"  # as gains.py's rows
    seed = args.seeds[0]
    args.val_size, args.overrides = 0, {}  # what gains.Runner reads besides these options
    settings = {
        k: str(v) for k, v in vars(args).items() if k in ("data_dir", "weights_dir", "teacher_checkpoint", "subset")
    }
    settings |= {k: str(getattr(args, k)) for k in ("gan_steps", "gan_channels", "per_label", "every")}
    args.run_id = run_id(args.name, settings)
    partial = args.partial_dir / f"{args.name}.partial.json"
    exactly = dict  # this file's settings are all the probe's own: compared whole (gains.py sets budgets apart)
    set_aside_other_settings(partial, settings, identity=exactly)
    stored = json.loads(partial.read_text())["results"].get(str(seed), {}) if partial.is_file() else {}

    def save() -> None:
        save_seed(partial, settings, str(seed), stored, identity=exactly)
        if args.commit:
            commit_partial(partial, f"{args.name}: seed {seed}, {len(stored)} shares")

    runner = Runner(args, seed)
    gan, data = runner.gan()
    probe = KeepShare(runner, data, args.every, args.per_label, stored, save)
    if str(args.gan_steps) not in stored:
        runner.fit(gan, "cGAN-KD keep share", "GAN", data, (probe,), max_steps=args.gan_steps, max_epochs=-1)
        shutil.rmtree(runner.resume_dir(), ignore_errors=True)
    rows = [
        {
            "GAN updates": row["gan_steps"],
            "kept / generated": f"{row['kept']} / {row['generated']}",
            "share kept %": 100 * row["share"],
            "training s": row["training_seconds"],
            "load": row["load"],
        }
        for row in sorted(stored.values(), key=lambda r: r["gan_steps"])
    ]
    table = markdown_table(rows) + (
        f"\n\ncGAN-KD's GAN (gains.py's row: 10% of the labels, seed {seed}, base channels {args.gan_channels}), the "
        f"adapted teacher's filter at p >= {MIN_CONFIDENCE}, {args.per_label} images per class per measurement; "
        f"{args.threads} thread(s)."
    )
    write_results(args.name, {"settings": settings, "seed": seed, "results": stored}, table)


if __name__ == "__main__":
    run_stoppable(main)
