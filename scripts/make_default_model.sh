#!/usr/bin/env bash
# Retrain the bundled default model from scratch on the embedded digits and re-export it:
# clean teacher -> robust teacher -> AW-Net student (scripts/train_default_chain.sh), the
# full evaluation of the selected checkpoint (its card goes into the manifest), then ONNX +
# manifest into the model repository and a slim PyTorch checkpoint beside the repository
# (for parity tests and for crafting attacks against the shipped model).
# RUN=folder of an existing chain skips the training (e.g. runs/reproduce/mnist-eps0.3/seed0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/mnist5k}
NAME=awnet-mnist
VERSION=${VERSION:-3}
BUDGET=${BUDGET:-standard}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
t0=$SECONDS
[[ -f "$RUN/awnet/best.pt" ]] || scripts/train_default_chain.sh "$RUN"
"$PY" -m training evaluate "$RUN/awnet/best.pt" --n 500 --budget "$BUDGET" --out "$RUN/awnet/evaluation"
rm -rf "models/repository/$NAME/$VERSION"
"$PY" -m training export --checkpoint "$RUN/awnet/best.pt" --out "models/repository/$NAME/$VERSION" \
  --evaluation "$RUN/awnet/evaluation/evaluation.json"
cp "$RUN/awnet/evaluation/evaluation.json" "$RUN/awnet/evaluation/evaluation.md" "models/repository/$NAME/$VERSION/"
"$PY" -m training slim "$RUN/awnet/best.pt" "models/checkpoints/$NAME-$VERSION.pt"
echo "make model: $((SECONDS - t0)) s in total"
