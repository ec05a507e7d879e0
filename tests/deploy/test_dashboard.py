"""The provisioned Grafana dashboard: structure, PromQL validity and the metrics it names."""

from __future__ import annotations

import numpy as np
import yaml

from tests.support.images import mnist_digits, noised, synthetic_digits
from tests.support.monitoring import (
    PROMETHEUS_SYNTHETIC_SERIES,
    contract_metrics,
    dashboard,
    dashboard_expressions,
    iter_panels,
    live_sample_names,
    load_yaml,
    promql_metric_names,
    recording_rule_names,
    sample_names,
)
from tests.support.paths import DASHBOARD, GRAFANA_PROVISIONING
from tests.support.processes import run, tool


def datasource_uid() -> str:
    sources = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus"
    return sources[0]["uid"]


def panels() -> list[dict]:
    return list(iter_panels(dashboard()["panels"]))


def exprs_of(panel: dict) -> list[str]:
    return [t["expr"] for t in panel.get("targets", []) if t.get("expr")]


def test_dashboard_json_parses_and_uses_the_provisioned_datasource():
    dash = dashboard()
    assert dash["uid"] == "awnet-serve" and dash["title"]
    uid = datasource_uid()
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid, (panel["title"], target["refId"])
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == uid, var["name"]


def test_panels_fit_the_grid_without_overlapping():
    cells = {}
    ids = set()
    for panel in panels():
        assert panel["id"] not in ids
        ids.add(panel["id"])
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_shows_what_the_issue_asks_for():
    ps = panels()

    def find(pred, what):
        hits = [p for p in ps if pred(p)]
        assert hits, f"no panel shows {what}"
        return hits

    find(lambda p: any("awnet_requests_total" in e and "status" in e for e in exprs_of(p)),
         "the request rate by endpoint/status")
    lat = find(lambda p: sum("histogram_quantile" in e and "awnet_request_duration_seconds_bucket" in e
                             for e in exprs_of(p)) >= 3, "latency quantiles")
    assert {q for e in exprs_of(lat[0]) for q in ("0.5", "0.9", "0.99") if f"({q}," in e} == \
        {"0.5", "0.9", "0.99"}
    find(lambda p: any("awnet_batch_size" in e for e in exprs_of(p)), "batch sizes")
    heat = find(lambda p: p["type"] == "heatmap"
                and any("awnet_router_score_bucket" in e for e in exprs_of(p)),
                "the router-score distribution as a heatmap")
    assert all(t.get("format") == "heatmap" for t in heat[0]["targets"])
    find(lambda p: any("adversarial_input_ratio" in e for e in exprs_of(p)), "the adversarial-input rate")
    find(lambda p: any("awnet_queue_depth" in e for e in exprs_of(p)), "the queue depth")
    find(lambda p: any("awnet_refused_requests_total" in e and "reason" in e for e in exprs_of(p)),
         "refused requests by reason")
    find(lambda p: any("awnet_model_info" in e for e in exprs_of(p)), "model info / provider")
    card = find(lambda p: any("awnet_router_evaluated_ratio" in e for e in exprs_of(p)),
                "what the router was measured to catch, beside the rate it flags")
    assert {s for e in exprs_of(card[0]) for s in ("detected", "missed", "false_positive") if f'"{s}"' in e} == \
        {"detected", "missed", "false_positive"}


def test_dashboard_promql_is_valid(tmp_path):
    """Every expression (Grafana variables substituted) parses with Prometheus's own parser."""
    exprs = dashboard_expressions(dashboard())
    assert len(exprs) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_exprs.yml"
    path.write_text(yaml.safe_dump(rules))
    out = run([tool("promtool"), "check", "rules", str(path)])
    assert f"SUCCESS: {len(exprs)} rules found" in out.stdout


def test_promql_metric_names_scanner():
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (le, model) (rate(awnet_request_duration_seconds_bucket'
        '{model!="", endpoint=~"/v2/.*"}[5m]))) > 0.5') == {"awnet_request_duration_seconds_bucket"}
    assert promql_metric_names(
        'sum(rate(a_total[1m] offset 5m)) by (x) / on (model, version) group_left (provider) '
        'b_info or vector(0) and absent(up{job="awnet"}) * 1e-3') == {"a_total", "b_info", "up"}
    assert promql_metric_names('model_version:awnet_adversarial_input_ratio:rate5m{model=~".*"}') == \
        {"model_version:awnet_adversarial_input_ratio:rate5m"}


def allowed_names(exported: set[str]) -> set[str]:
    return exported | recording_rule_names() | PROMETHEUS_SYNTHETIC_SERIES


def test_dashboard_names_only_metrics_of_the_contract():
    allowed = allowed_names(sample_names(contract_metrics()))
    for where, expr in dashboard_expressions(dashboard()):
        unknown = promql_metric_names(expr) - allowed
        assert not unknown, f"{where} of {DASHBOARD.name} uses unknown metrics {unknown}: {expr}"


def test_dashboard_names_only_metrics_the_live_service_exports(live_service):
    """Checked against a live /metrics after some traffic (clean, adversarial, bad, unknown)."""
    clean = mnist_digits(4)
    clean = synthetic_digits(4) if clean is None else clean
    for images in (clean, noised(clean)):
        status, body = live_service.infer(images)
        assert status == 200, body
    live_service.infer(np.zeros((1, 1, 5, 5), np.float32))  # bad input: refused, counted
    exported = live_sample_names(live_service.metrics_text())
    missing_contract = sample_names(contract_metrics()) - exported
    assert not missing_contract, f"the service does not export {missing_contract} (docs/contracts.md)"
    allowed = allowed_names(exported)
    used = set()
    for where, expr in dashboard_expressions(dashboard()):
        names = promql_metric_names(expr)
        used |= names
        assert not names - allowed, f"{where} uses metrics the service does not export: {names - allowed}"
    assert used & exported, "the dashboard should read series the service exports"


def test_datasource_points_at_the_compose_prometheus():
    ds = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"][0]
    assert ds["url"] == "http://prometheus:9090" and ds["access"] == "proxy"
