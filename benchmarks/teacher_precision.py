"""The frozen teacher's gradient-free forward pass in float32 and in bfloat16: speed, and agreement with float32.

``teacher_precision="bf16"`` (:class:`lit_kd.runtime.teacher.TeacherRunner`) runs the teacher's gradient-free passes
under CPU autocast in bfloat16. Whether that is worth making a default depends on the CPU: oneDNN has native bf16
kernels only where the CPU has AVX512-BF16 or AMX; elsewhere bf16 is emulated (converted to float32 around each
kernel), which is slower than float32. This benchmark reports, for the zoo teachers:

* **speed**: images/s of the teacher's forward pass (the training path: BatchNorm-folded inference copy,
  channels-last, ``inference_mode``) in float32 and in bf16, interleaved over ``--repeats`` rounds, with the 1-minute
  load average at the start of each measurement; a round that starts at a load of ``--max-load`` or more, or during
  which other processes used more than 10% of the CPUs, is discarded;
* **agreement**: on the real CIFAR-10 test split, the pretrained ResNet-56 (``--pretrained``) in bf16 against
  float32: top-1 agreement and the largest and mean absolute logit difference.

The rule of issue 26: bf16 becomes the default only on a CPU where it is faster *and* top-1 agreement is at least
99.5%. The CPU's flags are recorded with the results. Writes ``benchmarks/results/teacher_precision.{json,md}``.

    python benchmarks/teacher_precision.py --data-dir ~/data --weights-dir ../shared/weights
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from common import busy_seconds, cpuinfo, load_average, markdown_table, own_seconds, quiet_benchmark, write_results

from lit_kd.data import CIFAR10DataModule
from lit_kd.models import PretrainedNetwork, create_model
from lit_kd.models.normalization import match_input_normalization
from lit_kd.runtime.teacher import TeacherRunner

#: CPU flags that give oneDNN native bf16 kernels (Linux ``/proc/cpuinfo`` names)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
AGREEMENT_TARGET = 0.995


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), empty where ``/proc/cpuinfo`` is not readable."""
    return set(cpuinfo("flags").split())


def images_per_second(runner: TeacherRunner, images: torch.Tensor, iterations: int) -> tuple[float, float, float]:
    """Images/s of ``iterations`` teacher passes on ``images`` (after one warm-up), the load at the start, and the
    share of the CPUs that other processes used meanwhile."""
    network = runner.network
    runner.targets(network, images)  # warm-up: oneDNN primitives, the inference copy
    load = load_average()
    busy, own = busy_seconds(), own_seconds()
    start = time.perf_counter()
    for _ in range(iterations):
        runner.targets(network, images)
    seconds = time.perf_counter() - start
    others = max(0.0, (busy_seconds() - busy) - (own_seconds() - own)) / (seconds * (os.cpu_count() or 1))
    return iterations * len(images) / seconds, load, others


