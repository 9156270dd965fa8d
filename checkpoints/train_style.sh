#!/usr/bin/env bash
# Trains every shipped feed-forward style checkpoint with `nstcourse train-style`: four
# single-style Johnson nets (the styles of the data pack's reference nets), the 10-style
# conditional-instance-norm net and the AdaIN decoder. The step counts are what a shared
# 2-core CPU could afford in one session (two jobs side by side, one thread each); the
# recipes (nstcourse/style/recipes.py) suggest more, and a GPU run should use them:
# STEPS_SCALE=10 bash checkpoints/train_style.sh. Each run checkpoints into runs/<name>
# and resumes if stopped. Needs NSTCOURSE_DATA_DIR (photos, paintings) and
# NSTCOURSE_WEIGHTS_DIR (VGG-19).
set -euo pipefail
cd "$(dirname "$0")/.."
s=${STEPS_SCALE:-1}
train() { echo "== nstcourse train-style $*"; nstcourse train-style "$@"; }
for style in wave scream udnie wreck; do
  case $style in
    wreck) image=images/style/the_shipwreck_of_the_minotaur.jpg ;;
    scream) image=images/style/engstrom_training/the_scream.jpg ;;
    *) image=images/style/engstrom_training/$style.jpg ;;
  esac
  train johnson --style "$image" --steps $((1000 * s)) --workdir "runs/johnson_$style" \
    -o "checkpoints/johnson_$style.safetensors"
done
train cin --steps $((2400 * s)) --workdir runs/cin -o checkpoints/cin.safetensors
train adain --steps $((600 * s)) --workdir runs/adain -o checkpoints/adain.safetensors
