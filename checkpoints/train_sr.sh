#!/usr/bin/env bash
# Trains every shipped super-resolution checkpoint with `nstcourse train-sr`, in order
# (SRGAN starts from srresnet_x4; "perceptual" is Johnson et al.'s feature-loss SR). The
# step counts are what a 2-core CPU could afford in one session; a GPU run should use
# more: STEPS_SCALE=10 bash checkpoints/train_sr.sh (the learning-rate cuts scale with the
# steps; `--lr-decay-every N` cuts it x0.1 every N steps: twice for SRCNN and ESPCN, at
# 3/8 and 3/4 of the run, once for SRResNet and VDSR; the perceptual nets keep the
# paper's constant rate).
# `--precision auto` trains in bfloat16 mixed precision where the hardware has it
# (benchmarks/sr_train_speed.py measures the gain) and in float32
# elsewhere. Each run checkpoints into runs/<model>_x<scale> and resumes if stopped (a
# resumed run ends with the same weights as an uninterrupted one). Needs
# NSTCOURSE_DATA_DIR (T91, BSDS500 train, Set5) and, for SRGAN and perceptual,
# NSTCOURSE_WEIGHTS_DIR (VGG-19).
set -euo pipefail
cd "$(dirname "$0")/.."
s=${STEPS_SCALE:-1}
train() { echo "== nstcourse train-sr $*"; nstcourse train-sr "$@"; }
train srcnn --scale 3 --steps $((240000 * s)) --lr-decay-every $((90000 * s)) --precision auto \
  -o checkpoints/srcnn_x3.safetensors
train espcn --scale 3 --steps $((400000 * s)) --lr-decay-every $((150000 * s)) --precision auto \
  -o checkpoints/espcn_x3.safetensors
train espcn --scale 2 --steps $((200000 * s)) --lr-decay-every $((75000 * s)) --precision auto \
  -o checkpoints/espcn_x2.safetensors
train espcn --scale 4 --steps $((200000 * s)) --lr-decay-every $((75000 * s)) --precision auto \
  -o checkpoints/espcn_x4.safetensors
train vdsr --scale 2,3,4 --steps $((44000 * s)) --batch-size 16 --lr 1e-3 \
  --lr-decay-every $((36000 * s)) --precision auto -o checkpoints/vdsr.safetensors
train srresnet --scale 4 --steps $((50000 * s)) --lr 5e-4 --lr-decay-every $((37500 * s)) \
  --precision auto -o checkpoints/srresnet_x4.safetensors
train srgan --scale 4 --steps $((1500 * s)) -o checkpoints/srgan_x4.safetensors
train perceptual --scale 4 --steps $((30000 * s)) --precision auto \
  -o checkpoints/perceptual_x4.safetensors
train perceptual --scale 8 --steps $((4000 * s)) --precision auto \
  -o checkpoints/perceptual_x8.safetensors
