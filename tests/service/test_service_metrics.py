"""Metrics move as requests are served; names and labels follow docs/contracts.md."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.service.conftest import FAKE_MODEL, metric, post_tensors, scrape, start_server
from tests.service.fake_model import noisy_image, smooth_image, to_png

LABELS = {"model": FAKE_MODEL, "version": "1"}
CONTRACT_FAMILIES = {
    "awnet_router_score": "histogram",
    "awnet_inputs": "counter",
    "awnet_requests": "counter",
    "awnet_request_duration_seconds": "histogram",
    "awnet_queue_duration_seconds": "histogram",
    "awnet_inference_duration_seconds": "histogram",
    "awnet_batch_size": "histogram",
    "awnet_queue_depth": "gauge",
    "awnet_inflight_requests": "gauge",
    "awnet_model_info": "gauge",
    "awnet_model_ready": "gauge",
    "awnet_refused_requests": "counter",
}


@pytest.fixture(scope="module")
def server(repository):
    with start_server(repository) as srv:
        yield srv


def _delta(before, after, name, **labels):
    return metric(after, name, **labels) - metric(before, name, **labels)


def test_contract_metric_names_types_and_buckets(server):
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in CONTRACT_FAMILIES.items():
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
    samples = scrape(server.url)
    assert metric(samples, "awnet_model_info", provider="CPUExecutionProvider", kind="awnet",
                  method="fake", **LABELS) == 1
    assert metric(samples, "awnet_model_ready", **LABELS) == 1
    # series exist at zero from the start, so that rates are defined
    for verdict in ("clean", "adversarial"):
        assert ("awnet_inputs_total", frozenset({**LABELS, "verdict": verdict}.items())) in samples


def test_metrics_move_with_requests(server):
    before = scrape(server.url)
    # 3 clean + 2 adversarial inputs through v2, 1 clean through v1
    images = np.stack([smooth_image(seed=i) for i in range(3)] + [noisy_image(seed=i) for i in range(2)])
    post_tensors(server.url, FAKE_MODEL, images)
    r = httpx.post(f"{server.url}/v1/models/{FAKE_MODEL}/classify", content=to_png(smooth_image()),
                   headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    after = scrape(server.url)

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
    assert metric(after, "awnet_queue_depth", **LABELS) == 0
    assert metric(after, "awnet_inflight_requests", **LABELS) == 0


def test_unlabelled_requests(server):
    before = scrape(server.url)
    httpx.get(server.url + "/v2/models/nope")
    after = scrape(server.url)
    assert _delta(before, after, "awnet_requests_total", endpoint="/v2/models/{name}",
                  status="404", model="", version="") == 1
    assert _delta(before, after, "awnet_requests_total", endpoint="/metrics", status="200",
                  model="", version="") == 1
