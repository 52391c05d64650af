#!/usr/bin/env bash
# The main job, short: distil the pretrained CIFAR-10 ResNet-56 into a ResNet-8 and compare it with the ResNet-8
# trained alone at the same budget (scripts/quickstart.py prints the table). About 9 minutes on 2 CPU cores.
#
#   bash scripts/quickstart.sh [CIFAR-10 ARCHIVE] [WEIGHTS FOLDER]
#
# With an archive (the image-folder export cifar10-jpg.tar.gz, or the official cifar-10-python.tar.gz), it is
# extracted into ./data; without one, CIFAR-10 is downloaded into ./data (needs internet). The weights folder holds
# resnet56-4bfd9763.th (default: $LIT_KD_WEIGHTS, else ../shared/weights); without it the file is downloaded from
# akamaster/pytorch_resnet_cifar10 (needs internet) into ./weights.
set -euo pipefail
cd "$(dirname "$0")/.."
archive="${1:-}"
weights="${2:-${LIT_KD_WEIGHTS:-../shared/weights}}"
mkdir -p data
if [ -n "$archive" ] && [ ! -d data/cifar10 ] && [ ! -d data/cifar-10-batches-py ]; then
  tar xzf "$archive" -C data
fi
if [ ! -d data/cifar10 ] && [ ! -d data/cifar-10-batches-py ]; then
  python -c "from torchvision.datasets import CIFAR10; CIFAR10('data', download=True); CIFAR10('data', train=False)"
fi
if [ ! -f "$weights/resnet56-4bfd9763.th" ]; then
  weights=weights
  python -c "from lit_kd.models.pretrained import pretrained_weights as p; p('cifar10_resnet56').verified_path('weights', download=True)"
fi
LIT_KD_WEIGHTS="$(cd "$weights" && pwd)" python scripts/quickstart.py --data-dir data "${@:3}"