def speed(args: argparse.Namespace) -> list[dict]:
    """Interleaved float32 / bf16 rounds for each teacher; the median of the clean rounds."""
    rows = []
    images = torch.randn(args.batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    for name in args.teachers:
        teacher = create_model(name, num_classes=10).eval().requires_grad_(False)
        teacher = teacher.to(memory_format=torch.channels_last)
        runners = {precision: TeacherRunner(teacher, precision=precision) for precision in ("32", "bf16")}
        clean: dict[str, list[float]] = {"32": [], "bf16": []}
        discarded, loads = 0, []
        for _ in range(args.repeats):
            for precision, runner in runners.items():
                rate, load, others = images_per_second(runner, images, args.iterations)
                loads.append(load)
                if load < args.max_load and others <= 0.10:
                    clean[precision].append(rate)
                else:
                    discarded += 1
        fp32 = statistics.median(clean["32"]) if clean["32"] else float("nan")
        bf16 = statistics.median(clean["bf16"]) if clean["bf16"] else float("nan")
        rows.append(
            {
                "teacher": name,
                "fp32 img/s": fp32,
                "bf16 img/s": bf16,
                "bf16 / fp32": bf16 / fp32,
                "clean rounds": f"{len(clean['32'])} + {len(clean['bf16'])}",
                "discarded": discarded,
                "load at the starts": f"{min(loads):.2f}-{max(loads):.2f}",
            }
        )
        print(rows[-1], flush=True)
    return rows


def agreement(args: argparse.Namespace) -> dict:
    """The pretrained teacher's bf16 logits against its float32 logits on the real test split."""
    teacher = PretrainedNetwork(args.pretrained, weights_dir=args.weights_dir)
    data = CIFAR10DataModule(args.data_dir, eval_batch_size=args.batch_size, cache_dir=args.cache_dir)
    data.setup("test")
    match_input_normalization(teacher, data.mean, data.std)  # as the methods do: batches in the data's normalisation
    teacher = teacher.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    runners = {precision: TeacherRunner(teacher, precision=precision) for precision in ("32", "bf16")}
    load = load_average()
    agree = total = 0
    largest = mean_sum = 0.0
    for index, batch in enumerate(data.test_dataloader()):
        images, *_ = data.on_after_batch_transfer(batch, 0)  # decoded uint8 -> normalised float, as in training
        images = images.contiguous(memory_format=torch.channels_last)
        if args.agreement_images is not None and total >= args.agreement_images:
            break
        fp32 = runners["32"].targets(runners["32"].network, images)
        bf16 = runners["bf16"].targets(runners["bf16"].network, images)
        agree += int((fp32.argmax(1) == bf16.argmax(1)).sum())
        total += len(images)
        difference = (fp32 - bf16).abs()
        largest = max(largest, float(difference.max()))
        mean_sum += float(difference.mean()) * len(images)
        if index % 10 == 0:
            print(f"  agreement: {total} images, {agree / total:.4%}", flush=True)
    return {
        "teacher": args.pretrained,
        "images": total,
        "top-1 agreement": agree / total,
        "max abs logit difference": largest,
        "mean abs logit difference": mean_sum / total,
        "load at the start": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar10/ (the JPEG export)")
    parser.add_argument("--weights-dir", default=os.environ.get("LIT_KD_WEIGHTS"), help="the pretrained weights")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default ~/.cache/lit-kd)")
    parser.add_argument("--teachers", nargs="+", default=["resnet56", "resnet110", "wrn_40_2"])
    parser.add_argument("--pretrained", default="cifar10_resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=5, help="teacher passes per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved fp32/bf16 rounds per teacher")
    parser.add_argument("--max-load", type=float, default=1.5, help="discard a round that starts at this load")
    parser.add_argument("--agreement-images", type=int, default=None, help="test images compared (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    quiet_benchmark(args.threads)
    flags = cpu_flags()
    native = sorted(flag for flag in NATIVE_BF16_FLAGS if flag in flags)
    mkldnn_bf16 = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    print(f"native bf16 flags: {native or 'none'}; oneDNN bf16 supported: {mkldnn_bf16}", flush=True)
    rows = speed(args)
    agreed = agreement(args)
    faster = all(row["bf16 / fp32"] > 1 for row in rows)
    agrees = agreed["top-1 agreement"] >= AGREEMENT_TARGET
    decision = (
        "bf16 is faster and agrees: a default candidate on this CPU"
        if faster and agrees
        else f"bf16 stays off by default on this CPU: faster {faster}, top-1 agreement >= 99.5% {agrees}"
    )
    table = "\n\n".join(
        [
            f"CPU native bf16 flags: {', '.join(native) or 'none'}; oneDNN bf16 supported: {mkldnn_bf16}; "
            f"batch {args.batch_size}, {args.iterations} passes per measurement, {args.repeats} interleaved rounds, "
            f"a round discarded at load >= {args.max_load} or others > 10% of the CPUs.",
            markdown_table(rows),
            f"Agreement on the real CIFAR-10 test split ({agreed['images']} images):",
            markdown_table([agreed]),
            f"Decision: {decision}.",
        ]
    )
    payload = {
        "settings": {key: str(value) for key, value in vars(args).items()},
        "native_bf16_flags": native,
        "mkldnn_bf16_supported": mkldnn_bf16,
        "speed": rows,
        "agreement": agreed,
        "decision": decision,
    }
    write_results("teacher_precision", payload, table)


if __name__ == "__main__":
    main()
