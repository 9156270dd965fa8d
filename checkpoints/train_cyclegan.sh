#!/usr/bin/env bash
# Trains the shipped horse <-> zebra CycleGAN with `nstcourse train-cyclegan`: the course's
# recipe (CycleGANRecipe in nstcourse/translate/recipes.py: ResNet-6 generators with 32
# filters on 128-px crops) on the 500 + 500 training photos of unpaired/horse2zebra, scored
# on its test photos every 500 steps. 12,000 steps take hours on a 2-core CPU (the wall
# time is in checkpoints/README.md); a GPU affords the paper's networks and schedule (see
# notebook 11's full mode). Checkpoints go to runs/cyclegan_horse2zebra and the same
# command resumes. Needs NSTCOURSE_DATA_DIR (or the internet) and NSTCOURSE_WEIGHTS_DIR
# (VGG-19, for the scores).
set -euo pipefail
cd "$(dirname "$0")/.."
s=${STEPS_SCALE:-1}
echo "== nstcourse train-cyclegan --steps $((12000 * s))"
nstcourse train-cyclegan --steps $((12000 * s)) -o checkpoints/cyclegan_horse2zebra.safetensors \
  --workdir runs/cyclegan_horse2zebra
