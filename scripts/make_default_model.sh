#!/usr/bin/env bash
# Retrain the bundled default model from scratch on the embedded digits and re-export it:
# clean teacher -> robust teacher -> AW-Net student, then ONNX + manifest into the model
# repository and a slim PyTorch checkpoint beside the repository (for parity tests and
# for crafting attacks against the shipped model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/mnist5k}
NAME=awnet-mnist
VERSION=${VERSION:-1}
t0=$SECONDS
scripts/train_default_chain.sh "$RUN"
rm -rf "models/repository/$NAME/$VERSION"
"$PY" -m training export --checkpoint "$RUN/awnet/last.pt" --out "models/repository/$NAME/$VERSION"
"$PY" -m training slim "$RUN/awnet/last.pt" "models/checkpoints/$NAME-$VERSION.pt"
echo "make model: $((SECONDS - t0)) s in total" | tee -a "$RUN/timings.txt"
