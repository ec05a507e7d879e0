#!/usr/bin/env bash
# `make reproduce`: train standard, PGD-AT, TRADES, TRADES+RAT, AW-Net and AW-Net+RAT on the
# same backbone and budget, evaluate every selected checkpoint (best.pt) with the same attacks,
# keep the evaluation cards under results/SETTING/seedN/ and rewrite docs/results.md from all
# the seeds that exist.
#
#   SETTING  mnist1k-eps0.3-w8 (default: the trade-off setting, eps 0.3, quarter-width small CNN, the
#                                first 1,000 embedded training digits; about 30 min on 2 idle cores)
#            mnist-eps0.3 (all 4,000 embedded training digits, full-width small CNN: no trade-off; 2-3 h)
#            mnist-eps0.4-w8 (eps 0.4, quarter-width small CNN: 2 points of clean cost only)
#            cifar10-jpeg12k (CPU-scale CIFAR-10 (JPEG q75), eps 8/255: small CNN, the first 12,000
#                             training images, 8 epochs, bfloat16 training; 500 test images;
#                             about 2 h on 2 idle cores; DATA_ROOT: the archive, default
#                             ../shared/datasets/cifar10-jpeg.tar.gz)
#            cifar10-resnet18 / cifar10-wrn34r (GPU machines; CIFAR-10 under DATA_ROOT: torchvision's files,
#                             or DATASET=cifar10-jpeg with the JPEG archive)
#   SEED     the seed of every training run and attack (default 0)
#   TEACHER  AW-Net's robust teacher and initialisation: trades (default) or pgd-at (the trade-off setting's)
#   N        test images evaluated (default 500: all embedded test digits; the first 500 for cifar10-jpeg12k)
#   BUDGET   attack budget of `evaluate` (default reproduce; standard = full AutoAttack)
#   RESULTS, REPORT, RUNS_ROOT  where cards, docs/results.md and run folders go;
#   TRAIN_EXTRA  extra arguments of every training run (smoke tests: "--max-train-samples 128")
#   ABLATIONS=1  also AW-Net with the plain router (--no-router-adaptive): the router variants
#   LANES    2 (default): two lanes at once, one per core (standard, pgd-at, awnet in the foreground;
#            trades, trades+rat, awnet+rat and the ablation in the background, log in the results
#            folder); the AW-Net runs wait for their teachers, a failing lane stops the other.
#            1: one model after the other.
#   ONLY="a b"   train and evaluate only these models, in one lane (no wall time: not a whole run)
#   KEEP="a b"   keep these runs' slim weights in the results folder (checkpoints/NAME.pt): a later session
#            whose run folders are gone restores them instead of training again (cifar10-jpeg12k:
#            standard, trades and pgd-at, the teachers, by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SETTING=${SETTING:-mnist1k-eps0.3-w8}
SEED=${SEED:-0}
N=${N:-500}
BUDGET=${BUDGET:-reproduce}
DATA=(--dataset mnist5k)
case "$SETTING" in
  mnist-eps0.3)    EPS=0.3;    MODEL=smallcnn;    EPOCHS=8;   COMMON=(--eps-warmup-epochs 2 --eval-every 4) ;;
  mnist-eps0.4-w8) EPS=0.4;    MODEL=smallcnn_w8; EPOCHS=8;   COMMON=(--eps-warmup-epochs 2 --eval-every 4) ;;
  # The trade-off setting the sweep found (docs/results.md): the first 1,000 training digits. AW-Net's robust
  # teacher and initialisation is PGD-AT there: TRADES teachers masked gradients in the trade-off settings.
  mnist1k-eps0.3-w8) EPS=0.3;  MODEL=smallcnn_w8; EPOCHS=8;   COMMON=(--eps-warmup-epochs 2 --eval-every 4)
                   DATA=(--dataset mnist5k --max-train-samples 1000); TEACHER=${TEACHER:-pgd-at} ;;
  # CPU-scale CIFAR-10 (docs/results.md, "The CIFAR-10 setting": sized from measured figures). bfloat16
  # autocast + channels-last trains 2.2x faster than float32 here and matched its accuracy; the
  # evaluation attacks run in float32.
  # bfloat16 only where the CPU computes it natively (training/hardware.py): emulated, it is 15x slower.
  # A seed takes more than one session on an AVX2-only machine: the teachers' weights are kept (KEEP).
  cifar10-jpeg12k) EPS=0.031372549; MODEL=smallcnn; EPOCHS=8; KEEP_DEFAULT="standard trades pgd-at"
                   DATA=(--dataset cifar10-jpeg --data-root "${DATA_ROOT:-../shared/datasets/cifar10-jpeg.tar.gz}"
                         --max-train-samples 12000 "$("$PY" -m training.hardware)" --val-max-samples 500)
                   COMMON=(--step-size 0.0078431373 --eval-every 4) ;;
  cifar10-resnet18) EPS=0.031372549; MODEL=resnet18; EPOCHS=100; DATA=(--dataset "${DATASET:-cifar10}" --data-root "${DATA_ROOT:?set DATA_ROOT}")
                   COMMON=(--lr 0.1 --weight-decay 2e-4 --lr-schedule multistep --milestones 75 90 --eval-every 5) ;;
  cifar10-wrn34r)  EPS=0.031372549; MODEL=wrn34_r; EPOCHS=100; DATA=(--dataset "${DATASET:-cifar10}" --data-root "${DATA_ROOT:?set DATA_ROOT}")
                   COMMON=(--lr 0.1 --weight-decay 2e-4 --lr-schedule multistep --milestones 75 90 --grad-clip 5 --eval-every 5) ;;
  *) echo "unknown SETTING $SETTING" >&2; exit 2 ;;
