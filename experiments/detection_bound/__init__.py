"""What robust accuracy at eps / 2 would a detector's result (or item 4's detection goal)
at eps imply, by Tramer's reduction?

Answer (docs/results.md, "What item 4's goal implies" and "The bound tested harder"): the
goal implies a classifier about 94 % robust at eps 0.15, 1 point beyond the best one trained
here (TRADES, 93.0 %). Kept as a study because it is re-asked with every new AW-Net card:
it reads two cards and runs in a second.
``python -m experiments.detection_bound DETECTOR_CARD HALF_EPS_CARD``.
"""
