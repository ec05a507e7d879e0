"""Faults the service survives, and its security defaults.

* ONNX Runtime raising during a batch: every request of that batch gets a 500 carrying its
  own request id (header and body), no ORT message or path leaks, the next batch succeeds.
* The model file corrupted or replaced under a running service: the loaded session keeps
  answering exactly as before (no hot reload); at the next start the sha256 check refuses the
  file, the version is not served and says why.
* The process killed (SIGKILL) and started again: ready again within a measured time.
* Security: API keys compared in constant time, CORS off unless configured.

Elsewhere: queue full -> 503 with Retry-After (test_service_batching.py::
test_overload_returns_503_with_retry_after_quickly); SIGTERM under load loses no accepted
request (test_service_lifecycle.py::test_sigterm_during_a_burst_loses_no_accepted_request);
hostile inputs, header/body limits, request ids (test_reliability_inputs.py).
"""

from __future__ import annotations

import inspect
import json
import shutil
import signal
import threading
import time

import httpx
import numpy as np

from tests.support.fake_model import FAKE_MODEL, build_model, model_bytes, write_model_version
from tests.support.images import noisy_image, smooth_image
from tests.support.paths import SHIPPED_MODEL, SHIPPED_VERSION
from tests.support.servers import app_client, start_process, start_server
from tests.support.v2client import metric, post_tensors, scrape

V2 = f"/v2/models/{FAKE_MODEL}/infer"
GOOD = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                    "data": smooth_image().ravel().tolist()}]}
ORT_MESSAGE = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned "
               "while running MatMul node. /onnxruntime_src/onnxruntime/core/providers/cpu/math/"
               "matmul_helper.h:61 Status onnxruntime::MatMulComputeHelper::Compute")


class FailingSession:
    """Stands in for the loaded ``onnxruntime.InferenceSession``: raises ORT's own error type
    while ``fail`` is set, otherwise runs the real session; records each call's batch size."""

    def __init__(self, real) -> None:
        self.real = real
        self.fail = threading.Event()
        self.calls: list[int] = []

    def run(self, names, feeds):
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail

        self.calls.append(int(feeds["image"].shape[0]))
        if self.fail.is_set():
            raise Fail(ORT_MESSAGE)
        return self.real.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self.real, name)