esac
TEACHER=${TEACHER:-trades}
KEEP=${KEEP-${KEEP_DEFAULT:-}}
case "$TEACHER" in trades|pgd-at) ;; *) echo "unknown TEACHER $TEACHER (trades or pgd-at)" >&2; exit 2 ;; esac
case "${LANES:-2}" in 1|2) ;; *) echo "LANES must be 1 or 2, got $LANES" >&2; exit 2 ;; esac
RESULTS=${RESULTS:-results}
RUNS=${RUNS_ROOT:-runs/reproduce}/$SETTING/seed$SEED
OUT=$RESULTS/$SETTING/seed$SEED
EPOCHS=${EPOCHS_OVERRIDE:-$EPOCHS}
read -r -a EXTRA <<< "${TRAIN_EXTRA:-}"
mkdir -p "$RUNS" "$OUT"
TIMES=$OUT/timings.jsonl
# Only a run from scratch records its wall time (a resumed one would under-report it).
[[ -s "$TIMES" ]] && FRESH=0 || FRESH=1
touch "$TIMES"
# One thread per process: on two shared cores torch's default of two threads per process
# slows small attack batches down many times over (measured: APGD-100 on 32 digits, 25.5 s
# with 2 threads against 0.3 s with 1 while another job ran).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [[ -z "${ONLY:-}" && "${LANES:-2}" == 2 ]]; then
  # Two lanes, each this script with an ONLY list, in process groups of their own (set -m) so that
  # a failure or Ctrl-C stops the whole of the other lane, python included.
  set -m
  LANE1="standard pgd-at awnet"
  LANE2="trades trades+rat awnet+rat"
  [[ "${ABLATIONS:-0}" == 1 ]] && LANE2+=" awnet-plain-router"
  LOG2=$OUT/lane2.log
  start=$SECONDS
  echo "=== [$SETTING seed $SEED] two lanes: $LANE1 here; $LANE2 in the background (log: $LOG2)"
  LANE=1 ONLY=$LANE1 bash "$0" &
  lane1=$!
  LANE=2 ONLY=$LANE2 bash "$0" > "$LOG2" 2>&1 &
  lane2=$!
  (tail -n +1 -F "$LOG2" 2>/dev/null | grep --line-buffered '^===' | sed -u 's/^/[lane 2] /') &
  tailer=$!
  disown "$tailer"  # no job-control notice when it is stopped
  stop() { kill -- "-$lane1" "-$lane2" "-$tailer" 2>/dev/null || true; }
  trap 'stop; exit 130' INT TERM
  rc=0
  for _ in 1 2; do
    wait -n "$lane1" "$lane2" || { rc=$?; echo "=== a lane failed (exit $rc): stopping the other; see $LOG2" >&2; stop; break; }
  done
  wait "$lane1" "$lane2" 2>/dev/null || true
  kill -- "-$tailer" 2>/dev/null || true
  ((rc == 0)) || exit "$rc"
  ((FRESH)) && echo "{\"model\": \"(all)\", \"step\": \"wall\", \"seconds\": $((SECONDS - start)), \"lanes\": 2}" >> "$TIMES"
  "$PY" -m training report --results "$RESULTS" --out "${REPORT:-docs/results.md}"
  exit 0
fi

