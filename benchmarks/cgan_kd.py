"""cGAN-KD at a tiny CPU budget: does a student trained on few labels gain from filtered synthetic images?

(1) CIFAR-10 with 10% of the labels (``train_fraction 0.1``: 5,000 images, 500 per class). A small class-conditional
    GAN (:class:`~lit_kd.methods.ConditionalGAN`) trains for ``--gan-steps`` steps on the labelled images; stage 2
    (:func:`lit_kd.synthesis.run`) draws ``--per-label`` samples per class, keeps those the teacher (a ResNet-20
    trained on 10k images) assigns to their class with probability >= ``--min-confidence``, relabels them with the
    teacher; a ResNet-8 student then trains for ``--student-steps`` steps on the labelled images alone (baseline) and
    on labelled + synthetic images (same steps, seed and optimiser: SGD 0.1 Nesterov, cosine over the steps); top-1
    on the full CIFAR-10 test set.
(2) UTKFace age regression (64x64, ages 1-60, 6,772 training faces): the same with a CcGAN (soft vicinal loss,
    ``--utkface-gan-steps``) sampled over the training ages, the regression teacher of ``--utkface-teacher`` and a
    tolerance filter (teacher age within ``--tolerance`` years of the conditioning age); a ResNet-8 regressor (SGD
    0.01, momentum 0.9, weight decay 5e-4 as cGAN-KD's UTKFace CNNs, cosine over the steps) on real vs real +
    synthetic; test MAE in years.

Budgets are minutes of one CPU thread, far from the paper's (tens of thousands of GAN iterations on GPUs): this
checks that the pipeline runs end to end on real data and shows what it does at that budget, nothing more.

    python benchmarks/cgan_kd.py --data-dir ~/.cache/lit-kd --teacher /tmp/lit-kd-bench/teacher_resnet20.ckpt \
        --utkface-teacher /tmp/lit-kd-bench/utkface_teacher.ckpt [--utkface-teacher-arch resnet8] [--skip-utkface]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from common import markdown_table, quiet_benchmark, quiet_trainer, write_results
from torchvision.utils import save_image

from lit_kd.data import CIFAR10DataModule, InMemoryImageDataModule, UTKFaceDataModule, load_synthetic_set
from lit_kd.methods import ConditionalGAN, SupervisedModule
from lit_kd.models import ConditionalGenerator, ProjectionDiscriminator, create_model
from lit_kd.synthesis import generate, load_conditional_gan, run


def train_gan(
    data: InMemoryImageDataModule,
    num_classes: int | None,
    steps: int,
    channels: int,
    args: argparse.Namespace,
    path: Path,
) -> dict:
    """Stage 1: train a small conditional GAN for ``steps`` steps and save its checkpoint to ``path``."""
    pl.seed_everything(0, verbose=False)
    sizes = dict(image_size=data.image_size, base_channels=channels, embed_dim=64)
    gan = ConditionalGAN(
        ConditionalGenerator(num_classes, latent_dim=64, **sizes),
        ProjectionDiscriminator(num_classes, **sizes),
        discriminator_steps=args.discriminator_steps,
        betas=(0.5, 0.999),
    )
    trainer = quiet_trainer(max_steps=steps, max_epochs=-1, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(gan, data)
    seconds = time.perf_counter() - start
    trainer.save_checkpoint(path)
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    print(f"GAN {path.name}: {steps} steps in {seconds:.0f} s, last metrics {metrics}", flush=True)
    return {"steps": steps, "base_channels": channels, "seconds": round(seconds, 1), "last_metrics": metrics}


def save_samples(checkpoint: Path, labels: torch.Tensor, path: Path) -> None:
    """A picture of generated samples (for looking at, not part of the results)."""
    generator, _, _ = load_conditional_gan(checkpoint)
    images = generate(generator, labels, seed=123)
    save_image(images.float() / 255, path, nrow=8)


def train_student(data: InMemoryImageDataModule, num_outputs: int, steps: int, regression: bool) -> dict:
    """Stage 3: a ResNet-8 trained for ``steps`` steps; its test metrics."""
    pl.seed_everything(0, verbose=False)
    options: dict[str, Any] = {}
    if regression:
        options["optimizer"] = lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    module = SupervisedModule(create_model("resnet8", num_classes=num_outputs), **options)
    trainer = quiet_trainer(max_steps=steps, max_epochs=-1, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(module, data)
    seconds = time.perf_counter() - start
    result = trainer.test(module, data, verbose=False)[0]
    return {"train images": len(data.train_set.targets), "train time (s)": round(seconds, 1), **result}


def synthesize_and_compare(
    data: Callable[..., InMemoryImageDataModule],
    gan_checkpoint: Path,
    teacher: torch.nn.Module,
    teacher_checkpoint: Path,
    output_dir: Path,
    filter_options: dict[str, Any],
    student: dict[str, Any],
) -> tuple[list[dict], dict]:
    """Stage 2 (filter with the teacher), then stage 3 on real only vs real + synthetic: one row each.

    ``student`` holds the stage-3 settings: ``label`` (the dataset's name in the printout), ``real_name``,
    ``num_outputs``, ``steps``, ``batch_size``, ``regression`` and the reported metric as ``metric`` (the test key)
    and ``column``.
    """
    start = time.perf_counter()
    directory = run(
        str(gan_checkpoint), teacher, str(teacher_checkpoint), data(), str(output_dir), device="cpu", **filter_options
    )
    synthesis_seconds = time.perf_counter() - start
    counts = load_synthetic_set(directory).provenance["counts"]
    print(f"{student['label']} synthetic set: {counts['kept']} of {counts['generated']} kept", flush=True)
    rows = []
    for name, synthetic in ((student["real_name"], None), ("real + filtered synthetic", directory)):
        result = train_student(
            data(batch_size=student["batch_size"], synthetic_dir=synthetic),
            student["num_outputs"],
            student["steps"],
            student["regression"],
        )
        rows.append({"training data": name, **{k: result[k] for k in ("train images", "train time (s)")}})
        rows[-1][student["column"]] = result[student["metric"]] * student.get("metric_scale", 1)
        print(f"{student['label']} student, {name}: {rows[-1]}", flush=True)
    return rows, {"synthesis_seconds": round(synthesis_seconds, 1), "synthetic_counts": counts}


def cifar10(args: argparse.Namespace, work: Path) -> tuple[list[dict], dict]:
    def data(**kwargs: Any) -> CIFAR10DataModule:
        return CIFAR10DataModule(args.data_dir, train_fraction=0.1, eval_batch_size=500, **kwargs)

    gan_data = data(batch_size=args.gan_batch_size, crop_padding=0)
    gan = train_gan(gan_data, 10, args.gan_steps, args.gan_channels, args, work / "cifar10_gan.ckpt")
    save_samples(work / "cifar10_gan.ckpt", torch.arange(10).repeat_interleave(8), work / "cifar10_samples.png")
    rows, details = synthesize_and_compare(
        data,
        work / "cifar10_gan.ckpt",
        create_model(args.teacher_arch, num_classes=10),
        args.teacher,
        work / "cifar10_synthetic",
        {"per_label": args.per_label, "min_confidence": args.min_confidence},
        {
            "label": "CIFAR-10",
            "real_name": "real only (10% labels)",
            "num_outputs": 10,
            "steps": args.student_steps,
            "batch_size": 128,
            "regression": False,
            "metric": "test/acc",
            "metric_scale": 100,
            "column": "test top-1 (%)",
        },
    )
    return rows, {"gan": gan, **details}


def utkface(args: argparse.Namespace, work: Path) -> tuple[list[dict], dict]:
    def data(**kwargs: Any) -> UTKFaceDataModule:
        return UTKFaceDataModule(args.data_dir, eval_batch_size=500, **kwargs)

    gan_data = data(batch_size=args.utkface_gan_batch_size)
    gan = train_gan(gan_data, None, args.utkface_gan_steps, args.utkface_gan_channels, args, work / "utkface_gan.ckpt")
    save_samples(
        work / "utkface_gan.ckpt", torch.linspace(0.1, 1.0, 8).repeat_interleave(8), work / "utkface_samples.png"
    )
    rows, details = synthesize_and_compare(
        data,
        work / "utkface_gan.ckpt",
        create_model(args.utkface_teacher_arch, num_classes=1),
        args.utkface_teacher,
        work / "utkface_synthetic",
        {"per_label": args.utkface_per_label, "tolerance": args.tolerance},
        {
            "label": "UTKFace",
            "real_name": "real only",
            "num_outputs": 1,
            "steps": args.utkface_student_steps,
            "batch_size": 64,
            "regression": True,
            "metric": "test/mae",
            "column": "test MAE (years)",
        },
    )
    return rows, {"gan": gan, **details}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="holds cifar10/{train,test} and UTKFace/")
    parser.add_argument("--teacher", type=Path, required=True, help="checkpoint of the CIFAR-10 teacher")
    parser.add_argument("--teacher-arch", default="resnet20")
    parser.add_argument("--utkface-teacher", type=Path, help="checkpoint of the UTKFace age teacher")
    parser.add_argument("--utkface-teacher-arch", default="resnet8")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/lit-kd-bench/cgan_kd"))
    parser.add_argument("--gan-steps", type=int, default=300, help="GAN steps (discriminator and generator)")
    parser.add_argument("--gan-batch-size", type=int, default=64)
    parser.add_argument("--gan-channels", type=int, default=16, help="base_channels of generator/discriminator")
    parser.add_argument("--discriminator-steps", type=int, default=2)
    parser.add_argument("--per-label", type=int, default=300, help="CIFAR-10 samples generated per class")
    parser.add_argument("--min-confidence", type=float, default=0.5)
    parser.add_argument("--student-steps", type=int, default=150)
    parser.add_argument("--utkface-gan-steps", type=int, default=200)
    parser.add_argument("--utkface-gan-batch-size", type=int, default=32)
    parser.add_argument("--utkface-gan-channels", type=int, default=8)
    parser.add_argument("--utkface-per-label", type=int, default=30, help="samples generated per training age")
    parser.add_argument("--tolerance", type=float, default=5.0, help="years")
    parser.add_argument("--utkface-student-steps", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    parser.add_argument("--skip-utkface", action="store_true")
    args = parser.parse_args()
    quiet_benchmark(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    started = time.perf_counter()
    cifar_rows, cifar_details = cifar10(args, args.work_dir)
    tables = [
        f"CIFAR-10, 10% of the labels (5,000 images): ResNet-8 student, {args.student_steps} steps of batch 128; "
        f"synthetic: {cifar_details['synthetic_counts']['kept']} of {cifar_details['synthetic_counts']['generated']} "
        f"generated images kept by the {args.teacher_arch} teacher (p(class) >= {args.min_confidence}); GAN "
        f"{args.gan_steps} steps ({cifar_details['gan']['seconds']:.0f} s)\n\n" + markdown_table(cifar_rows)
    ]
    payload: dict[str, Any] = {"settings": settings, "cifar10": {"rows": cifar_rows, **cifar_details}}
    if args.skip_utkface or args.utkface_teacher is None:
        payload["utkface"] = "not run (--skip-utkface or no --utkface-teacher)"
    else:
        utk_rows, utk_details = utkface(args, args.work_dir)
        counts = utk_details["synthetic_counts"]
        tables.append(
            f"UTKFace age regression: ResNet-8 student, {args.utkface_student_steps} steps of batch 64; synthetic: "
            f"{counts['kept']} of {counts['generated']} generated faces kept (teacher age within {args.tolerance} "
            f"years); CcGAN {args.utkface_gan_steps} steps ({utk_details['gan']['seconds']:.0f} s)\n\n"
            + markdown_table(utk_rows)
        )
        payload["utkface"] = {"rows": utk_rows, **utk_details}
    payload["total_seconds"] = round(time.perf_counter() - started, 1)
    write_results("cgan_kd", payload, "\n\n".join(tables))


if __name__ == "__main__":
    main()
