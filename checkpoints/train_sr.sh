#!/usr/bin/env bash
# Trains every shipped super-resolution checkpoint with `nstcourse train-sr`, in order
# (SRGAN starts from srresnet_x4). The step counts are what a 2-core CPU could afford in
# one session; the recipes (nstcourse/sr_recipes.py) suggest more, and a GPU run should
# use them: STEPS_SCALE=10 bash checkpoints/train_sr.sh. Each run checkpoints into
# runs/<model>_x<scale> and resumes if stopped (a resumed run ends with the same weights
# as an uninterrupted one). Needs NSTCOURSE_DATA_DIR (T91, BSDS500 train, Set5) and, for
# SRGAN, NSTCOURSE_WEIGHTS_DIR (VGG-19).
set -euo pipefail
cd "$(dirname "$0")/.."
s=${STEPS_SCALE:-1}
train() { echo "== nstcourse train-sr $*"; nstcourse train-sr "$@"; }
train espcn --scale 3 --steps $((20000 * s)) -o checkpoints/espcn_x3.safetensors
train espcn --scale 2 --steps $((10000 * s)) -o checkpoints/espcn_x2.safetensors
train espcn --scale 4 --steps $((10000 * s)) -o checkpoints/espcn_x4.safetensors
train srresnet --scale 4 --steps $((8000 * s)) -o checkpoints/srresnet_x4.safetensors
train srgan --scale 4 --steps $((800 * s)) -o checkpoints/srgan_x4.safetensors
train vdsr --steps $((2500 * s)) --batch-size 8 -o checkpoints/vdsr.safetensors
train srcnn --scale 3 --steps $((8000 * s)) -o checkpoints/srcnn_x3.safetensors
