"""The hot path's settings under ``python -m service`` (docs/service.md "Serving speed"):
proxy headers only from trusted proxies, the access log that can be turned off, and the GIL
switch interval the server applies. Real process, real uvicorn, its own log lines."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests.support.fake_model import FAKE_MODEL, write_model_version
from tests.support.servers import start_process
from tests.support.v2client import metric, post_tensors, scrape

ENV = {"AWNET_PROVIDERS": "cpu", "AWNET_INTRA_OP_THREADS": "1"}
PROXY_HEADERS = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def _lines(server, logger: str) -> list[dict]:
    out = []
    for line in server.logs().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == logger:
            out.append(record)
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    write_model_version(root, FAKE_MODEL, "1")
    return root


@pytest.mark.parametrize("trusted", [None, "127.0.0.1", "10.0.0.0/8"])
def test_forwarded_headers_are_used_only_from_trusted_proxies(repo, trusted):
    env = dict(ENV) if trusted is None else {**ENV, "AWNET_FORWARDED_ALLOW_IPS": trusted}
    with start_process(repo, env) as server:
        assert httpx.get(server.url + "/v2/health/live", headers=PROXY_HEADERS).status_code == 200
        server.process.stop(timeout=30)  # flushes the log
        access = [r for r in _lines(server, "service.access") if r["path"] == "/v2/health/live"]
        started = [r for r in _lines(server, "service") if "HTTP server" in r["message"]]
    assert access, server.logs()[-2000:]
    # trusted: the peer (127.0.0.1) is the named proxy, so the forwarded client counts
    assert access[-1]["client"] == ("203.0.113.7" if trusted == "127.0.0.1" else "127.0.0.1")
    assert started and started[0]["proxy_headers"] is (trusted is not None)


def test_access_log_off_keeps_the_metrics_and_switch_interval_is_applied(repo):
    env = {**ENV, "AWNET_ACCESS_LOG": "false", "AWNET_GIL_SWITCH_INTERVAL_MS": "0.25"}
    with start_process(repo, env) as server:
        post_tensors(server.url, FAKE_MODEL, np.zeros((2, 1, 28, 28), np.float32))
        samples = scrape(server.url)
        server.process.stop(timeout=30)
        access = _lines(server, "service.access")
        started = [r for r in _lines(server, "service") if "HTTP server" in r["message"]]
    assert access == []
    assert metric(samples, "awnet_requests_total", status="200", model=FAKE_MODEL) == 1
    assert started and started[0]["gil_switch_interval_ms"] == pytest.approx(0.25)


def test_default_access_log_line_and_switch_interval(repo):
    with start_process(repo, ENV) as server:
        post_tensors(server.url, FAKE_MODEL, np.zeros((1, 1, 28, 28), np.float32))
        server.process.stop(timeout=30)
        access = [r for r in _lines(server, "service.access") if r.get("model") == FAKE_MODEL]
        started = [r for r in _lines(server, "service") if "HTTP server" in r["message"]]
    assert len(access) == 1 and access[0]["status"] == 200 and access[0]["request_id"]
    assert started[0]["gil_switch_interval_ms"] == pytest.approx(0.5)
