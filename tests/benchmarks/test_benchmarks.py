"""Tests of the ``benchmarks`` package (``python -m benchmarks``) at tiny settings.

No assertion here is about speed (the project's rule: speed goes in the benchmark's tables,
never in a timed test): the package runs end to end, parses wrk's output, computes its
ratios and targets, and writes its tables, JSON, plots and docs section.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artifact_contract import INPUT_IMAGE
from benchmarks import cli, docs, plots, profile, report, report_http, targets, wrk
from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    DEFAULT_MODEL_DIR,
    check_loopback,
    format_table,
    ratio,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = DEFAULT_MODEL_DIR
CHECKPOINT = DEFAULT_CHECKPOINT
needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk not installed (scripts/install_system_deps.sh)"
)

WRK_TEXT = """Running 1s test @ http://127.0.0.1:8000/v2/models/m/infer
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.50ms  800.00us  12.00ms   90.00%
    Req/Sec     1.60k   100.00     1.70k    80.00%
  Latency Distribution
     50%    2.30ms
     75%    2.80ms
     90%    3.50ms
     99%   10.10ms
  1600 requests in 1.00s, 1.20MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   1598.40
Transfer/sec:      1.20MB
"""
WRK_JSON = (
    'WRK_JSON {"requests":1600,"duration_us":1000000,"bytes":1258291,"errors":{"connect":0,"read":1,'
    '"write":0,"status":4,"timeout":2},"latency_us":{"min":900,"mean":2500.0,"stdev":800.0,"max":12000,'
    '"p50":2310,"p75":2800,"p90":3500,"p99":10100,"p99.9":11900}}'
)


def run_benchmarks(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    res = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout, env=env)  # fmt: skip
    assert res.returncode == 0, (
        f"benchmarks failed ({res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}"
    )
    return res


def synthetic_results() -> dict[str, Any]:
    latency = [
        {"model": m, "mode": mode, "batch": b, "p50_ms": p * b, "p90_ms": p * b * 1.2, "images_per_s": 1e3 / p}
        for b in (1, 32)
        for m, mode, p in (("awnet", "router", 0.4), ("awnet", "clean", 0.4), ("awnet", "adv", 0.4),
                           ("plain", "-", 0.25))
    ]  # fmt: skip

    def row(
        server: str, scenario: str, conns: int, rps: float, p50: float, p99: float, images: int = 1
    ) -> dict[str, Any]:
        return {"server": server, "model": "m", "scenario": scenario, "connections": conns, "requests_per_s": rps,
                "images_per_request": images, "images_per_s": rps * images, "p50_ms": p50, "p99_ms": p99,
                "ok": 100, "errors_total": 0, "mean_batch": 1.0, "server_cpu_ms_per_request": 1.0,
                "client_cpu_share": 0.05, "load_fraction": 0.7}  # fmt: skip

    http = [row("service", "single", 1, 200, 1.2, 2.0), row("service", "single", 32, 1600, 20, 40),
            row("triton", "single", 32, 700, 45, 60), row("service", "batch", 8, 90, 80, 90, images=32),
            row("service", "paced", 32, 1100, 5, 25)]  # fmt: skip
    comparison = report.compare(latency, [1, 32], ["awnet", "plain"])
    report_http.http_ratios(http, latency)
    return {"latency": latency, "comparison": comparison, "http": http, "models": {"awnet": {"arch": "awnet_smallcnn"}},
            "rss_over_requests": {"growth": 0.01, "requests": 1000}}  # fmt: skip


# --- pure parts -------------------------------------------------------------------------------------
def test_wrk_output_is_parsed_from_its_json_line_and_from_its_text() -> None:
    text = wrk.parse_wrk(WRK_TEXT)
    assert (
        text["requests"] == 1600 and text["ok"] == 1596 and text["duration_s"] == pytest.approx(1.0)
    )
    assert text["p50_ms"] == pytest.approx(2.3) and text["p99_ms"] == pytest.approx(10.1)
    assert text["mean_ms"] == pytest.approx(2.5) and text["stdev_ms"] == pytest.approx(0.8)
    assert text["errors"] == {"connect": 0, "read": 1, "write": 0, "status": 4, "timeout": 2}
    assert text["errors_total"] == 7 and text["reported_requests_per_s"] == pytest.approx(1598.4)
    exact = wrk.parse_wrk(WRK_TEXT + WRK_JSON + "\n")
    assert exact["p50_ms"] == pytest.approx(2.31) and exact["p999_ms"] == pytest.approx(11.9)
    assert exact["requests_per_s"] == pytest.approx(1596.0) and exact["bytes"] == 1258291
    with pytest.raises(ValueError):
        wrk.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_v2_body_names_the_contract_input_and_carries_the_raw_tensor() -> None:
    images = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2)
    body, head_len = wrk.v2_body(images)
    head = json.loads(body[:head_len])
    assert head["inputs"][0]["name"] == INPUT_IMAGE and head["inputs"][0]["shape"] == [2, 1, 2, 2]
    assert np.array_equal(np.frombuffer(body[head_len:], "<f4").reshape(images.shape), images)
    assert "outputs" not in head and head["parameters"]["binary_data_output"] is True
    body, head_len = wrk.v2_body(images, outputs=("p_adv",))
    asked = json.loads(body[:head_len])["outputs"]
    assert asked == [{"name": "p_adv", "parameters": {"binary_data": True}}]


def test_tables_ratios_and_targets() -> None:
    table = format_table(["a", "bb"], [["x", 1], ["yyy", 22]]).splitlines()
    assert table[0] == "a   | bb" and table[2] == "x   |  1" and table[3] == "yyy | 22"
    assert ratio(3.0, 2.0) == 1.5 and ratio(1.0, 0.0) is None and ratio(None, 1.0) is None
    res = synthetic_results()
    text = report.latency_table(res["comparison"], ["awnet", "plain"])
    assert "awnet/plain" in text and "1.60x" in text  # 0.4 / 0.25
    single32 = next(r for r in res["http"] if r["scenario"] == "single" and r["connections"] == 32)
    assert single32["vs_triton"] == pytest.approx(1600 / 700)
    assert "vs triton" in report_http.http_table(res["http"])
    verdicts = {t["target"].split(":")[0]: t["met"] for t in targets.targets(res)}
    assert verdicts["1 image, 32 connections"] is True  # 2.29x >= 2
    assert verdicts["service, 1 connection"] is True  # 1.2 ms <= 0.4 + 1
    assert verdicts["service, at 70 % of saturation"] is False  # p99 / p50 = 5
    assert verdicts["service, RSS growth after warm-up"] is True
    # A second service configuration (--workers 1 2) gets its own HTTP targets.
    w2 = [{**r, "server": "service-w2", "requests_per_s": 1300} for r in res["http"]
          if r["server"] == "service"]
    by_name = {t["target"]: t["met"] for t in targets.targets({**res, "http": res["http"] + w2})}
    assert by_name["1 image, 32 connections: service-w2 req/s / PyTriton's"] is False  # 1.86x
    assert by_name["1 image, 32 connections: service req/s / PyTriton's"] is True
    assert "service-w2, 1 connection: p50 ms vs model call + 1 ms" in by_name
    assert verdicts["awnet_smallcnn"] is False  # throughput 0.625x of plain
    res["http"] = [r for r in res["http"] if r["server"] != "triton"]
    assert targets.targets(res)[0]["met"] is None  # no PyTriton: not measured, never met
    assert "not measured" in targets.targets_table(targets.targets(res))


def test_profile_summary_by_area_thread_and_function() -> None:
    raw = "\n".join([
        "_run_module_as_main (<frozen runpy>:198);_run_once (asyncio/base_events.py:1922);"
        "parse_infer_request (service/codec_v2.py:120) 6",
        "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);"
        "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:220) 3",
        "Thread._bootstrap (threading.py:1002);WorkerThread.run (anyio/_backends/_asyncio.py:1113);"
        "Condition.wait (threading.py:320) 1",
    ])  # fmt: skip
    s = profile.summarize(raw)
    assert s["samples"] == 10
    areas = {a["area"]: a["samples"] for a in s["areas"]}
    assert areas == {
        "service: v2 codec": 6,
        "model call (onnxruntime)": 3,
        "waiting (locks, queues, epoll)": 1,
    }
    threads = {t["thread"]: t["samples"] for t in s["threads"]}
    assert (
        threads["event loop (main thread)"] == 6
        and threads["anyio threadpool (sync routes and dependencies)"] == 1
    )
    assert s["self"][0]["function"] == "parse_infer_request (service/codec_v2.py)"


def test_docs_section_replaces_only_what_is_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "benchmark.md"
    doc.write_text(
        f"# Title\n\nprose before\n\n{docs.BEGIN}\nold figures\n{docs.END}\n\nprose after\n"
    )
    docs.write_between_markers(doc, f"{docs.BEGIN}\nnew figures\n{docs.END}")
    text = doc.read_text()
    assert "old figures" not in text and "new figures" in text
    assert text.startswith("# Title\n\nprose before") and text.endswith("prose after\n")
    fresh = tmp_path / "fresh.md"
    fresh.write_text("only prose\n")
    docs.write_between_markers(fresh, f"{docs.BEGIN}\nx\n{docs.END}")
    assert fresh.read_text() == f"only prose\n\n{docs.BEGIN}\nx\n{docs.END}\n"


def test_plots_are_written(tmp_path: Path) -> None:
    res = synthetic_results()
    for path in (plots.batch_plot(res["latency"], [1, 32], tmp_path / "b.png", "t"),
                 plots.latency_throughput_plot(res["http"], tmp_path / "lt.png", "t", 2500.0)):  # fmt: skip
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_options_quick_defaults_checks_and_loopback_only() -> None:
    quick = cli.parse_args(["--quick"])
    assert quick.batch_sizes == [1, 4] and quick.http_seconds == 1.0 and quick.triton is False
    assert cli.parse_args(["--quick", "--seconds", "0.5"]).seconds == 0.5
    full = cli.parse_args([])
    assert (
        full.connections == [1, 8, 32] and full.rss_requests == 100_000 and full.batch_images == 32
    )
    assert cli.parse_args(["--workers", "2", "1", "2"]).workers == [2, 1]
    assert cli.parse_args(["--url", "http://127.0.0.1:8000"]).workers == [1]
    for bad in (["--paced-fraction", "1.5"], ["--service-env", "X=1"], ["--http-models", "static"],
                ["--workers", "0"], ["--service-env", "AWNET_WORKERS=2"],
                ["--url", "http://127.0.0.1:8000", "--workers", "2"]):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)
    for url in ("http://192.0.2.10:8000", "http://10.0.0.1", "ftp://127.0.0.1"):
        with pytest.raises(SystemExit, match="loopback|must look like"):
            check_loopback(url)
    assert check_loopback("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"


def test_device_cuda_is_refused_where_onnx_runtime_falls_back_to_cpu() -> None:
    from benchmarks.sessions import CUDA, DeviceUnavailable, make_session

    try:
        sess = make_session(MODEL_DIR / "model.onnx", device="cuda")
    except DeviceUnavailable as exc:
        assert "--device cuda" in str(exc)
    else:  # a machine with a usable GPU
        assert sess.get_providers()[0] == CUDA


# --- wrk and its Lua script against a tiny local server ---------------------------------------------------
@needs_wrk
def test_wrk_lua_posts_the_binary_body_with_its_header(tmp_path: Path) -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.command, self.headers.get(wrk.HEADER_LENGTH), body))
            self.send_response(200 if len(seen) % 5 else 500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body, head_len = wrk.write_body(np.zeros((1, 1, 2, 2), np.float32), tmp_path / "b.bin")
        res = wrk.run_wrk(f"http://127.0.0.1:{server.server_address[1]}/v2/models/m/infer", connections=1,
                          seconds=1, body=body, header_length=head_len)  # fmt: skip
    finally:
        server.shutdown()
    assert (
        len(seen) >= 5 and res["requests"] >= 5 and res["errors"]["status"] == res["requests"] // 5
    )
    method, header, sent = seen[0]
    assert method == "POST" and header == str(head_len) and sent == body.read_bytes()
    assert res["ok"] == res["requests"] - res["errors"]["status"] and res["p50_ms"] > 0


# --- the package end to end ---------------------------------------------------------------------------
@needs_wrk
def test_quick_run_end_to_end_writes_json_tables_plots_and_docs(tmp_path: Path) -> None:
    if not (MODEL_DIR / "manifest.json").is_file():
        pytest.skip("the shipped model is not there (make model)")
    doc = tmp_path / "benchmark.md"
    doc.write_text(f"# Benchmark\n\n{docs.BEGIN}\n{docs.END}\n\nprose\n")
    res = run_benchmarks("--quick", "--no-static", "--no-plain", "--no-triton", "--out", str(tmp_path / "out"),
                         "--workers", "1", "2",
                         "--write-docs", "--doc", str(doc), "--figures-dir", str(tmp_path / "fig"))  # fmt: skip
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert results["quick"] and results["settings"]["batch_sizes"] == [1, 4]
    assert {(c["model"], c["batch"]) for c in results["latency"]} == {("awnet", 1), ("awnet", 4)}
    scenarios = {r["scenario"] for r in results["http"]}
    assert {"trivial", "single", "batch", "paced"} <= scenarios
    assert {r["server"] for r in results["http"]} == {"service", "service-w2"}
    for r in results["http"]:
        assert r["ok"] > 0, r
        if r["scenario"] != "trivial":
            assert (
                r["model_calls"] >= 1
                and r["mean_batch"] >= 1
                and r["server_cpu_ms_per_request"] > 0
            )
    rss = results["rss_over_requests"]
    assert rss["requests"] > 0 and len(rss["samples"]) == 4 and rss["start_rss_bytes"] > 0
    assert set(results["rss_by_server"]) == {"service", "service-w2"}  # each worker count's tree
    assert results["rss_by_server"]["service-w2"]["start_rss_bytes"] > rss["start_rss_bytes"]
    # 4 HTTP targets and RSS per service configuration, 2 graph targets; no PyTriton: not measured
    assert len(results["targets"]) == 12 and results["targets"][0]["met"] is None
    for heading in (
        "Targets (issue 9)",
        "HTTP, wrk",
        "Service RSS over requests",
        "Size and memory",
    ):
        assert heading in res.stdout
    text = doc.read_text()
    assert (
        "python -m benchmarks --quick" in text and "HTTP, wrk" in text and text.endswith("prose\n")
    )
    for png in (tmp_path / "fig").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in (tmp_path / "fig").glob("*.png")} == {"benchmark-batch.png",
                                                                  "benchmark-latency-throughput.png"}  # fmt: skip


@pytest.mark.slow
def test_baselines_are_built_once_then_cached(tmp_path: Path) -> None:
    if not CHECKPOINT.is_file():
        pytest.skip("the shipped checkpoint is not there (make model)")
    args = [
        "--quick",
        "--no-http",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
    ]
    first = run_benchmarks(*args)
    assert "-m training export --static" in first.stderr
    results = json.loads((tmp_path / "out/results.json").read_text())
    models = results["models"]
    assert models["static"]["built"] == "built" and models["plain"]["built"] == "built"
    assert models["awnet"]["router_type_head"] and models["awnet"]["adversarial_bn"]
    assert not models["static"]["router_type_head"] and not models["static"]["adversarial_bn"]
    assert not models["plain"]["router_extractor"] and not models["plain"]["router_signal_heads"]
    assert results["size"]["ratio_awnet_static_params"] > 1
    assert (
        results["memory"]["awnet"]["peak_rss_bytes"]
        > results["memory"]["interpreter+onnxruntime"]["peak_rss_bytes"]
    )
    for row in results["comparison"]:
        assert row["ratio_awnet_static_p50"] > 0 and row["ratio_awnet_plain_throughput"] > 0
    run_benchmarks(*args, "--no-memory")
    models = json.loads((tmp_path / "out/results.json").read_text())["models"]
    assert models["static"]["built"] == "cached" and models["plain"]["built"] == "cached"


@pytest.mark.slow
@needs_wrk
def test_pytriton_side_by_side(tmp_path: Path) -> None:
    from benchmarks.servers import triton_python

    if triton_python(None) is None:
        pytest.skip("PyTriton not installed (.venv-triton, docs/benchmark.md)")
    run_benchmarks("--quick", "--triton", "--no-static", "--no-plain", "--no-memory", "--no-profile",
                   "--rss-requests", "0", "--paced-fraction", "0", "--out", str(tmp_path))  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    triton = [r for r in results["http"] if r["server"] == "triton"]
    assert {r["scenario"] for r in triton} == {"trivial", "single", "batch"}
    assert all(r["ok"] > 0 and r["errors_total"] == 0 for r in triton)
    assert all(r["mean_batch"] >= 1 for r in triton if r["scenario"] != "trivial")
    service = [r for r in results["http"] if r["server"] == "service" and r["scenario"] == "single"]
    assert all(r["vs_triton"] > 0 for r in service)
