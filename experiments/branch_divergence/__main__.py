"""``python -m experiments.branch_divergence CKPT [CKPT ...]``."""

import sys

from experiments.branch_divergence.branches import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
