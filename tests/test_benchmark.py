"""Smoke tests of scripts/benchmark.py: it runs and writes its table, JSON and plot.

No assertion here is about speed (the project's rule: speed and memory go in the benchmark
script's table, never in a timed test); only that the measurements exist and are sane.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "benchmark.py"
CHECKPOINT = ROOT / "models" / "checkpoints" / "awnet-mnist-1.pt"
MODEL_DIR = ROOT / "models" / "repository" / "awnet-mnist" / "1"
TINY = ["--seconds", "0.05", "--batch-sizes", "1", "4", "--rounds", "2", "--warmup", "1"]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("awnet_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_benchmark(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, f"benchmark failed ({res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def shipped() -> None:
    if not (MODEL_DIR / "manifest.json").is_file() or not CHECKPOINT.is_file():
        pytest.skip("the shipped model or its checkpoint is not there (make model)")


@pytest.fixture(scope="module")
def tiny_run(shipped: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny run that builds both baselines from the shipped checkpoint."""
    out = tmp_path_factory.mktemp("bench")
    res = run_benchmark(*TINY, "--cache-dir", str(out / "cache"), "--json-out", str(out / "results.json"),
                        "--plot-out", str(out / "latency.png"))
    return {"out": out, "stdout": res.stdout, "stderr": res.stderr,
            "results": json.loads((out / "results.json").read_text())}


def test_pure_helpers() -> None:
    bench = load_script()
    table = bench.format_table(["a", "bb"], [["x", 1], ["yyy", 22]]).splitlines()
    assert table[0] == "a   | bb" and table[2] == "x   |  1" and table[3] == "yyy | 22"
    assert bench.ratio(3.0, 2.0) == 1.5 and bench.ratio(1.0, 0.0) is None
    assert bench.fmt_ratio(None) == "-" and bench.fmt_ratio(1.234) == "1.23x"
    metrics = ('awnet_batch_size_count{model="m",version="1"} 3.0\n'
               'awnet_batch_size_count{model="m",version="2"} 2.0\n'
               'awnet_batch_size_count{model="other",version="1"} 7.0\n')
    assert bench._metric_sum(metrics, "awnet_batch_size_count", "m") == 5.0


def test_http_mode_refuses_non_loopback_addresses() -> None:
    bench = load_script()
    for url in ("http://192.0.2.10:8000", "http://10.0.0.1", "ftp://127.0.0.1"):
        with pytest.raises(SystemExit, match="loopback|must look like"):
            bench.check_loopback(url)
    assert bench.check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


@pytest.mark.slow
def test_benchmark_writes_table_json_and_plot(tiny_run: dict[str, Any]) -> None:
    out, stdout, results = tiny_run["out"], tiny_run["stdout"], tiny_run["results"]
    # the tables, with the three models side by side
    assert "awnet ms (p50/p90)" in stdout and "static ms (p50/p90)" in stdout and "awnet/static" in stdout
    assert "awnet/plain" in stdout and "mode/router" in stdout
    assert "model.onnx bytes" in stdout and "peak RSS MiB" in stdout
    assert "-m training export --static" in tiny_run["stderr"]
    # the plot is a real PNG
    png = (out / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # the JSON: every cell measured, ratios present and positive
    assert results["settings"]["batch_sizes"] == [1, 4]
    assert results["machine"]["providers"] == {k: "CPUExecutionProvider" for k in ("awnet", "static", "plain")}
    cells = {(c["model"], c["mode"], c["batch"]) for c in results["latency"]}
    assert cells == {(m, mode, b) for b in (1, 4)
                     for m, mode in [("awnet", "router"), ("awnet", "clean"), ("awnet", "adv"),
                                     ("static", "-"), ("plain", "-")]}
    assert all(c["calls"] >= 2 and 0 < c["p50_ms"] <= c["p90_ms"] for c in results["latency"])
    assert len(results["comparison"]) == 6
    for row in results["comparison"]:
        for key in ("ratio_awnet_static_p50", "ratio_awnet_static_throughput", "ratio_awnet_plain_p50",
                    "ratio_mode_router_p50"):
            assert row[key] > 0, key
    size, memory = results["size"], results["memory"]
    assert size["ratio_awnet_static_bytes"] > 1 and size["ratio_awnet_static_params"] > 1
    assert memory["batch"] == 4 and memory["ratio_awnet_static_peak_rss"] > 0
    assert memory["awnet"]["peak_rss_bytes"] > memory["interpreter+onnxruntime"]["peak_rss_bytes"] > 0

    # what the graphs hold: the facts the docs rely on
    models = results["models"]
    assert models["static"]["built"] == "built" and models["static"]["kind"] == "static"
    assert models["awnet"]["router_type_head"] and models["awnet"]["adversarial_bn"]
    assert not models["static"]["router_type_head"] and not models["static"]["adversarial_bn"]
    assert not models["plain"]["router_extractor"] and not models["plain"]["router_signal_heads"]


@pytest.mark.slow
def test_benchmark_reuses_baseline_and_loads_a_running_service(tiny_run: dict[str, Any], tmp_path: Path) -> None:
    from tests.service.conftest import SHIPPED_REPOSITORY, start_process

    static_dir = tiny_run["results"]["models"]["static"]["dir"]
    with start_process(SHIPPED_REPOSITORY, env={"AWNET_PROVIDERS": "cpu"}) as server:
        res = run_benchmark("--seconds", "0.02", "--batch-sizes", "2", "--rounds", "1", "--warmup", "1",
                            "--baseline-dir", static_dir, "--no-plain", "--no-memory",
                            "--http", server.url, "--http-clients", "1", "4", "--http-requests", "12",
                            "--http-seconds", "20",
                            "--json-out", str(tmp_path / "r.json"), "--plot-out", str(tmp_path / "p.png"))
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results["models"]) == {"awnet", "static"} and results["models"]["static"]["built"] == "given"
    assert "mean ORT batch" in res.stdout
    http = results["http"]
    assert [h["clients"] for h in http] == [1, 4]
    for h in http:
        assert h["requests"] == h["ok"] == 12 and not h["errors"]
        assert h["ort_calls"] >= 1 and h["mean_ort_batch"] >= 1
