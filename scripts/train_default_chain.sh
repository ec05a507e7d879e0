#!/usr/bin/env bash
# The full chain on the embedded digits: clean teacher (standard, 8 epochs), robust teacher
# (PGD-AT: TRADES teachers masked gradients and gave a weaker AW-Net, docs/results.md), AW-Net student (small CNN) warm-started from the robust teacher and distilled
# from both. The AW-Net step pins the shipped model's recipe (--kd-reduction batchmean, plain
# router): the MTARD average and the adaptive router were measured worse (docs/results.md). Each step keeps
# best.pt, the checkpoint robust validation selected (docs/training.md). Prints each step's
# wall time. The same recipes as `make reproduce` (scripts/reproduce.sh).
# Usage: scripts/train_default_chain.sh [OUT_DIR]   (default runs/mnist5k)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/mnist5k}
SEED=${SEED:-0}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
step() {
  local name=$1; shift
  local t0=$SECONDS
  "$PY" -m training "$@"
  echo "$name: $((SECONDS - t0)) s" | tee -a "$OUT/timings.txt"
}
: > "$OUT/timings.txt"
step clean_teacher train --method standard --epochs 8 --eval-every 4 --seed "$SEED" --out "$OUT/clean_teacher"
step robust_teacher train --method pgd-at --epochs 8 --eps-warmup-epochs 2 --eval-every 4 --seed "$SEED" \
  --out "$OUT/robust_teacher"
step awnet train --method awnet --epochs 8 --eps-warmup-epochs 2 --eval-every 4 --seed "$SEED" \
  --clean-teacher "$OUT/clean_teacher/best.pt" --robust-teacher "$OUT/robust_teacher/best.pt" \
  --init-from "$OUT/robust_teacher/best.pt" --kd-reduction batchmean --out "$OUT/awnet"
echo "total: $(awk '{s += $(NF-1)} END {print s}' "$OUT/timings.txt") s" | tee -a "$OUT/timings.txt"
