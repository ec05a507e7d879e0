"""The real Prometheus binary scraping the live service with the compose stack's files.

Prometheus runs with a copy of docker/prometheus/prometheus.yml in which only the target
(static 127.0.0.1:<port> instead of DNS discovery of the compose service), the intervals (1s)
and the absolute paths of the same rule files differ (derive_test_prometheus_config).
The test sends clean and adversarial requests and reads back, through Prometheus's HTTP API,
the router-score histogram and a non-zero adversarial-input rate.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
import yaml

from tests.support.images import mnist_digits, noised, synthetic_digits
from tests.support.monitoring import (
    SERVICE_JOB,
    contract_buckets,
    dashboard,
    dashboard_expressions,
    derive_test_prometheus_config,
)
from tests.support.paths import RULES_DIR
from tests.support.processes import Process, run, tool, wait_until
from tests.support.servers import free_port

pytestmark = pytest.mark.slow


class PrometheusAPI:
    def __init__(self, base_url: str, process: Process) -> None:
        self.base_url, self.process = base_url, process

    def get(self, path: str, **params) -> dict:
        self.process.fail_if_dead()
        r = httpx.get(f"{self.base_url}{path}", params=params, timeout=5.0)
        payload = r.json()
        assert r.status_code == 200 and payload["status"] == "success", f"{r.url}: {r.status_code} {payload}"
        return payload["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(live_service, tmp_path):
    config = derive_test_prometheus_config(live_service.target, interval="1s")
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    run([tool("promtool"), "check", "config", str(config_path)])
    port = free_port()
    process = Process("prometheus", [
        tool("prometheus"),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ], tmp_path / "prometheus.log")
    api = PrometheusAPI(f"http://127.0.0.1:{port}", process)
    try:
        def ready() -> bool:
            process.fail_if_dead()
            try:
                return httpx.get(f"{api.base_url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, what="prometheus /-/ready")
        yield api
    finally:
        process.stop()


def test_prometheus_scrapes_router_scores_and_adversarial_rate(live_service, prometheus):
    model, version = live_service.model, live_service.version
    sel = f'model="{model}", version="{version}"'

    # 1. the service is a healthy target of the service job, with the config's relabeling
    def target_up():
        targets = prometheus.get("/api/v1/targets", state="active")["activeTargets"]
        return [t for t in targets if t["labels"].get("job") == SERVICE_JOB and t["health"] == "up"]

    target = wait_until(target_up, 30, what="the service target to be up")[0]
    assert target["labels"]["instance"] == live_service.target
    assert target["labels"].get("service") == "awnet"
    # at least two scrapes before traffic, so rates see the counters move
    wait_until(lambda: (prometheus.value(f'count_over_time(up{{job="{SERVICE_JOB}"}}[1m])') or 0) >= 2,
               20, what="two scrapes")

    def buckets_by_le() -> dict[float, float]:
        return {float(b["metric"]["le"]): float(b["value"][1])
                for b in prometheus.query(f"awnet_router_score_bucket{{{sel}}}")}

    before = buckets_by_le()
    base = before.get(float("inf"), 0.0)

    # 2. clean and adversarial requests, spread over several scrapes
    clean = mnist_digits(8) if live_service.kind == "shipped" else None
    clean = synthetic_digits(8) if clean is None else clean
    adversarial = noised(clean)
    rounds, sent_clean, sent_adv = 4, 0, 0
    for i in range(rounds):
        override = -np.ones(len(clean), np.float32) if i == 0 else None  # "use the router"
        for images, kind in ((clean, "clean"), (adversarial, "adversarial")):
            status, body = live_service.infer(images, mix_override=override)
            assert status == 200, f"{kind} request: {status} {body}"
            assert {o["name"] for o in body["outputs"]} >= {"logits", "p_adv", "mix"}, body
        sent_clean += len(clean)
        sent_adv += len(adversarial)
        time.sleep(1.2)
    total = sent_clean + sent_adv

    # 3. the router-score histogram, read back from Prometheus
    wait_until(lambda: (prometheus.value(f"sum(awnet_router_score_count{{{sel}}})") or 0) - base >= total,
               30, what=f"{total} router scores in Prometheus")
    by_le = buckets_by_le()
    assert set(by_le) == {*contract_buckets("awnet_router_score"), float("inf")}, sorted(by_le)
    counts = [by_le[k] for k in sorted(by_le)]
    assert counts == sorted(counts), "cumulative buckets"
    added = {le: n - before.get(le, 0.0) for le, n in by_le.items()}
    assert added[float("inf")] == total

    # 4. a non-zero adversarial-input rate, from the recording rules (1m and 5m), evaluated
    # after the last scrape of the traffic (evaluation interval 1s)
    time.sleep(3)
    ratio_1m = wait_until(
        lambda: prometheus.value(f"model_version:awnet_adversarial_input_ratio:rate1m{{{sel}}}"),
        30, what="a non-zero adversarial-input rate (1m)")
    ratio_5m = wait_until(
        lambda: prometheus.value(f"model_version:awnet_adversarial_input_ratio:rate5m{{{sel}}}"),
        30, what="a non-zero adversarial-input rate (5m)")
    assert 0 < ratio_1m <= 1 and 0 < ratio_5m <= 1
    adv_inputs = prometheus.value(f'sum(awnet_inputs_total{{{sel}, verdict="adversarial"}})')
    assert adv_inputs and adv_inputs > 0

    if live_service.kind == "fixture":
        # the fixture router is deterministic: clean -> p_adv < 0.025, noised -> p_adv > 0.5
        assert added[0.025] == sent_clean, added
        assert added[0.5] == sent_clean, added
        assert added[float("inf")] - added[0.5] == sent_adv, added
        assert abs(ratio_1m - 0.5) < 0.02 and abs(ratio_5m - 0.5) < 0.02, (ratio_1m, ratio_5m)
        # half the inputs adversarial > 20%: the alert is pending (it fires after 5 minutes)
        wait_until(lambda: prometheus.query(
            f'ALERTS{{alertname="AWNetAdversarialInputRateHigh", alertstate="pending", {sel}}}'),
            30, what="AWNetAdversarialInputRateHigh pending")

    # 5. every rule of the real rule files is loaded and evaluates without error
    def rules_evaluated():
        groups = prometheus.get("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return groups if rules and all(r["health"] == "ok" for r in rules) else None

    groups = wait_until(rules_evaluated, 30, what="all rules evaluated with health ok")
    assert {g["file"] for g in groups} == {str(p.resolve()) for p in RULES_DIR.glob("*.yml")}
    firing_wrongly = prometheus.query(
        'ALERTS{alertname=~"AWNetTargetDown|AWNetNoTargets|AWNetModelNotReady", alertstate="firing"}')
    assert firing_wrongly == [], firing_wrongly

    # 6. every dashboard expression runs against the real series
    for _where, expr in dashboard_expressions(dashboard()):
        prometheus.query(expr)  # fails the test on a Prometheus error
    for series in ("awnet_requests_total", "awnet_request_duration_seconds_count",
                   "awnet_batch_size_count", "awnet_inference_duration_seconds_count",
                   "awnet_queue_duration_seconds_count", "awnet_model_info", "awnet_model_ready"):
        assert prometheus.query(f"{series}{{{sel}}}"), f"no {series} series for {model} in Prometheus"
    assert prometheus.value(f"sum(awnet_model_ready{{{sel}}})") == 1

    # 7. what the evaluation card measured, beside the flagged rate, for both models
    card = json.loads((live_service.version_dir / "manifest.json").read_text())["evaluation"]["robustness"]
    for share, key in (("detected", "detected_share"), ("missed", "missed"), ("false_positive", "clean_fpr")):
        got = prometheus.value(f'max(awnet_router_evaluated_ratio{{{sel}, share="{share}"}})')
        assert got == pytest.approx(card[key]), (share, got, card[key])
    worst = prometheus.value(f'max(awnet_model_evaluated_accuracy{{{sel}, inputs="worst_case"}})')
    assert worst == pytest.approx(card["worst_case_acc"])
