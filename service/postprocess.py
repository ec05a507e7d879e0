"""What the service derives from the graph's outputs, once per batch.

The graph answers logits, the router's score and the mix (``artifact_contract``); every
response also carries the softmax probabilities and the router's verdict at the model's
threshold, and a request whose outputs are not finite is answered with an error. These are
computed here on the whole batch, in the batcher's executor thread, right after the model
call (``repository._make_batcher``): one vectorised pass per batch instead of a few small
numpy calls per request on the event loop (docs/benchmark.md: at 32 connections a batch holds
about 16 requests). Requests then take their rows like any other output.

Imports only numpy and the artifact contract, so the benchmark's PyTriton server
(``benchmarks/triton_server.py``, its own venv) computes the same outputs with the same code.
"""

from __future__ import annotations

import numpy as np

from artifact_contract import OUTPUT_LOGITS, OUTPUT_P_ADV

# Outputs of the v2 API that the service derives (beside the graph's three).
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_ADVERSARIAL = "adversarial"
# Present only when some row's logits or score are NaN or infinite: bool [N], True = bad row.
NONFINITE = "_nonfinite"


def softmax(logits: np.ndarray) -> np.ndarray:
    """float32 softmax per row (max-subtracted: exp never overflows; rows sum to 1 within
    float32 rounding, about 1e-7)."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True), dtype=np.float32)
    e /= e.sum(axis=1, keepdims=True)
    return e


def _all_finite(a: np.ndarray) -> bool:
    """One reduction: float32 values summed in float64 cannot overflow, so the sum is finite
    exactly when every value is."""
    if a.dtype == np.float32:
        return bool(np.isfinite(a.sum(dtype=np.float64)))
    return bool(np.isfinite(a).all())


def derive(out: dict[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    """``out`` (the graph's outputs for a batch) with the probabilities, the verdicts and, only
    when some row is not finite, the ``NONFINITE`` row mask."""
    logits, p_adv = out[OUTPUT_LOGITS], out[OUTPUT_P_ADV]
    out[OUTPUT_ADVERSARIAL] = p_adv >= threshold
    if _all_finite(logits) and _all_finite(p_adv):
        out[OUTPUT_PROBABILITIES] = softmax(logits)
    else:  # the bad rows' requests fail (data plane); the others still get their answers
        out[NONFINITE] = ~(np.isfinite(logits).all(axis=1) & np.isfinite(p_adv))
        with np.errstate(invalid="ignore", over="ignore"):
            out[OUTPUT_PROBABILITIES] = softmax(logits)
    return out


def finite_rows(out: dict[str, np.ndarray]) -> np.ndarray | None:
    """The rows of a ``derive``d batch whose outputs are finite; None when all are."""
    bad = out.get(NONFINITE)
    return None if bad is None else ~bad
