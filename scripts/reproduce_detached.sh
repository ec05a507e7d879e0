#!/usr/bin/env bash
# `make reproduce` from a frozen copy of the current commit, for runs of hours: bash reads a
# script as it runs and python imports the code when each run starts, so edits in the checkout
# would otherwise reach a running reproduction (docs/decisions.md). The copy is a git worktree
# of HEAD under $FROZEN (default ../awnet-frozen); cards and docs/results.md are written back
# into this checkout, run folders into $RUNS_ROOT (default ../awnet-runs: outside the checkout,
# so that a later sitting can resume them). Same variables as scripts/reproduce.sh.
#
#   SETTING=cifar10-jpeg12k SEED=1 nohup bash scripts/reproduce_detached.sh > seed1.log 2>&1 &
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
frozen=${FROZEN:-$here/../awnet-frozen}
git -C "$here" worktree remove --force "$frozen" 2>/dev/null || rm -rf "$frozen"
git -C "$here" worktree add --detach -f "$frozen" HEAD >/dev/null
data=${DATA_ROOT:-$here/../shared/datasets/cifar10-jpeg.tar.gz}
cd "$frozen"
PY=${PY:-$here/.venv/bin/python} RESULTS=${RESULTS:-$here/results} REPORT=${REPORT:-$here/docs/results.md} \
  RUNS_ROOT=${RUNS_ROOT:-$here/../awnet-runs} DATA_ROOT=$data exec bash scripts/reproduce.sh
