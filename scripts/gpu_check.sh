#!/usr/bin/env bash
# The one-command GPU check (see scripts/gpu_check.py): on one NVIDIA GPU, offline, under 9 minutes.
#   bash scripts/gpu_check.sh [--output gpu_check] [--work-dir runs/gpu_check] [--stages fit inference compile ablation]
# Writes <output>/gpu_check.json and gpu_check.md; exits 1 if a check failed, 2 without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
python=python
if [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline WANDB_SILENT=true
exec "$python" scripts/gpu_check.py "$@"
