"""Analysis commands (``python -m training analyze ...``).

- :mod:`training.analysis.weights`: the paper's observation (Wei et al., TPAMI 2024,
  section 1): standard and robust models have different filter-weight distributions;
  AW-Net's two branches should reproduce that split.
- :mod:`training.analysis.router`: how well the router's p_adv separates clean inputs
  from plain and adaptive (router-evasion, transfer) attacks.

Imports are lazy so that ``python -m training --help`` does not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["analyze_router", "analyze_weights", "excess_kurtosis"]


def __getattr__(name: str) -> Any:
    if name == "analyze_router":
        from training.analysis.router import analyze_router

        return analyze_router
    if name in ("analyze_weights", "excess_kurtosis"):
        from training.analysis import weights

        return getattr(weights, name)
    raise AttributeError(name)
