"""Robustness evaluation: library attacks (torchattacks) and adaptive attacks on AW-Net,
worst case per sample, router figures and sanity checks (``python -m training evaluate``)."""
