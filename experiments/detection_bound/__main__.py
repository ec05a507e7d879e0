"""``python -m experiments.detection_bound DETECTOR_CARD HALF_EPS_CARD``."""

import sys

from experiments.detection_bound.bound import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
