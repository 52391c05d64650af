"""The cost of CRD's contrastive scores: the official gather-then-multiply against lit-kd's scoring of every bank row.

RepDistiller gathers the ``K + 1`` drawn rows of each sample from the memory bank (a ``[B, K + 1, D]`` tensor) and
multiplies them with the embedding (``crd/memory.py:39-47``). Where the bank holds no more rows than that gather
(``N <= (K + 1) * D``), lit-kd's ``ContrastMemory`` scores every bank row with one matrix product and picks the drawn
ones: the same products. This times the forward and backward pass of both anchors' scores, both ways, on the same
embeddings, banks and draws (batch 128, ``K = 16384``, ``D = 128``: RepDistiller's defaults), for each ``--num-samples``
(5,000: the gains table's subset; 50,000: all of CIFAR), in interleaved rounds with the load recorded; the reported
figure is each side's median. The two ways' scores are compared as well. Writes
``benchmarks/results/crd_scores.{json,md}``.

    python benchmarks/crd_scores.py [--num-samples 5000 50000] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import load_average, markdown_table, quiet_benchmark, write_results

from lit_kd.losses import ContrastMemory


def official_exp_scores(bank: torch.Tensor, embedding: torch.Tensor, indices: torch.Tensor, temperature: float):
    """``crd/memory.py:39-47``: gather the drawn rows, batch-multiply, exponentiate."""
    rows = torch.index_select(bank, 0, indices.view(-1)).view(*indices.shape, -1)
    return torch.exp(torch.bmm(rows, embedding.unsqueeze(2)).squeeze(2) / temperature)


def seconds(scores, embeddings: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Wall seconds of one forward and backward pass of ``scores(student, teacher)`` (both anchors' scores)."""
    embeddings = tuple(embedding.detach().requires_grad_() for embedding in embeddings)
    start = time.perf_counter()
    sum(part.sum() for part in scores(*embeddings)).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", nargs="+", type=int, default=[5000, 50000])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-negatives", type=int, default=16384)
    parser.add_argument("--feature-dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    quiet_benchmark(args.threads)
    rows = []
    for num_samples in args.num_samples:
        generator = torch.Generator().manual_seed(0)
        memory = ContrastMemory(
            num_samples, args.feature_dim, args.num_negatives, labels=torch.arange(num_samples) % 10
        ).train()
        embeddings = tuple(
            F.normalize(torch.randn(args.batch_size, args.feature_dim, generator=generator), dim=1) for _ in "st"
        )
        indices = memory.sample_contrast_indices(torch.randperm(num_samples, generator=generator)[: args.batch_size])
        with torch.no_grad():
            memory.scores(*embeddings, indices)  # fixes the normalisation constants, as the first training batch

        def official(student, teacher, memory=memory, indices=indices):
            """Both anchors' scores as ``crd/memory.py:39-59`` computes them (constants fixed)."""
            return (
                official_exp_scores(memory.teacher_bank, student, indices, memory.temperature)
                / memory.student_normalizer,
                official_exp_scores(memory.student_bank, teacher, indices, memory.temperature)
                / memory.teacher_normalizer,
            )

        sides = {"official gather": official, "lit-kd": lambda s, t, m=memory, i=indices: m.scores(s, t, i)}
        with torch.no_grad():
            official_scores, our_scores = (torch.cat(list(scores(*embeddings))) for scores in sides.values())
        times: dict[str, list[float]] = {side: [] for side in sides}
        loads = []
        for _ in range(args.repeats + 1):  # the first round warms up and is not kept
            loads.append(load_average())
            for side, scores in sides.items():
                times[side].append(seconds(scores, embeddings))
        official_s, ours_s = (statistics.median(values[1:]) for values in times.values())
        rows.append(
            {
                "samples N": num_samples,
                "official ms": 1000 * official_s,
                "lit-kd ms": 1000 * ours_s,
                "speed-up": official_s / ours_s,
                "max rel. score diff": float(((official_scores - our_scores).abs() / official_scores).max()),
                "loads": ", ".join(f"{load:.2f}" for load in loads),
            }
        )
    table = markdown_table(rows) + (
        f"\n\nCRD's scores of both anchors, forward and backward: batch {args.batch_size}, K = {args.num_negatives}, "
        f"D = {args.feature_dim}, float32, {args.threads} thread(s); the median of {args.repeats} interleaved rounds "
        "after one warm-up round, the load average at the start of each round."
    )
    write_results("crd_scores", {"settings": vars(args), "rows": rows}, table)


if __name__ == "__main__":
    main()
