"""Make a fresh model's two AW-Net branches and router signals differ, seeded.

A freshly initialised AW-Net has identical clean and adversarial BatchNorm statistics and
near-zero signals, so its branches agree and a parity, folding or timing check of the
per-sample blend would check nothing. Tests and ``benchmarks.build_graphs`` (random-init
timing graphs) both call this one function.
"""

from __future__ import annotations

import torch

from models.router import SignalHead


def perturb_branches(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BN statistics and affines, small random signal-head weights (in place)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            if isinstance(m, SignalHead):
                m.fc.weight.copy_(torch.randn(m.fc.weight.shape, generator=g) * 0.05)