step() {  # step NAME KIND(train|evaluate) ARGS...
  local name=$1 kind=$2; shift 2
  local t0=$SECONDS
  echo "=== [$SETTING seed $SEED] $kind $name"
  "$PY" -m training "$@"
  echo "{\"model\": \"$name\", \"step\": \"$kind\", \"seconds\": $((SECONDS - t0))}" >> "$TIMES"
}
checkpoint() {  # checkpoint NAME: its best.pt, or last.pt when every validation raised the masking alarm (noted)
  if [[ -f "$RUNS/$1/best.pt" ]]; then echo "$RUNS/$1/best.pt"; return; fi
  echo "=== $1 has no best.pt (masking alarm at every validation): using last.pt" | tee -a "$OUT/notes.txt" >&2
  echo "$RUNS/$1/last.pt"
}
keep() {  # keep NAME: a slim copy of its weights beside its cards, when KEEP names it
  local kept=$OUT/checkpoints/$1.pt
  [[ " $KEEP " == *" $1 "* && ! -f "$kept" ]] || return 0
  "$PY" -m training slim "$(checkpoint "$1")" "$kept" > /dev/null
  echo "=== [$SETTING seed $SEED] kept $1's weights: $kept"
}
selected() { [[ -z "${ONLY:-}" || " $ONLY " == *" $1 "* ]]; }
train() {  # train NAME ARGS... (skipped when that run already finished; an interrupted run resumes from last.pt)
  local name=$1; shift
  selected "$name" || return 0
  if [[ ! -f "$RUNS/$name/.done" && -f "$OUT/checkpoints/$name.pt" ]]; then
    # An earlier session trained it and its run folder did not survive; its kept weights did.
    mkdir -p "$RUNS/$name" && cp "$OUT/checkpoints/$name.pt" "$RUNS/$name/best.pt" && touch "$RUNS/$name/.done"
    echo "=== [$SETTING seed $SEED] train $name: restored from $OUT/checkpoints/$name.pt"
  fi
  if [[ -f "$RUNS/$name/.done" ]]; then echo "=== [$SETTING seed $SEED] train $name: done, kept"; keep "$name"; return; fi
  local args=(train "${DATA[@]}" --eps "$EPS" --seed "$SEED" --epochs "$EPOCHS" --out "$RUNS/$name" "${EXTRA[@]}" "$@")
  if [[ -f "$RUNS/$name/last.pt" ]]; then
    # An earlier sitting was stopped: go on from its last epoch. Its time is the epochs' own
    # (training + validation, from metrics.jsonl, each epoch once), not this sitting's.
    echo "=== [$SETTING seed $SEED] train $name: resuming from last.pt"
    "$PY" -m training "${args[@]}" --resume "$RUNS/$name/last.pt"
    local secs
    secs=$("$PY" - "$RUNS/$name/metrics.jsonl" <<'PY'
import json, sys
epochs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("event") == "epoch":
        epochs[r["epoch"]] = r.get("train_seconds", 0) + (r.get("val") or {}).get("seconds", 0)
print(round(sum(epochs.values())))
PY
)
    echo "{\"model\": \"$name\", \"step\": \"train\", \"seconds\": $secs, \"resumed\": true}" >> "$TIMES"
  else
    step "$name" train "${args[@]}"
  fi
  touch "$RUNS/$name/.done"
  keep "$name"
}

train standard --method standard --model "$MODEL" --eval-every 4
train pgd-at   --method pgd-at   --model "$MODEL" "${COMMON[@]}"
train trades   --method trades   --model "$MODEL" "${COMMON[@]}"
train trades+rat --method trades --rat --model "$MODEL" "${COMMON[@]}"
teachers_ready() {  # another lane may still be training them
  while [[ ! -f "$RUNS/standard/.done" || ! -f "$RUNS/$TEACHER/.done" ]]; do sleep 15; done
}
if selected awnet || selected awnet+rat || selected awnet-plain-router; then teachers_ready; fi
if selected awnet || selected awnet+rat || selected awnet-plain-router; then
  ROBUST=$(checkpoint "$TEACHER")
  TEACHERS=(--clean-teacher "$(checkpoint standard)" --robust-teacher "$ROBUST" --init-from "$ROBUST")
fi
train awnet     --method awnet --model "awnet_$MODEL" "${COMMON[@]}" "${TEACHERS[@]}"
train awnet+rat --method awnet --rat --model "awnet_$MODEL" "${COMMON[@]}" "${TEACHERS[@]}"
MODELS=(standard pgd-at trades trades+rat awnet awnet+rat)
if [[ "${ABLATIONS:-0}" == 1 ]]; then
  train awnet-plain-router --method awnet --no-router-adaptive --model "awnet_$MODEL" "${COMMON[@]}" "${TEACHERS[@]}"
  MODELS+=(awnet-plain-router)
fi

for name in "${MODELS[@]}"; do
  selected "$name" || continue
  if [[ -f "$OUT/$name/evaluation.json" ]]; then echo "=== [$SETTING seed $SEED] evaluate $name: done, kept"; continue; fi
  step "$name" evaluate evaluate "$(checkpoint "$name")" --n "$N" --seed "$SEED" --budget "$BUDGET" \
    --out "$OUT/$name" --allow-failed-checks
done
[[ -n "${LANE:-}" ]] && exit 0  # a lane: the caller writes the wall time and the report
((FRESH)) && [[ -z "${ONLY:-}" ]] && echo "{\"model\": \"(all)\", \"step\": \"wall\", \"seconds\": $SECONDS, \"lanes\": 1}" >> "$TIMES"
"$PY" -m training report --results "$RESULTS" --out "${REPORT:-docs/results.md}"
