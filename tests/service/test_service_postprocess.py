"""Outputs derived once per batch (service/postprocess.py) and what the data plane does with
them: each request gets its own rows, and only a request whose own rows are not finite fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from artifact_contract import OUTPUT_LOGITS, OUTPUT_MIX, OUTPUT_P_ADV
from service.errors import InferenceFailed
from service.lifecycle import State
from service.postprocess import (
    NONFINITE,
    OUTPUT_ADVERSARIAL,
    OUTPUT_PROBABILITIES,
    derive,
    finite_rows,
)
from service.served_model import ServedModel
from service.settings import Settings
from tests.support.batching import Runner, batcher, req


def _batch(logits: np.ndarray, p_adv: np.ndarray) -> dict[str, np.ndarray]:
    return {OUTPUT_LOGITS: logits.astype(np.float32), OUTPUT_P_ADV: p_adv.astype(np.float32),
            OUTPUT_MIX: np.full(len(p_adv), 0.5, np.float32)}


def test_derive_gives_softmax_and_verdicts_and_no_mask_when_all_finite():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 30, (16, 10))
    p_adv = np.linspace(0, 1, 16)
    out = derive(_batch(logits, p_adv), threshold=0.5)
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    assert out[OUTPUT_PROBABILITIES].dtype == np.float32
    np.testing.assert_allclose(out[OUTPUT_PROBABILITIES], ref, atol=1e-6)
    np.testing.assert_array_equal(out[OUTPUT_ADVERSARIAL], p_adv.astype(np.float32) >= 0.5)
    assert NONFINITE not in out and finite_rows(out) is None


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["logits", "p_adv"])
def test_derive_marks_exactly_the_rows_that_are_not_finite(bad, where):
    logits, p_adv = np.zeros((4, 3)), np.full(4, 0.1)
    if where == "logits":
        logits[2, 1] = bad
    else:
        p_adv[2] = bad
    out = derive(_batch(logits, p_adv), threshold=0.5)
    np.testing.assert_array_equal(out[NONFINITE], [False, False, True, False])
    np.testing.assert_array_equal(finite_rows(out), [True, True, False, True])


class _NanRunner(Runner):
    """The fake model of tests/support/batching.py with rows of value 9 turned into NaN
    logits, its outputs derived as the repository's runner does."""

    def __call__(self, image: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
        out = super().__call__(image, mix)
        out[OUTPUT_LOGITS][image.reshape(len(image), -1)[:, 0] == 9] = np.nan
        return derive(out, threshold=0.5)


def test_only_the_request_with_non_finite_rows_fails_in_a_shared_batch():
    async def main():
        runner = _NanRunner()
        b = batcher(runner, max_delay_s=0.05)
        mv = ServedModel("m", "1", Path("."), State.READY)
        mv.batcher, mv.threshold = b, 0.5
        timeout = Settings().request_timeout_s
        try:
            good, bad = await asyncio.gather(mv.predict(req(0.7, n=2)[0], None, timeout),
                                             mv.predict(req(9.0)[0], None, timeout),
                                             return_exceptions=True)
        finally:
            await b.close()
        return runner.calls, good, bad

    calls, good, bad = asyncio.run(main())
    assert calls == [3]  # one batch held both requests
    assert isinstance(bad, InferenceFailed) and "non-finite" in str(bad)
    assert good.probabilities.shape == (2, 2)
    np.testing.assert_allclose(good.probabilities.sum(1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(good.adversarial, [True, True])  # p_adv 0.7 >= 0.5
