"""Swaps without loss, with the real service (uvicorn on a socket) in ``poll`` mode.

While a bounded load runs (a few clients sending unversioned requests without pause):
publishing version 2 moves the answering version from 1 to 2 within two poll intervals and
loses no request; retracting it moves back, again without loss. Broken versions (truncated
graph, wrong checksum, router replaced by a constant) each stay UNAVAILABLE with a reason
naming the failed check while version 1 keeps answering every request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.fake_model import FAKE_MODEL, build_model, model_bytes, write_model_version
from tests.support.lifecycle import constant_router_model, publish, retract, write_probed_version
from tests.support.servers import start_server
from tests.support.v2client import metric, scrape

ONE = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                   "data": [0.2] * 784}]}
POLL_S = 1.0


class Load:
    """``clients`` threads sending unversioned requests back to back; records every answer
    as (time, status, answering version)."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url, self.clients = url, clients
        self.stop = threading.Event()
        self.answers: list[tuple[float, int, str]] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"/v2/models/{FAKE_MODEL}/infer", json=ONE)
                    v = r.json().get("model_version", "") if r.status_code == 200 else ""
                    self.answers.append((time.monotonic(), r.status_code, v))
                    if r.status_code != 200:
                        self.errors.append(r.text)
                except httpx.HTTPError as exc:  # a lost request
                    self.answers.append((time.monotonic(), 0, ""))
                    self.errors.append(repr(exc))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def first_after(self, t0: float, version: str) -> float | None:
        """Seconds from t0 to the first answer by ``version`` after which no other version answered."""
        after = [(t, v) for t, s, v in self.answers if t >= t0 and s == 200]
        for i, (t, v) in enumerate(after):
            if v == version and all(w == version for _, w in after[i:]):
                return t - t0
        return None


def _wait_answering(load: Load, t0: float, version: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        after = [v for t, s, v in load.answers if t >= t0 and s == 200]
        if len(after) > 5 and all(v == version for v in after[-5:]):
            break
    time.sleep(0.3)  # a few more answers: nothing goes back
    took = load.first_after(t0, version)
    assert took is not None, Counter(v for t, s, v in load.answers if t >= t0)
    return took


@pytest.mark.parametrize("policy", ["all", "latest:1"])
def test_publish_and_retract_a_version_under_load(tmp_path, policy, record_property):
    repo, staging = tmp_path / "repo", tmp_path / "staging"
    write_probed_version(repo, FAKE_MODEL, "1")
    v2 = write_probed_version(staging, FAKE_MODEL, "2", model=build_model(seed=3))
    with start_server(repo, model_control_mode="poll", repository_poll_s=POLL_S,
                      version_policy=policy, intra_op_threads=1) as srv, Load(srv.url) as load:
        time.sleep(0.5)
        t0 = time.monotonic()
        publish(v2, repo / FAKE_MODEL / "2")
        up = _wait_answering(load, t0, "2", 4 * POLL_S + 5)
        t1 = time.monotonic()
        retract(repo / FAKE_MODEL / "2")
        down = _wait_answering(load, t1, "1", 4 * POLL_S + 5)
        idx = {r["version"]: r for r in httpx.post(srv.url + "/v2/repository/index").json()}
        samples = scrape(srv.url)
    statuses = Counter(s for _, s, _ in load.answers)
    record_property("swap", {"up_s": round(up, 3), "down_s": round(down, 3), **statuses})
    print(f"\n[{policy}] copy -> answering 2: {up:.2f} s; removal -> answering 1: {down:.2f} s; "
          f"answers {dict(statuses)}")
    assert statuses[200] == len(load.answers) > 100, (statuses, load.errors[:3])  # 0 lost
    assert up <= 2 * POLL_S + 1.0 and down <= 2 * POLL_S + 1.0
    assert set(idx) == {"1"} and idx["1"]["state"] == "READY"  # 2 unloaded and out of the index
    assert metric(samples, "awnet_model_ready", model=FAKE_MODEL, version="2") == 0
    assert metric(samples, "awnet_inputs_total", model=FAKE_MODEL, version="2") > 0  # it answered


def _broken_versions(staging: Path) -> dict[str, str]:
    """version -> the fragment its reason must contain."""
    good = build_model()
    data = model_bytes(good)
    write_model_version(staging, FAKE_MODEL, "2", data=data[: len(data) // 2])  # truncated graph
    folder = write_probed_version(staging, FAKE_MODEL, "3")
    (folder / "model.onnx").write_bytes(data[:-4] + b"\x00\x00\x00\x00")  # wrong checksum
    write_probed_version(staging, FAKE_MODEL, "4", model=constant_router_model(-10.0), reference=good)
    return {"2": "ONNX Runtime cannot load the model", "3": "sha256 mismatch",
            "4": "probes failed: logits parity"}


def test_broken_versions_stay_unavailable_while_version_1_serves(tmp_path):
    repo, staging = tmp_path / "repo", tmp_path / "staging"
    write_probed_version(repo, FAKE_MODEL, "1")
    expected = _broken_versions(staging)
    with start_server(repo, model_control_mode="poll", repository_poll_s=POLL_S / 2,
                      intra_op_threads=1) as srv, Load(srv.url) as load:
        for v in expected:
            publish(staging / FAKE_MODEL / v, repo / FAKE_MODEL / v)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            idx = {r["version"]: r for r in httpx.post(srv.url + "/v2/repository/index").json()}
            if all(idx.get(v, {}).get("state") == "UNAVAILABLE" for v in expected):
                break
            time.sleep(0.1)
        time.sleep(3 * POLL_S / 2)  # more polls: the failed ones are not retried or served
        idx = {r["version"]: r for r in httpx.post(srv.url + "/v2/repository/index").json()}
        loads = metric(scrape(srv.url), "awnet_probe_runs_total", model=FAKE_MODEL, version="4",
                       when="load", result="failed")
    for v, fragment in expected.items():
        assert idx[v]["state"] == "UNAVAILABLE" and fragment in idx[v]["reason"], idx[v]
    assert "router score parity" in idx["4"]["reason"]
    assert idx["1"]["state"] == "READY"
    assert loads == 1  # unchanged files are not reloaded on every poll
    statuses = Counter(s for _, s, _ in load.answers)
    versions = Counter(v for _, _, v in load.answers)
    assert statuses[200] == len(load.answers) > 50 and set(versions) == {"1"}, (statuses, versions)
