#!/bin/bash
# The trade-off setting's seed 0 (`SETTING=mnist1k-eps0.3-w8 SEED=0 ONLY="standard pgd-at awnet"
# make reproduce` with RUNS_ROOT=$RUNS), then two AW-Net variants on the same teachers:
# three times the epochs, and the clean teacher as initialisation. Each variant: the branch
# check (branches.py) and the three strongest attacks of the reproduction's cards.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1
RUNS=${RUNS:-runs/issue8/branch-divergence}
R=$RUNS/mnist1k-eps0.3-w8/seed0
HERE=results/issue8/branch-divergence
COMMON=(--dataset mnist5k --max-train-samples 1000 --eps 0.3 --seed 0 --method awnet
        --model awnet_smallcnn_w8 --eps-warmup-epochs 2
        --clean-teacher "$R/standard/best.pt" --robust-teacher "$R/pgd-at/best.pt")
.venv/bin/python -m training train "${COMMON[@]}" --out "$RUNS/ep24" --epochs 24 --eval-every 24 \
  --init-from "$R/pgd-at/best.pt"
.venv/bin/python -m training train "${COMMON[@]}" --out "$RUNS/initclean" --epochs 8 --eval-every 8 \
  --init-from "$R/standard/best.pt"
.venv/bin/python "$HERE/branches.py" "$R/standard/best.pt" "$R/pgd-at/best.pt" "$R/awnet/best.pt" \
  "$RUNS/ep24/best.pt" "$RUNS/initclean/last.pt"
for v in ep24 initclean; do
  ck=$RUNS/$v/best.pt; [[ -f $ck ]] || ck=$RUNS/$v/last.pt  # no best.pt: the masking alarm fired
  .venv/bin/python -m training evaluate "$ck" --n 500 --seed 0 --budget reproduce \
    --attacks autoattack apgd-dlr pgd20 --out "$HERE/$v-card" --allow-failed-checks
done
