"""The v1 image API's JSON answer (docs/service.md): a ``Classification`` as the body says."""

from __future__ import annotations

from typing import Any

from service.inference import Classification


def classification_body(c: Classification) -> dict[str, Any]:
    best = c.top_k[0]
    return {
        "model": c.model,
        "version": c.version,
        "class": best.name,
        "class_index": best.index,
        "probability": best.probability,
        "top_k": [{"class": t.name, "index": t.index, "probability": t.probability} for t in c.top_k],
        "p_adv": c.p_adv,
        "mix": c.mix,
        "mode": c.mode,
        "verdict": "adversarial" if c.adversarial else "clean",
        "threshold": c.threshold,
    }
