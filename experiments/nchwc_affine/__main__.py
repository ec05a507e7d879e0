"""``python -m experiments.nchwc_affine [BATCH] [ROUNDS] [static]``."""

import sys

from experiments.nchwc_affine.prototype import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
