#!/usr/bin/env bash
# The main job, short: train a ResNet-56 teacher briefly on CIFAR-10, distil it into a ResNet-20 with Hinton KD,
# and print the student's test accuracy. A pipeline demo, not an accuracy result: 10-20 minutes on 2 CPU cores
# (the student reaches about 19%); use a GPU and the recipes' full budgets for real numbers.
#
#   bash scripts/quickstart.sh [CIFAR-10 ARCHIVE]
#
# With an archive (the image-folder export cifar10-jpg.tar.gz, or the official cifar-10-python.tar.gz), it is
# extracted into ./data; without one, CIFAR-10 is downloaded into ./data (needs internet).
set -euo pipefail
cd "$(dirname "$0")/.."
archive="${1:-}"
mkdir -p data
if [ -n "$archive" ] && [ ! -d data/cifar10 ] && [ ! -d data/cifar-10-batches-py ]; then
  tar xzf "$archive" -C data
fi
download=false
[ -d data/cifar10 ] || [ -d data/cifar-10-batches-py ] || download=true

short=(--data.data_dir data --data.download "$download" --data.subset_size 5000 --trainer.max_epochs 2)
lit-kd fit --config recipes/cifar10/teacher_resnet56.yaml "${short[@]}"
lit-kd fit --config recipes/cifar10/kd_resnet56_resnet20.yaml "${short[@]}"
lit-kd test --config recipes/cifar10/kd_resnet56_resnet20.yaml "${short[@]}" \
  --ckpt_path checkpoints/cifar10/kd_resnet56_resnet20/last.ckpt
