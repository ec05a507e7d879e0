"""Do AW-Net's clean and adversarial branches diverge, so that the clean branch gives back
the standard model's clean accuracy?

Answer in the trade-off setting (2026-12-06, docs/results.md, "Why AW-Net gives no clean
accuracy back there"): no. Both branches end up one model, whatever the epochs or the
initialisation (``variants``). Kept as a study because the question is open in the
settings not measured here (the paper's CIFAR-10 networks), and the branch check runs in
seconds on any AW-Net checkpoint: ``python -m experiments.branch_divergence CKPT [CKPT ...]``.
"""
