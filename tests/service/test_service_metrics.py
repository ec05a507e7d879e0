"""Metrics move as requests are served; names and labels follow docs/contracts.md.

FastAPI's TestClient around create_app(settings): /metrics needs no socket.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.fake_model import FAKE_MODEL, FAKE_ROBUSTNESS
from tests.support.images import noisy_image, smooth_image, to_png
from tests.support.monitoring import contract_families
from tests.support.servers import app_client
from tests.support.v2client import metric, metrics_text, post_tensors, scrape

LABELS = {"model": FAKE_MODEL, "version": "1"}


@pytest.fixture(scope="module")
def client(repository):
    with app_client(repository) as c:
        yield c


def _delta(before, after, name, **labels):
    return metric(after, name, **labels) - metric(before, name, **labels)


def test_contract_metric_names_types_and_buckets(client):
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics_text(client)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    contract = contract_families()
    assert len(contract) == 21, contract  # 15 + the 6 awnet_probe_* of docs/lifecycle.md
    for name, kind in contract.items():
        assert name in families, name
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert {"model", "version"} <= set(sample.labels), sample
    # exposition names (with the conventional suffixes)
    for line in ("awnet_inputs_total{", "awnet_requests_total{", "awnet_refused_requests_total{"):
        assert line in text
    score_buckets = {s.labels["le"] for s in families["awnet_router_score"].samples
                     if s.name.endswith("_bucket")}
    for b in ("0.001", "0.005", "0.01", "0.5", "0.99", "0.995", "0.999", "+Inf"):
        assert b in score_buckets
    batch_buckets = {s.labels["le"] for s in families["awnet_batch_size"].samples
                     if s.name.endswith("_bucket")}
    assert {"1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "256.0"} <= batch_buckets
    samples = scrape(client)
    assert metric(samples, "awnet_model_info", provider="CPUExecutionProvider", kind="awnet",
                  method="fake", **LABELS) == 1
    assert metric(samples, "awnet_model_ready", **LABELS) == 1
    # series exist at zero from the start, so that rates are defined
    for verdict in ("clean", "adversarial"):
        assert ("awnet_inputs_total", frozenset({**LABELS, "verdict": verdict}.items())) in samples


def test_evaluation_card_figures_are_gauges(client):
    """The manifest's evaluation.robustness, as exported; a version without a card has no series."""
    samples = scrape(client)
    card = FAKE_ROBUSTNESS
    acc = {**LABELS, "eps": "0.3", "sanity": "passed"}
    assert metric(samples, "awnet_model_evaluated_accuracy", inputs="clean", **acc) == card.clean_acc
    assert metric(samples, "awnet_model_evaluated_accuracy", inputs="worst_case", **acc) == card.worst_case_acc
    assert metric(samples, "awnet_router_evaluated_ratio", share="detected", **LABELS) == card.detected_share
    assert metric(samples, "awnet_router_evaluated_ratio", share="missed", **LABELS) == card.missed
    assert metric(samples, "awnet_router_evaluated_ratio", share="false_positive", **LABELS) == card.clean_fpr


def test_metrics_move_with_requests(client):
    before = scrape(client)
    # 3 clean + 2 adversarial inputs through v2, 1 clean through v1
    images = np.stack([smooth_image(seed=i) for i in range(3)] + [noisy_image(seed=i) for i in range(2)])
    post_tensors(client, FAKE_MODEL, images)
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify", content=to_png(smooth_image()),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    after = scrape(client)

    assert _delta(before, after, "awnet_inputs_total", verdict="clean", **LABELS) == 4
    assert _delta(before, after, "awnet_inputs_total", verdict="adversarial", **LABELS) == 2
    assert _delta(before, after, "awnet_router_score_count", **LABELS) == 6
    assert _delta(before, after, "awnet_router_score_bucket", le="0.01", **LABELS) == 4
    assert _delta(before, after, "awnet_router_score_bucket", le="+Inf", **LABELS) == 6
    assert _delta(before, after, "awnet_requests_total", endpoint="/v2/models/{name}/infer",
                  status="200", **LABELS) == 1
    assert _delta(before, after, "awnet_requests_total", endpoint="/v1/models/{name}/classify",
                  status="200", **LABELS) == 1
    assert _delta(before, after, "awnet_request_duration_seconds_count",
                  endpoint="/v2/models/{name}/infer", **LABELS) == 1
    assert _delta(before, after, "awnet_queue_duration_seconds_count", **LABELS) == 2
    assert _delta(before, after, "awnet_inference_duration_seconds_count", **LABELS) >= 1
    assert _delta(before, after, "awnet_batch_size_sum", **LABELS) == 6
    for stage in ("decode", "postprocess"):  # per request: the two requests above
        assert _delta(before, after, "awnet_stage_duration_seconds_count", stage=stage, **LABELS) == 2
    for stage in ("run", "derive", "observe"):  # per batch: one or two
        assert _delta(before, after, "awnet_stage_duration_seconds_count", stage=stage, **LABELS) >= 1
    assert metric(after, "awnet_queue_depth", **LABELS) == 0
    assert metric(after, "awnet_inflight_requests", **LABELS) == 0


def test_unlabelled_requests(client):
    before = scrape(client)
    client.get("/v2/models/nope")
    after = scrape(client)
    assert _delta(before, after, "awnet_requests_total", endpoint="/v2/models/{name}",
                  status="404", model="", version="") == 1
    assert _delta(before, after, "awnet_requests_total", endpoint="/metrics", status="200",
                  model="", version="") == 1


def test_a_new_card_replaces_the_old_cards_series():
    """attach-card then a reload: the old card's labels (here its sanity verdict) do not linger."""
    import dataclasses

    from service.metrics import Metrics

    m = Metrics()
    m.model_evaluated("m", "1", dataclasses.replace(FAKE_ROBUSTNESS, sanity_passed=False))
    m.model_evaluated("m", "1", dataclasses.replace(FAKE_ROBUSTNESS, detected_share=None, missed=None, clean_fpr=None))
    text = m.render().decode()
    assert 'sanity="failed"' not in text and 'sanity="passed"' in text
    assert 'share="detected"' not in text
