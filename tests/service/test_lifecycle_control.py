"""Model control modes and the version policy: explicit load/unload through tritonclient
unchanged, 501 outside explicit mode, the OpenAPI document, policies from the setting and
from a manifest, and memory over 20 load/unload cycles."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.support.fake_model import FAKE_MODEL, build_model, write_model_version
from tests.support.lifecycle import constant_router_model, write_probed_version
from tests.support.servers import app_client, start_process, start_server
from tests.support.v2client import metric, scrape

ONE = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                   "data": [0.2] * 784}]}
CONTROL = ("/v2/repository/models/{name}/load", "/v2/repository/models/{name}/unload")


def _index(c) -> dict[str, dict]:
    return {f"{r['name']}/{r['version']}": r for r in c.post("/v2/repository/index").json()}


def _answering(c, name=FAKE_MODEL) -> str:
    r = c.post(f"/v2/models/{name}/infer", json=ONE)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def test_control_endpoints_answer_501_and_stay_out_of_openapi_unless_explicit(repository):
    for mode in ("none", "poll"):
        with app_client(repository, model_control_mode=mode) as c:
            r = c.post(f"/v2/repository/models/{FAKE_MODEL}/load")
            assert r.status_code == 501 and f"AWNET_MODEL_CONTROL_MODE={mode}" in r.json()["error"]
            assert not set(CONTROL) & set(c.get("/openapi.json").json()["paths"])
    with app_client(repository, model_control_mode="explicit") as c:
        paths = c.get("/openapi.json").json()["paths"]
        assert set(CONTROL) <= set(paths)
        assert "400" in paths[CONTROL[0]]["post"]["responses"]


def test_explicit_mode_with_tritonclient(tmp_path):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    write_probed_version(tmp_path, FAKE_MODEL, "1")
    with start_server(tmp_path, model_control_mode="explicit") as srv, srv.client() as c:
        tc = triton.InferenceServerClient(srv.target)
        assert tc.is_model_ready(FAKE_MODEL)
        tc.unload_model(FAKE_MODEL)
        assert not tc.is_model_ready(FAKE_MODEL)
        row = tc.get_model_repository_index()[0]
        assert row["state"] == "UNAVAILABLE" and row["reason"] == "unloaded (explicit unload)"
        assert c.post(f"/v2/models/{FAKE_MODEL}/infer", json=ONE).status_code == 503
        assert metric(scrape(srv.url), "awnet_model_ready", model=FAKE_MODEL, version="1") == 0
        tc.load_model(FAKE_MODEL)
        assert tc.is_model_ready(FAKE_MODEL) and _answering(c) == "1"
        # a new version: copied in, then loaded; unversioned requests move to it
        write_probed_version(tmp_path, FAKE_MODEL, "2")
        assert _answering(c) == "1"  # nothing happens before the load (explicit mode)
        tc.load_model(FAKE_MODEL)
        assert _answering(c) == "2" and tc.is_model_ready(FAKE_MODEL, "1")
        # a broken version 3: load fails with the reason, 1 and 2 keep serving
        write_probed_version(tmp_path, FAKE_MODEL, "3", model=constant_router_model(-10.0),
                             reference=build_model())
        with pytest.raises(InferenceServerException) as err:
            tc.load_model(FAKE_MODEL)
        assert "version 3 is UNAVAILABLE: probes failed" in str(err.value)
        assert _answering(c) == "2"
        with pytest.raises(InferenceServerException, match="no such model folder"):
            tc.load_model("nope")
        with pytest.raises(InferenceServerException, match="unknown model"):
            tc.unload_model("nope")


def test_explicit_control_needs_the_api_key(repository):
    with app_client(repository, model_control_mode="explicit", api_key="k") as c:
        assert c.post(f"/v2/repository/models/{FAKE_MODEL}/unload").status_code == 401
        r = c.post(f"/v2/repository/models/{FAKE_MODEL}/unload", headers={"Authorization": "Bearer k"})
        assert r.status_code == 200


def test_version_policy_setting_and_manifest_override(tmp_path):
    for v in ("1", "2", "3"):
        write_model_version(tmp_path, "a", v)
        write_model_version(tmp_path, "b", v, manifest_overrides=(
            {"version_policy": {"specific": {"versions": [1, 2]}}} if v == "3" else None))
    with app_client(tmp_path, version_policy="latest:2") as c:
        idx = _index(c)
        assert [idx[f"a/{v}"]["state"] for v in "123"] == ["UNAVAILABLE", "READY", "READY"]
        assert idx["a/1"]["reason"] == "not selected by the version policy latest:2"
        # b's newest manifest says specific 1, 2 (Triton's shape): it wins for b
        assert [idx[f"b/{v}"]["state"] for v in "123"] == ["READY", "READY", "UNAVAILABLE"]
        assert _answering(c, "a") == "3" and _answering(c, "b") == "2"
        assert c.post("/v2/models/a/versions/1/infer", json=ONE).status_code == 503


def test_latest_policy_keeps_the_old_version_while_the_new_one_fails(tmp_path):
    write_probed_version(tmp_path, FAKE_MODEL, "1")
    with app_client(tmp_path, model_control_mode="explicit", version_policy="latest:1") as c:
        write_model_version(tmp_path, FAKE_MODEL, "2", data=b"\x08\x07 not onnx")
        r = c.post(f"/v2/repository/models/{FAKE_MODEL}/load")
        assert r.status_code == 400 and "version 2 is UNAVAILABLE" in r.json()["error"]
        idx = _index(c)
        assert idx[f"{FAKE_MODEL}/1"]["state"] == "READY"
        assert idx[f"{FAKE_MODEL}/1"]["reason"].startswith("kept serving: no version the policy latest:1")
        assert _answering(c) == "1"
        write_probed_version(tmp_path, FAKE_MODEL, "2")  # fixed: now 2 serves, 1 unloads
        assert c.post(f"/v2/repository/models/{FAKE_MODEL}/load").status_code == 200
        assert _answering(c) == "2"
        deadline = time.monotonic() + 10
        while _index(c)[f"{FAKE_MODEL}/1"]["state"] != "UNAVAILABLE" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _index(c)[f"{FAKE_MODEL}/1"]["reason"] == "unloaded (not selected by the version policy latest:1)"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.slow
def test_memory_returns_after_20_load_unload_cycles(shipped_repository, record_property):
    """The shipped model in its own process: RSS after 20 unload+load cycles vs after the
    first load (figures: docs/lifecycle.md)."""
    env = {"AWNET_MODEL_CONTROL_MODE": "explicit", "AWNET_PROVIDERS": "cpu",
           "AWNET_INTRA_OP_THREADS": "1", "AWNET_LOG_LEVEL": "WARNING"}
    with start_process(shipped_repository, env) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        name = c.post("/v2/repository/index").json()[0]["name"]
        for _ in range(2):  # allocator and ORT arenas settle
            assert c.post(f"/v2/repository/models/{name}/unload").status_code == 200
            assert c.post(f"/v2/repository/models/{name}/load").status_code == 200
        base = _rss_mb(srv.proc.pid)
        times = []
        for _ in range(20):
            assert c.post(f"/v2/repository/models/{name}/unload").status_code == 200
            t0 = time.perf_counter()
            assert c.post(f"/v2/repository/models/{name}/load").status_code == 200
            times.append(time.perf_counter() - t0)
        after = _rss_mb(srv.proc.pid)
        record_property("rss_mb", (round(base, 1), round(after, 1)))
        print(f"\nRSS after warm-up {base:.1f} MB, after 20 cycles {after:.1f} MB "
              f"(+{after - base:.1f} MB); load median {sorted(times)[10] * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms; pid {srv.proc.pid}, cpus {os.cpu_count()}")
        assert after - base < 25.0, (base, after)
