"""Prometheus configuration, recording/alerting rules and their promtool unit tests."""

from __future__ import annotations

import re

import yaml

from tests.support.monitoring import (
    PROMETHEUS_SYNTHETIC_SERIES,
    contract_metrics,
    derive_test_prometheus_config,
    load_yaml,
    promql_metric_names,
    recording_rule_names,
    rule_expressions,
    sample_names,
)
from tests.support.paths import PROMETHEUS_CONFIG, PROMTOOL_TESTS_DIR, ROOT, RULES_DIR
from tests.support.processes import run, tool

EXPECTED_ALERTS = {
    "AWNetAdversarialInputRateHigh",
    "AWNetTargetDown",
    "AWNetNoTargets",
    "AWNetModelNotReady",
    "AWNetHighP99Latency",
    "AWNetHigh5xxRatio",
    "AWNetRequestsRefusedOverload",
}
EXPECTED_RECORDS = {
    "model_version:awnet_adversarial_input_ratio:rate1m",
    "model_version:awnet_adversarial_input_ratio:rate5m",
}


def rules() -> list[dict]:
    return [rule for path in sorted(RULES_DIR.glob("*.yml"))
            for group in load_yaml(path)["groups"] for rule in group["rules"]]


def test_promtool_check_config():
    out = run([tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG)])
    assert "SUCCESS" in out.stdout
    # promtool accepts a rule_files glob that matches nothing: check it finds our rules
    found = {p.resolve() for pattern in load_yaml(PROMETHEUS_CONFIG)["rule_files"]
             for p in PROMETHEUS_CONFIG.parent.glob(pattern)}
    assert found == {p.resolve() for p in RULES_DIR.glob("*.yml")} != set()


def test_promtool_check_rules():
    files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    assert files
    out = run([tool("promtool"), "check", "rules", *files])
    assert "SUCCESS" in out.stdout


def test_promtool_rule_unit_tests_pass():
    files = sorted(str(p) for p in PROMTOOL_TESTS_DIR.glob("*.yml"))
    assert files
    out = run([tool("promtool"), "test", "rules", *files])
    assert out.stdout.count("SUCCESS") == len(files), out.stdout


def test_rule_set_is_complete():
    names = {r.get("alert") or r.get("record") for r in rules()}
    assert names >= EXPECTED_ALERTS
    assert names >= EXPECTED_RECORDS
    for rule in rules():
        if "alert" in rule:
            assert rule.get("for"), f"{rule['alert']} needs a `for` duration"
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_alert_is_unit_tested_firing_and_silent():
    fires, silent, exprs_tested = set(), set(), []
    for path in sorted(PROMTOOL_TESTS_DIR.glob("*.yml")):
        doc = load_yaml(path)
        rule_files = {(path.parent / f).resolve() for f in doc["rule_files"]}
        assert rule_files <= {p.resolve() for p in RULES_DIR.glob("*.yml")}, path
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                exp = case.get("exp_alerts") or []
                if exp:
                    fires.add(case["alertname"])
                    for alert in exp:  # labels AND annotations are checked
                        assert alert.get("exp_labels") and alert.get("exp_annotations"), (path, case)
                else:
                    silent.add(case["alertname"])
            exprs_tested += [c["expr"] for c in test.get("promql_expr_test", [])]
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts - fires == set(), "alerts without a test proving they fire"
    assert alerts - silent == set(), "alerts without a test proving they stay silent"
    for record in recording_rule_names():
        assert any(record in e for e in exprs_tested), f"recording rule {record} has no promql_expr_test"


def test_rules_use_only_metrics_the_service_exports():
    known = sample_names(contract_metrics()) | recording_rule_names() | PROMETHEUS_SYNTHETIC_SERIES
    for name, expr in rule_expressions().items():
        unknown = promql_metric_names(expr) - known
        assert not unknown, f"rule {name} uses metrics not in docs/contracts.md: {unknown}"


def test_alert_thresholds_are_documented():
    """docs/deployment.md lists every alert with its threshold and `for` duration."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for rule in rules():
        if "alert" not in rule:
            continue
        row = next((line for line in doc.splitlines()
                    if line.startswith("|") and f"`{rule['alert']}`" in line), None)
        assert row, f"{rule['alert']} missing from the alert table of docs/deployment.md"
        assert f"`{rule['for']}`" in row, f"{rule['alert']}: `for: {rule['for']}` not in {row!r}"
        m = re.search(r"(?:>|==)\s*([0-9.]+)\s*$", rule["expr"].strip())
        if m:
            assert f"`{m.group(1)}`" in row, f"{rule['alert']}: threshold {m.group(1)} not in {row!r}"


def test_test_config_differs_from_the_compose_config_only_in_target_and_intervals(tmp_path):
    real = load_yaml(PROMETHEUS_CONFIG)
    derived = derive_test_prometheus_config("127.0.0.1:18000")
    real_job = next(j for j in real["scrape_configs"] if j["job_name"] == "awnet")
    job = next(j for j in derived["scrape_configs"] if j["job_name"] == "awnet")
    assert job["static_configs"] == [{"targets": ["127.0.0.1:18000"]}]
    strip = {"dns_sd_configs", "static_configs", "scrape_interval", "scrape_timeout"}
    assert {k: v for k, v in job.items() if k not in strip} == \
        {k: v for k, v in real_job.items() if k not in strip}
    assert job["relabel_configs"] == real_job["relabel_configs"]
    assert [p.replace(str(PROMETHEUS_CONFIG.parent) + "/", "") for p in derived["rule_files"]] == \
        real["rule_files"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(derived, sort_keys=False))
    out = run([tool("promtool"), "check", "config", str(path)])
    assert "SUCCESS" in out.stdout
