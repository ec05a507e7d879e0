"""The monitoring side of the contract: docs/contracts.md's metrics, Prometheus rules and
configuration, the Grafana dashboard, and a small PromQL scanner (tests/deploy).

Everything here reads files; the tools (promtool, prometheus, docker-compose, hadolint) are
run through ``tests.support.processes``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import CONTRACTS, DASHBOARD, PROMETHEUS_CONFIG, RULES_DIR

SERVICE_JOB = "awnet"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------- contract metrics
def contract_metrics() -> dict[str, str]:
    """{metric name: type} from the metrics table of docs/contracts.md."""
    metrics: dict[str, str] = {}
    for line in CONTRACTS.read_text().splitlines():
        m = re.match(r"^\|\s*`(awnet_[a-z0-9_]+)`\s*\|\s*([a-z]+)", line)
        if m:
            metrics[m.group(1)] = m.group(2)
    assert metrics, f"no metric table found in {CONTRACTS}"
    return metrics


def contract_buckets(name: str) -> list[float]:
    """The histogram buckets docs/contracts.md fixes for a metric ("...; buckets 0.001 0.005 ...")."""
    for line in CONTRACTS.read_text().splitlines():
        if line.startswith(f"| `{name}`"):
            m = re.search(r"buckets ([0-9. ]+)", line)
            assert m, f"no buckets for {name} in {CONTRACTS}"
            return [float(x) for x in m.group(1).split()]
    raise AssertionError(f"{name} not in {CONTRACTS}")


def sample_names(families: dict[str, str]) -> set[str]:
    """Series names a Prometheus scrape yields for {metric/family name: type}."""
    names: set[str] = set()
    for name, kind in families.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        elif kind == "counter":
            base = name[: -len("_total")] if name.endswith("_total") else name
            names |= {f"{base}_total"}
        else:  # gauge, info, untyped, ...
            names.add(name)
    return names


def live_sample_names(exposition: str) -> set[str]:
    """Series names exported by a live /metrics text (from its # TYPE declarations and samples)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= sample_names({family.name: family.type})
        names |= {sample.name for sample in family.samples}
    return names


# Series that Prometheus itself attaches to every scrape target, not exported by the service.
PROMETHEUS_SYNTHETIC_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}


def recording_rule_names() -> set[str]:
    names = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def rule_expressions() -> dict[str, str]:
    """{rule name: expression} of every recording and alerting rule."""
    exprs = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                exprs[rule.get("record") or rule["alert"]] = rule["expr"]
    return exprs


# ------------------------------------------------------------------------------ PromQL
_PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a small PromQL scanner, enough for our rules and panels).

    Strips strings, label matchers, ranges, grouping clauses and numbers; what remains as an
    identifier not followed by '(' and not a keyword is a metric name.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)
    s = re.sub(r"(?<![\w:])[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?", " ", s)
    s = re.sub(r"(?<![\w:])0x[0-9a-fA-F]+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", s):
        ident, call = m.group(1), m.group(2)
        if call or ident.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(ident)
    return names


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${__rate_interval}": "1m",
    "${__interval}": "1m",
    "${__range}": "1h",
}


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced: durations and '.*' for ours."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_expressions(dash: dict) -> list[tuple[str, str]]:
    """[(where, PromQL with Grafana variables replaced)] of every panel target and variable."""
    exprs = []
    for panel in iter_panels(dash.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                exprs.append(
                    (
                        f"panel {panel.get('title')!r} target {target.get('refId')}",
                        grafana_to_promql(target["expr"]),
                    )
                )
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if var.get("type") == "query" and query:
            m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query)
            selector = m.group(1) if m else query
            exprs.append((f"variable {var['name']!r}", grafana_to_promql(selector)))
    return exprs


# ------------------------------------------------------- Prometheus configuration for tests
def derive_test_prometheus_config(target: str, *, interval: str = "1s") -> dict:
    """The compose stack's prometheus.yml with only what a test on this machine must change.

    - the service job's dns_sd_configs (the compose service name) -> static_configs [target]
    - scrape/evaluation intervals -> `interval` (so a test sees rates within seconds)
    - rule_files -> absolute paths of the same files (the copy lives in a temporary folder)
    Job name, metrics path, relabeling and the rule files themselves stay as they are.
    """
    real = load_yaml(PROMETHEUS_CONFIG)
    cfg = copy.deepcopy(real)
    glob_ = cfg.setdefault("global", {})
    glob_["scrape_interval"] = interval
    glob_["evaluation_interval"] = interval
    glob_["scrape_timeout"] = interval
    cfg["rule_files"] = [
        str((PROMETHEUS_CONFIG.parent / p).resolve()) for p in real.get("rule_files", [])
    ]
    replaced = 0
    for job in cfg["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        if job.get("job_name") == SERVICE_JOB:
            assert "dns_sd_configs" in job, "the service job should use DNS service discovery"
            del job["dns_sd_configs"]
            job["static_configs"] = [{"targets": [target]}]
            replaced += 1
    assert replaced == 1, f"expected exactly one scrape job named {SERVICE_JOB!r}"
    return cfg


def contract_families() -> dict[str, str]:
    """{family name as prometheus_client parses it (counters without _total): type}."""
    return {
        (name.removesuffix("_total") if kind == "counter" else name): kind
        for name, kind in contract_metrics().items()
    }
