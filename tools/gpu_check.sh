#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: export -> compile (CUDA) -> measure, in one script.
# Usage: tools/gpu_check.sh [RUN_DIR] [ARCH]   (defaults: a fresh 1-minute digits run, sm_80)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=${1:-}
ARCH=${2:-sm_80}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export EXPLORER_STORE="$OUT/store.sqlite"
if [ -z "$RUN" ]; then
  RUN="$OUT/run"
  $BIN/explorer search --dataset digits --budget-min 1 --steps 60 --epochs 3 --out "$RUN" --force --no-progress
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$BIN/explorer export "$RUN" --out "$OUT/model.onnx"
$BIN/explorer compile "$OUT/model.onnx" --target cuda --arch "$ARCH" --out "$OUT/model.cuda.so"
$BIN/explorer measure "$OUT/model.cuda.so" --target cuda --repeat 30
$BIN/explorer measure "$OUT/model.onnx" --target cpu --vs onnxruntime --repeat 30
