"""Where a distillation step's time goes: the teacher, the student's forward, the loss, the backward, the update.

For Hinton KD and attention transfer (ResNet-56 -> ResNet-20, batch 128, as in ``peer_throughput.py``), each phase
of a training step is timed on its own, in the order a step runs it, with the method's own pieces:

* **teacher**: the method's gradient-free teacher pass (``teacher_logits``; AT: its taps on the inference copy);
* **student forward**: the student (AT: with its taps);
* **loss**: the method's loss terms on those outputs;
* **backward** and **optimiser step** (SGD, momentum 0.9, weight decay 5e-4).

With a memoised teacher the teacher phase is what remains of it (reading the memo); this script measures the
recomputed teacher, which is the cost a memo removes. Phases are medians over ``--steps`` steps after two warm-up
steps, interleaved over ``--repeats`` rounds (the median round is reported), with the load at the start of each
round; a round at a load of ``--max-load`` or more is discarded. ``student floor`` is the sum of every phase but the
teacher: the step a free teacher would leave. Writes ``benchmarks/results/step_profile.{json,md}``.

    python benchmarks/step_profile.py [--batch-size 128] [--steps 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import load_average, markdown_table, quiet_benchmark, write_results

from lit_kd.losses import attention_transfer_loss, soft_target_kl
from lit_kd.methods import AttentionTransfer, HintonKD
from lit_kd.models import create_model
from lit_kd.runtime.teacher import resolve_precision

PHASES = ("teacher", "student forward", "loss", "backward", "optimiser step")


def kd_phases(module: HintonKD) -> dict[str, Callable]:
    """The phases of a Hinton KD step, each a function of what the previous ones returned."""
    return {
        "teacher": lambda state: state.update(teacher=module.teacher_logits(state["images"])),
        "student forward": lambda state: state.update(student=module.student(state["images"])),
        "loss": lambda state: state.update(
            loss=module.ce_weight * F.cross_entropy(state["student"], state["targets"])
            + module.kd_weight * soft_target_kl(state["student"], state["teacher"], module.temperature)
        ),
    }


def at_phases(module: AttentionTransfer) -> dict[str, Callable]:
    """The phases of an attention-transfer step."""

    def teacher(state: dict) -> None:
        network = module.frozen_teacher
        _, state["teacher"] = module.teacher_forward(lambda batch: module.teacher_taps(batch, network), state["images"])

    def student(state: dict) -> None:
        state["logits"], state["student"] = module.student_taps(state["images"])

    def loss(state: dict) -> None:
        pairs = zip(state["student"], state["teacher"], strict=True)
        attention = sum(attention_transfer_loss(s, t, module.p) for s, t in pairs)
        state["loss"] = F.cross_entropy(state["logits"], state["targets"]) + module.beta * attention

    return {"teacher": teacher, "student forward": student, "loss": loss}


def profile_round(module, phases: dict[str, Callable], args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of each phase over ``args.steps`` steps (after 2 warm-up steps) of one round."""
    optimizer = torch.optim.SGD(module.student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    steps = {
        **phases,
        "backward": lambda state: state["loss"].backward(),
        "optimiser step": lambda state: (optimizer.step(), optimizer.zero_grad(set_to_none=True)),
    }
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, 32, 32, generator=generator)
    if module.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (args.batch_size,), generator=generator)
    times: dict[str, list[float]] = {name: [] for name in PHASES}
    for step in range(args.steps + 2):
        state = {"images": images, "targets": targets}
        for name, run in steps.items():
            start = time.perf_counter()
            run(state)
            if step >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build(method: str, precision: str) -> tuple[torch.nn.Module, Callable]:
    """The method's module (ResNet-56 -> ResNet-20, with lit-kd's default speed options: channels-last where safe),
    its teacher in ``precision``, and its phases."""
    student, teacher = create_model("resnet20", num_classes=10), create_model("resnet56", num_classes=10)
    kind = HintonKD if method == "kd" else AttentionTransfer
    module = kind(student, teacher, teacher_precision=precision)
    module.apply_speed_options()  # what the module's setup does in a Trainer
    return module, kd_phases(module) if method == "kd" else at_phases(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["kd", "at"], choices=["kd", "at"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["32", "auto"],
        help="teacher precisions (auto: the default, bf16 on a CPU with native bf16)",
    )
    args = parser.parse_args()
    quiet_benchmark(args.threads)
    os.environ.pop("LIT_KD_TEACHER_PRECISION", None)  # "auto" as it resolves on this CPU
    sides = [f"{method}, teacher {precision}" for method in args.methods for precision in args.precisions]
    modules = {side: build(*side.split(", teacher ")) for side in sides}
    rounds: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    loads: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.repeats):
        for method, (module, phases) in modules.items():
            load = load_average()
            result = profile_round(module.train(), phases, args)
            loads[method].append(load)
            if load < args.max_load:
                rounds[method].append(result)
    rows = []
    for method in sides:
        if not rounds[method]:
            print(f"{method}: every round started at a load >= {args.max_load}: nothing reported")
            continue
        totals = [sum(result.values()) for result in rounds[method]]
        median_round = rounds[method][totals.index(statistics.median_low(totals))]
        total = sum(median_round.values())
        row = {"method, teacher precision": method, "step ms": 1000 * total}
        row.update(
            {
                f"{name} ms (%)": f"{1000 * median_round[name]:.0f} ({100 * median_round[name] / total:.0f}%)"
                for name in PHASES
            }
        )
        row["student floor ms"] = 1000 * (total - median_round["teacher"])
        row["images/s"] = args.batch_size / total
        row["floor images/s"] = args.batch_size / (total - median_round["teacher"])
        row["clean rounds"] = len(rounds[method])
        row["loads"] = ", ".join(f"{value:.2f}" for value in loads[method])
        rows.append(row)
    auto = resolve_precision("auto", torch.device("cpu"))
    table = markdown_table(rows) + (
        f"\n\nResNet-56 -> ResNet-20, batch {args.batch_size}, {args.threads} threads, channels-last where safe, "
        f"teacher recomputed (folded inference copy, inference mode; auto = {auto} "
        f"on this CPU); each phase the median of {args.steps} steps "
        f"after 2 warm-up steps; the round with the median total of {args.repeats} interleaved rounds; rounds "
        f"starting at a load >= {args.max_load} discarded."
    )
    write_results("step_profile", {"settings": vars(args), "rows": rows, "rounds": rounds, "loads": loads}, table)


if __name__ == "__main__":
    main()
