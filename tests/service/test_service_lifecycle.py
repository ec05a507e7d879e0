"""Readiness, broken artifacts, API key, start-up settings, logs and graceful shutdown.

Broken artifacts, "no servable model" and the API key run through FastAPI's TestClient;
loading (timing), ``python -m service`` (settings, logs) and SIGTERM need a real server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.fake_model import (
    FAKE_MODEL,
    build_model,
    model_bytes,
    slow_layers_for,
    write_model_version,
)
from tests.support.images import smooth_image, to_png
from tests.support.paths import ROOT
from tests.support.processes import python_env
from tests.support.servers import app_client, start_process, start_server, wait_for
from tests.support.v2client import metric, post_tensors, scrape

GOOD_TENSOR = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                           "data": smooth_image().ravel().tolist()}]}


# --- not ready while loading --------------------------------------------------------------------------
@pytest.mark.slow
def test_not_ready_while_loading_then_ready(tmp_path, slow_layer_seconds):
    write_model_version(tmp_path, FAKE_MODEL, "1",
                        slow_layers=slow_layers_for(0.25, slow_layer_seconds))
    with start_server(tmp_path, wait="live", warmup_runs=6, max_batch_size=1,
                      intra_op_threads=1) as srv, srv.client() as c:
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and "models are loading" in r.json()["error"]
        r = c.post(f"/v2/models/{FAKE_MODEL}/infer", json=GOOD_TENSOR)
        assert r.status_code == 503
        assert r.json()["error"] == f"model {FAKE_MODEL} version 1 is loading"
        r = c.get(f"/v2/models/{FAKE_MODEL}/ready")
        assert r.status_code == 503
        assert c.get(f"/v2/models/{FAKE_MODEL}").json()["state"] == "LOADING"
        assert metric(scrape(srv.url), "awnet_model_ready", model=FAKE_MODEL) == 0
        wait_for(srv.url, "/v2/health/ready", timeout=30)
        assert c.post(f"/v2/models/{FAKE_MODEL}/infer", json=GOOD_TENSOR).status_code == 200
        assert metric(scrape(srv.url), "awnet_model_ready", model=FAKE_MODEL) == 1


# --- broken artifacts ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broken_repository(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("broken-repo")
    write_model_version(repo, "good", "1")
    good = model_bytes(build_model())
    # corrupted bytes, with a manifest whose sha256 matches them: fails in ONNX Runtime
    write_model_version(repo, "corrupt", "1", data=b"\x08\x07garbage" * 100)
    # truncated file, sha256 matching the truncated bytes
    write_model_version(repo, "truncated", "1", data=good[: len(good) // 3])
    # manifest sha256 says another file
    folder = write_model_version(repo, "sha-mismatch", "1")
    (folder / "model.onnx").write_bytes(good[:-10] + b"0123456789")
    # wrong input names
    write_model_version(repo, "wrong-inputs", "1", model=build_model(input_names=("x", "mix_override")))
    # manifest missing a required key
    folder = write_model_version(repo, "bad-manifest", "1")
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["class_names"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    # two versions: version 2 broken, version 1 fine
    write_model_version(repo, "two", "1")
    write_model_version(repo, "two", "2", data=b"nope")
    return repo


BROKEN = {
    "corrupt": "ONNX Runtime cannot load the model",
    "truncated": "ONNX Runtime cannot load the model",
    "sha-mismatch": "sha256 mismatch",
    "wrong-inputs": "graph inputs are ['x', 'mix_override']",
    "bad-manifest": "required key 'class_names' is missing",
}


def test_broken_artifacts_are_not_served_and_say_why(broken_repository):
    with app_client(broken_repository) as c:
        assert c.get("/v2/health/ready").status_code == 200  # the good ones are served
        index = {r["name"] + "/" + r["version"]: r for r in c.post("/v2/repository/index").json()}
        assert index["good/1"]["state"] == "READY"
        listed = {m["name"] + "/" + m["version"]: m for m in c.get("/v1/models").json()["models"]}
        for name, fragment in BROKEN.items():
            assert index[f"{name}/1"]["state"] == "UNAVAILABLE"
            assert fragment in index[f"{name}/1"]["reason"], index[f"{name}/1"]
            meta = c.get(f"/v2/models/{name}").json()
            assert meta["state"] == "UNAVAILABLE" and fragment in meta["reason"]
            assert fragment in listed[f"{name}/1"]["reason"]
            r = c.post(f"/v2/models/{name}/infer", json=GOOD_TENSOR)
            assert r.status_code == 503 and fragment in r.json()["error"], r.text
            r = c.get(f"/v2/models/{name}/ready")
            assert r.status_code == 503 and fragment in r.json()["error"]
        samples = scrape(c)
        assert metric(samples, "awnet_model_ready", model="corrupt", version="1") == 0
        assert metric(samples, "awnet_model_info", model="corrupt") == 0  # not served: no info
        # two/2 is broken: unversioned requests go to the latest *ready* version
        assert index["two/2"]["state"] == "UNAVAILABLE"
        r = c.post("/v2/models/two/infer", json=GOOD_TENSOR)
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        assert c.post("/v2/models/two/versions/2/infer", json=GOOD_TENSOR).status_code == 503
        assert c.post("/v2/models/good/infer", json=GOOD_TENSOR).status_code == 200


def test_no_servable_model_means_not_ready(tmp_path):
    write_model_version(tmp_path, "only", "1", data=b"broken")
    with app_client(tmp_path, wait="live") as c:
        deadline = time.monotonic() + 20
        while True:
            r = c.get("/v2/health/ready")
            if "loading" not in r.text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 503
        assert "no model version is ready: only/1:" in r.json()["error"]


# --- API key ----------------------------------------------------------------------------------------
def test_api_key(repository):
    """(tritonclient with the key: test_service_tritonclient.py)"""
    with app_client(repository, api_key="s3cret") as c:
        png = to_png(smooth_image())
        for path, kw in ((f"/v2/models/{FAKE_MODEL}/infer", {"json": GOOD_TENSOR}),
                         (f"/v1/models/{FAKE_MODEL}/classify",
                          {"content": png, "headers": {"Content-Type": "image/png"}})):
            r = c.post(path, **kw)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert "missing API key" in r.json()["error"]
            headers = {**kw.get("headers", {}), "Authorization": "Bearer wrong"}
            r = c.post(path, **{**kw, "headers": headers})
            assert r.status_code == 401 and r.json() == {"error": "invalid API key"}
            headers = {**kw.get("headers", {}), "Authorization": "Bearer s3cret"}
            assert c.post(path, **{**kw, "headers": headers}).status_code == 200
        # health, metadata and metrics stay open
        for path in ("/v2/health/ready", f"/v2/models/{FAKE_MODEL}", "/v1/models", "/metrics"):
            assert c.get(path).status_code == 200, path
        assert metric(scrape(c), "awnet_refused_requests_total", reason="unauthorized",
                      model=FAKE_MODEL) == 4


# --- python -m service: settings, logs --------------------------------------------------------------------
def _run_main(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=python_env(**env),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("env,fragment", [
    ({"AWNET_PORT": "http"}, "AWNET_PORT='http': Input should be a valid integer"),
    ({"AWNET_MAX_BATCH_SIZE": "0"}, "AWNET_MAX_BATCH_SIZE='0': Input should be greater than or equal to 1"),
    ({"AWNET_PROVIDERS": "gpu"}, "AWNET_PROVIDERS='gpu': Value error, unknown execution provider 'gpu'"),
    ({"AWNET_MODEL_REPOSITORY": "/nonexistent/repo"},
     "AWNET_MODEL_REPOSITORY='/nonexistent/repo': Value error, model repository '/nonexistent/repo' is not a directory"),
    ({"AWNET_THRESHOLD": "1.5"}, "AWNET_THRESHOLD='1.5': Input should be less than or equal to 1"),
    ({"AWNET_LOG_LEVEL": "LOUD"}, "AWNET_LOG_LEVEL='LOUD'"),
    ({"AWNET_MAX_REQUEST_BATCH": "5000"},
     "AWNET_MAX_REQUEST_BATCH (5000) must not exceed AWNET_MAX_QUEUE_SIZE (1024)"),
])
def test_invalid_settings_fail_fast_with_a_clear_message(tmp_path, env, fragment):
    env = {"AWNET_MODEL_REPOSITORY": str(tmp_path), **env}
    proc = _run_main(env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("awnet-serve: invalid service settings:")
    assert fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_python_m_service_json_logs_with_request_id(repository, tmp_path):
    log_path = tmp_path / "server.log"
    env = {"AWNET_FOO_TYPO": "1", "AWNET_PROVIDERS": "cuda,cpu"}
    with start_process(repository, env, log_path=log_path) as srv:
        r = httpx.post(f"{srv.url}/v2/models/{FAKE_MODEL}/infer", json=GOOD_TENSOR,
                       headers={"X-Request-ID": "trace-42"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
        assert "server" not in r.headers  # no uvicorn banner header
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    access = [x for x in lines if x.get("logger") == "service.access" and x.get("request_id") == "trace-42"]
    assert access and access[0]["status"] == 200 and access[0]["model"] == FAKE_MODEL
    assert access[0]["endpoint"] == "/v2/models/{name}/infer" and access[0]["duration_ms"] > 0
    messages = [x["message"] for x in lines]
    assert any("ignoring unknown setting AWNET_FOO_TYPO" in m for m in messages)
    assert sum("CUDA not available, running on CPU" in m for m in messages) <= 1
    assert any(m.startswith(f"model {FAKE_MODEL}/1 ready on ") for m in messages)
    assert all({"ts", "level", "logger", "message"} <= set(x) for x in lines)


# --- graceful shutdown -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_during_a_burst_loses_no_accepted_request(tmp_path, slow_layer_seconds):
    """In-flight and queued requests all complete with 200 after SIGTERM; exit status 0."""
    write_model_version(tmp_path, FAKE_MODEL, "1",
                        slow_layers=slow_layers_for(0.2, slow_layer_seconds))
    env = {"AWNET_MAX_BATCH_SIZE": "8", "AWNET_MAX_QUEUE_DELAY_MS": "1",
           "AWNET_INTRA_OP_THREADS": "1", "AWNET_SHUTDOWN_DELAY_S": "0.5",
           "AWNET_PROVIDERS": "cpu"}
    n_inflight = 10
    results: list[tuple[str, object]] = []
    lock = threading.Lock()
    stop_burst = threading.Event()
    threads: list[threading.Thread] = []
    image = smooth_image()[None]
    ready_during_drain: list[int | str] = []

    def one(tag: str, client: httpx.Client) -> None:
        try:
            out = post_tensors(client, FAKE_MODEL, image)
            res: object = 200 if out["p_adv"].shape == (1,) else "bad body"
        except httpx.HTTPStatusError as exc:
            res = exc.response.status_code
        except httpx.TransportError as exc:  # connection refused/closed: never accepted
            res = type(exc).__name__
        with lock:
            results.append((tag, res))

    def spawn(tag: str, client: httpx.Client) -> None:
        t = threading.Thread(target=one, args=(tag, client), daemon=True)
        t.start()
        with lock:
            threads.append(t)

    # one client for all threads (creating one costs ~30 ms of CPU)
    with start_process(tmp_path, env, log_path=tmp_path / "server.log") as srv, \
            srv.client(limits=httpx.Limits(max_connections=200), timeout=60) as client:
        proc = srv.proc
        assert proc is not None

        def burst() -> None:
            while not stop_burst.is_set():
                spawn("burst", client)
                time.sleep(0.05)

        burster = threading.Thread(target=burst, daemon=True)
        try:
            # 1. requests surely accepted before SIGTERM: wait until all are inside the server
            for _ in range(n_inflight):
                spawn("before", client)
            deadline = time.monotonic() + 30
            while True:
                samples = scrape(srv.url)
                arrived = (metric(samples, "awnet_inflight_requests", model=FAKE_MODEL)
                           + metric(samples, "awnet_requests_total", model=FAKE_MODEL))
                if arrived >= n_inflight:
                    break
                assert time.monotonic() < deadline, "requests did not all arrive"
                time.sleep(0.01)
            # 2. a burst that keeps going across the SIGTERM
            burster.start()
            time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            # readiness goes false at once, while requests are still served
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    code = httpx.get(srv.url + "/v2/health/ready", timeout=5).status_code
                except httpx.TransportError as exc:
                    ready_during_drain.append(type(exc).__name__)
                    break
                ready_during_drain.append(code)
                if code == 503:
                    break
                time.sleep(0.02)
            assert proc.wait(timeout=60) == 0
        finally:
            stop_burst.set()
            if burster.is_alive():
                burster.join(timeout=10)
        for t in list(threads):
            t.join(timeout=60)

    assert 503 in ready_during_drain, ready_during_drain
    before = [res for tag, res in results if tag == "before"]
    assert before == [200] * n_inflight, before
    statuses = [res for _, res in results]
    # every request that got an HTTP answer got 200: none accepted then dropped or failed
    assert all(res == 200 or isinstance(res, str) for res in statuses), statuses
    assert "bad body" not in statuses
    log = (tmp_path / "server.log").read_text()
    assert "shutdown complete: all queued requests answered" in log