def _concurrent(client: httpx.Client, ids: list[str]) -> dict[str, httpx.Response]:
    out: dict[str, httpx.Response] = {}

    def one(rid: str) -> None:
        out[rid] = client.post(V2, json=GOOD, headers={"X-Request-ID": rid})

    threads = [threading.Thread(target=one, args=(rid,)) for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_ort_failure_fails_its_batch_with_request_ids_and_the_next_batch_succeeds(repository,
                                                                                  caplog):
    with start_server(repository, max_batch_size=16, max_queue_delay_ms=300,
                      warmup_runs=0) as server:
        mv = server.app.state.awnet.repository.versions[FAKE_MODEL]["1"]
        session = FailingSession(mv.model.session)
        mv.model.session = session
        session.fail.set()
        with server.client(limits=httpx.Limits(max_connections=20)) as client:
            ids = [f"fault-{i}" for i in range(6)]
            failed = _concurrent(client, ids)
            session.fail.clear()
            ok_ids = [f"after-{i}" for i in range(4)]
            succeeded = _concurrent(client, ok_ids)
            samples = scrape(server.url)
    assert session.calls[0] == len(ids), session.calls  # one batch held all six
    for rid, r in failed.items():
        assert r.status_code == 500, r.text
        assert r.headers["x-request-id"] == rid
        body = r.json()
        assert set(body) == {"error"} and f"request id {rid}" in body["error"], body
        assert "onnxruntime_src" not in body["error"] and ".h:" not in body["error"], body
        assert "Fail" in body["error"]  # the type of the failure, not its internals
    assert all(r.status_code == 200 for r in succeeded.values()), succeeded
    assert all(r.headers["x-request-id"] == rid for rid, r in succeeded.items())
    assert metric(samples, "awnet_requests_total", status="500") == len(ids)
    assert metric(samples, "awnet_requests_total", status="200", model=FAKE_MODEL) == len(ok_ids)
    logged = [r for r in caplog.records if "inference failed" in r.getMessage()]
    assert logged and ORT_MESSAGE in str(logged[0].exc_info[1])  # the details: in the log


# --- the model file under a running service ------------------------------------------------------
def test_model_file_corrupted_or_replaced_under_a_running_service(tmp_path):
    repo = tmp_path / "repo"
    folder = write_model_version(repo, FAKE_MODEL, "1")
    onnx_file = folder / "model.onnx"
    images = np.stack([smooth_image(), noisy_image()])
    env = {"AWNET_PROVIDERS": "cpu", "AWNET_INTRA_OP_THREADS": "1"}
    with start_process(repo, env) as server:
        before = post_tensors(server.url, FAKE_MODEL, images)
        onnx_file.write_bytes(b"\x08\x07garbage" * 100)  # corrupted in place
        during = post_tensors(server.url, FAKE_MODEL, images)
        tmp = folder / "model.onnx.new"  # replaced atomically by another (valid) model
        tmp.write_bytes(model_bytes(build_model(seed=7)))
        tmp.replace(onnx_file)
        replaced = post_tensors(server.url, FAKE_MODEL, images)
        ready = httpx.get(server.url + "/v2/health/ready").status_code
    for name in before:  # the loaded session is what serves: no hot reload, no half state
        np.testing.assert_array_equal(during[name], before[name])
        np.testing.assert_array_equal(replaced[name], before[name])
    assert ready == 200
    # Next start: the manifest's sha256 no longer matches: not served, and it says why.
    with start_process(repo, env, wait="live") as server:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            index = httpx.post(server.url + "/v2/repository/index").json()
            if index and index[0]["state"] != "LOADING":
                break
            time.sleep(0.1)
        assert index[0]["state"] == "UNAVAILABLE" and "sha256 mismatch" in index[0]["reason"]
        r = httpx.get(server.url + "/v2/health/ready")
        assert r.status_code == 503
        r = httpx.post(server.url + V2, json=GOOD)
        assert r.status_code == 503 and "sha256 mismatch" in r.json()["error"]
        assert str(repo) not in r.text and str(tmp_path) not in index[0]["reason"]


# --- kill and restart -----------------------------------------------------------------------------
def test_killed_process_is_ready_again_after_restart(shipped_repository, tmp_path):
    env = {"AWNET_PROVIDERS": "cpu", "AWNET_INTRA_OP_THREADS": "1"}
    timings = []
    with start_process(shipped_repository, env) as first:
        assert httpx.get(first.url + "/v2/health/ready").status_code == 200
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert first.proc.returncode == -signal.SIGKILL
    for _ in range(2):
        t0 = time.monotonic()
        with start_process(shipped_repository, env) as again:  # returns once ready
            timings.append(time.monotonic() - t0)
            image = smooth_image()[None]
            assert post_tensors(again.url, "awnet-mnist", image)["probabilities"].shape == (1, 10)
    print(f"\nrestart to ready: {', '.join(f'{t:.2f} s' for t in timings)}")
    assert max(timings) < 30.0, timings


# --- security ---------------------------------------------------------------------------------------
def test_api_key_is_compared_in_constant_time(repository):
    from service import deps

    source = inspect.getsource(deps.require_api_key)
    assert "hmac.compare_digest" in source and "==" not in source.split("compare_digest")[1][:80]
    with app_client(repository, api_key="s3cret-key") as c:
        for token in ("s3cret-ke", "s3cret-key-", "S3CRET-KEY", "x" * 10_000, "s3cret-kéy"):
            r = c.post(V2, json=GOOD, headers={"Authorization": f"Bearer {token}".encode()})
            assert r.status_code == 401, token
        r = c.post(V2, json=GOOD, headers={"Authorization": "Bearer s3cret-key"})
        assert r.status_code == 200
        spec = c.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert spec["paths"]["/v2/models/{name}/infer"]["post"]["security"] == [{"bearer": []}]


def test_cors_is_off_unless_configured(repository):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with app_client(repository) as c:
        r = c.options(V2, headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = c.post(V2, json=GOOD, headers={"Origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    with app_client(repository, cors_origins=["https://app.example"]) as c:
        r = c.options(V2, headers={**preflight, "Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.options(V2, headers=preflight)
        assert "access-control-allow-origin" not in r.headers


def test_repository_mounted_read_only_in_compose():
    from tests.support.paths import ROOT

    text = (ROOT / "docker-compose.yml").read_text()
    assert "read_only: true" in text


def test_shipped_model_folder_copy_is_what_is_served(shipped_repository, tmp_path):
    """The repository is only read: serving it leaves every file byte-identical."""
    repo = tmp_path / "repo"
    shutil.copytree(shipped_repository, repo)
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    with app_client(repo) as c:
        assert c.post("/v2/models/awnet-mnist/infer", json=GOOD).status_code == 200
    after = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert after == before
    assert json.loads((repo / SHIPPED_MODEL / SHIPPED_VERSION / "manifest.json").read_text())["name"]
