"""The adapted ResNet-56 teacher re-made by its recipe under other kernels: how far apart are the results?

``recipes/cifar10/adapt_pretrained_resnet56.yaml`` fine-tunes the pretrained ResNet-56 for 2 epochs. The same
command, seed and data give other weights on another CPU, or under other ATen/oneDNN/MKL instruction sets, because
float32 sums are rounded in another order (``benchmarks/gains.py``'s docstring lists the hashes seen). This script
measures what that does to the teacher a table reads: for each checkpoint given, its weights' hash
(:func:`lit_kd.runtime.memo.weights_hash`, as ``gains.py`` records it) and test accuracy on the full test split; for
each pair, the share of test images on which their top-1 predictions agree, the largest difference of a class
probability, and the largest weight difference.

    python benchmarks/teacher_remake.py --data-dir /tmp/data --weights-dir ../shared/weights \\
        --teacher default=checkpoints/cifar10/adapt_pretrained_resnet56/last.ckpt mkl-avx2=t2/.../last.ckpt
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
from common import load_average, markdown_table, quiet_benchmark, quiet_trainer, write_results

from lit_kd.checkpointing import load_network_weights
from lit_kd.data import CIFAR10DataModule
from lit_kd.methods import SupervisedModule
from lit_kd.models import PretrainedNetwork
from lit_kd.runtime.memo import weights_hash


def labelled(item: str) -> tuple[str, Path]:
    label, _, path = item.partition("=")
    if not path:
        raise argparse.ArgumentTypeError(f"{item!r}: expected LABEL=CHECKPOINT")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding cifar10/")
    parser.add_argument("--weights-dir", type=Path, required=True, help="the pretrained CIFAR-10 ResNets")
    parser.add_argument("--teacher", type=labelled, nargs="+", required=True, help="LABEL=CHECKPOINT, two or more")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="teacher_remake", help="results file name under benchmarks/results/")
    args = parser.parse_args()
    quiet_benchmark(args.threads)

    data = CIFAR10DataModule(args.data_dir, batch_size=128, eval_batch_size=500)  # as gains.py tests its teacher
    networks, probabilities, rows = {}, {}, []
    for label, checkpoint in args.teacher:
        network = PretrainedNetwork("cifar10_resnet56", weights_dir=args.weights_dir)
        load_network_weights(network, checkpoint)
        batches = quiet_trainer(accelerator="cpu").predict(SupervisedModule(network), data)  # the test split
        order = torch.cat([batch["index"] for batch in batches]).argsort()
        networks[label] = network
        probabilities[label] = torch.cat([batch["probabilities"] for batch in batches])[order]
        accuracy = (probabilities[label].argmax(1) == data.predict_targets).float().mean().item()
        rows.append(
            {
                "teacher": label,
                "checkpoint": str(checkpoint),
                "weights hash": weights_hash(network),
                "test accuracy %": round(100 * accuracy, 2),
                "load": round(load_average(), 2),
            }
        )
        print(rows[-1], flush=True)

    pairs = []
    for first, second in itertools.combinations(networks, 2):
        weights = zip(networks[first].state_dict().values(), networks[second].state_dict().values(), strict=True)
        pairs.append(
            {
                "pair": f"{first} / {second}",
                "top-1 agreement %": round(
                    100 * (probabilities[first].argmax(1) == probabilities[second].argmax(1)).float().mean().item(), 2
                ),
                "max probability diff": (probabilities[first] - probabilities[second]).abs().max().item(),
                "max weight diff": max((a.float() - b.float()).abs().max().item() for a, b in weights),
            }
        )
    table = markdown_table(rows) + "\n\n" + markdown_table(pairs)
    write_results(args.name, {"teachers": rows, "pairs": pairs, "test_images": len(order)}, table)


if __name__ == "__main__":
    main()
