"""Probe sets: the manifest contract, the load-time check, and the canary.

A version takes traffic only after its outputs on its own probes match what its exporter
recorded; a version without probes (an older export, like the shipped one) loads with a
warning; the canary re-runs the probes of ready versions and its gauges move when a running
version's outputs change (the change injected into the session, as in test_reliability_faults).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time

import numpy as np
import pytest

from artifact_contract import ArtifactError, Manifest, VersionPolicy
from tests.support.fake_model import FAKE_MODEL, build_model, write_model_version
from tests.support.lifecycle import constant_router_model, write_probed_version
from tests.support.servers import app_client
from tests.support.v2client import metric, scrape

ONE = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                   "data": [0.2] * 784}]}


def _index(c) -> dict[str, dict]:
    return {f"{r['name']}/{r['version']}": r for r in c.post("/v2/repository/index").json()}


# --- the contract ---------------------------------------------------------------------------------
def test_manifest_optional_blocks_round_trip_and_are_checked(tmp_path):
    folder = write_probed_version(tmp_path, "m", "1",
                                  manifest_overrides={"version_policy": {"latest": {"num_versions": 2}}})
    m = Manifest.load(folder)
    assert m.probes["file"] == "probes.npz" and m.probes["clean"]["count"] == 64
    assert VersionPolicy.from_dict(m.version_policy) == VersionPolicy("latest", num_versions=2)
    assert Manifest.from_dict(m.to_dict()) == m
    raw = m.to_dict()
    for block, value, fragment in (
        ("probes", {**raw["probes"], "sha256": "x"}, "probes.sha256"),
        ("probes", {**raw["probes"], "clean": {"count": 0}}, "probes.clean.count"),
        ("version_policy", {"newest": {}}, "version_policy must be"),
        ("version_policy", {"specific": {"versions": []}}, "version_policy must be"),
    ):
        with pytest.raises(ArtifactError, match=fragment):
            Manifest.from_dict({**raw, block: value})
    # older manifests (no probes, no policy) are unchanged: nothing new is written
    old = write_model_version(tmp_path, "old", "1")
    assert "probes" not in json.loads((old / "manifest.json").read_text())


@pytest.mark.parametrize("text, versions, chosen", [
    ("all", [1, 2, 3], {"1", "2", "3"}), ("latest:1", [1, 2, 3], {"3"}),
    ("latest 2", [3, 1, 2], {"2", "3"}), ("specific:1,3", [1, 2], {"1"}),
])
def test_version_policy_selects(text, versions, chosen):
    assert VersionPolicy.parse(text).select(versions) == chosen


def test_bad_version_policy_setting_stops_the_start(tmp_path):
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="latest:N or specific"):
        Settings(model_repository=tmp_path, version_policy="newest")


# --- load-time check ----------------------------------------------------------------------------
def test_probes_gate_readiness_with_figures_in_the_reason(tmp_path, caplog):
    good = build_model()
    write_probed_version(tmp_path, "ok", "1", model=good)
    write_probed_version(tmp_path, "router", "1", model=constant_router_model(-10.0), reference=good)
    write_probed_version(tmp_path, "weights", "1", model=build_model(seed=7), reference=good)
    folder = write_probed_version(tmp_path, "tampered", "1")
    (folder / "probes.npz").write_bytes((folder / "probes.npz").read_bytes()[:-8] + b"12345678")
    write_model_version(tmp_path, "legacy", "1")  # no probes: loads with a warning
    with caplog.at_level(logging.WARNING, logger="service.repository"), app_client(tmp_path) as c:
        idx = _index(c)
        assert idx["ok/1"]["state"] == "READY"
        assert c.get("/v2/models/ok").json()["probes"] == "passed"
        r = idx["router/1"]
        assert r["state"] == "UNAVAILABLE" and r["reason"].startswith("probes failed")
        assert "router score parity" in r["reason"] and "adversarial flagged rate 0.000, recorded 1.000" in r["reason"]
        assert "logits parity" in idx["weights/1"]["reason"]
        assert "sha256 mismatch" in idx["tampered/1"]["reason"]
        assert idx["legacy/1"]["state"] == "READY"
        assert c.get("/v2/models/legacy").json()["probes"] == "none"
        assert any("legacy/1 has no probe set" in rec.getMessage() for rec in caplog.records)
        assert c.post("/v2/models/router/infer", json=ONE).status_code == 503
        s = scrape(c)
        assert metric(s, "awnet_probe_failed_checks", model="ok", version="1") == 0
        assert metric(s, "awnet_probe_accuracy", model="ok", version="1", set="clean") == 1.0
        assert metric(s, "awnet_probe_runs_total", model="router", when="load", result="failed") == 1


def test_probes_can_be_switched_off(tmp_path):
    write_probed_version(tmp_path, "router", "1", model=constant_router_model(), reference=build_model())
    with app_client(tmp_path, probes_on_load=False) as c:
        assert _index(c)["router/1"]["state"] == "READY"
        assert c.get("/v2/models/router").json()["probes"] == "off"


def test_shipped_model_passes_its_probes_and_loads_without_them(shipped_repository, tmp_path, caplog):
    """The shipped export carries a probe set and passes it; an older export (no probes) still loads, warned."""
    with caplog.at_level(logging.WARNING, logger="service.repository"), \
            app_client(shipped_repository) as c:
        rows = c.post("/v2/repository/index").json()
        assert rows and all(r["state"] == "READY" for r in rows)
    assert not any("has no probe set" in rec.getMessage() for rec in caplog.records)
    old = tmp_path / "repo"
    shutil.copytree(shipped_repository, old)
    for manifest_path in old.glob("*/*/manifest.json"):
        manifest = json.loads(manifest_path.read_text())
        (manifest_path.parent / manifest.pop("probes")["file"]).unlink()
        manifest_path.write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.repository"), app_client(old) as c:
        rows = c.post("/v2/repository/index").json()
        assert rows and all(r["state"] == "READY" for r in rows)
    assert any("has no probe set" in rec.getMessage() for rec in caplog.records)


# --- the canary ---------------------------------------------------------------------------------------
class ShiftedSession:
    """A running session whose logits move by ``shift`` (a provider or library change)."""

    def __init__(self, real, shift: float) -> None:
        self.real, self.shift = real, shift

    def run(self, names, feeds, *a, **kw):
        out = self.real.run(names, feeds, *a, **kw)
        return [out[0] + np.float32(self.shift), *out[1:]]

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_canary_gauges_move_when_outputs_change(tmp_path):
    write_probed_version(tmp_path, FAKE_MODEL, "1")
    with app_client(tmp_path, canary_interval_s=0.2) as c:
        def gauges():
            s = scrape(c)
            return (metric(s, "awnet_probe_failed_checks", model=FAKE_MODEL, version="1"),
                    metric(s, "awnet_probe_parity_error", model=FAKE_MODEL, version="1", output="logits"),
                    metric(s, "awnet_probe_runs_total", model=FAKE_MODEL, version="1",
                           when="canary", result="passed"))

        deadline = time.monotonic() + 20
        while gauges()[2] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        failed, parity, passed = gauges()
        assert passed >= 1 and failed == 0 and parity < 1e-3
        mv = c.app.state.awnet.repository.find(FAKE_MODEL, "1")
        mv.model.session = ShiftedSession(mv.model.session, 0.5)
        while gauges()[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        failed, parity, _ = gauges()
        assert failed >= 1 and parity == pytest.approx(0.5, abs=1e-3)
        # the canary reports; it does not take the version out (requests still answered)
        assert c.post(f"/v2/models/{FAKE_MODEL}/infer", json=ONE).status_code == 200


def test_canary_never_runs_ahead_of_requests(tmp_path):
    """While a request holds the version, the canary waits."""
    write_probed_version(tmp_path, FAKE_MODEL, "1")
    with app_client(tmp_path) as c:
        from service.canary import Canary

        repo = c.app.state.awnet.repository
        mv = repo.find(FAKE_MODEL, "1")
        canary = Canary(repo.all_versions, repo.probe_metrics, interval_s=0.3)
        with mv.hold(c.app.state.awnet.metrics):  # a request in flight
            assert c.portal.call(canary.run_once, mv) is None  # gave up: never got idle
        report = c.portal.call(canary.run_once, mv)
        assert report is not None and report.passed


def test_probe_file_named_by_manifest_must_exist(tmp_path):
    folder = write_probed_version(tmp_path, "m", "1")
    (folder / "probes.npz").unlink()
    with app_client(tmp_path, wait="live") as c:
        deadline = time.monotonic() + 20
        while _index(c)["m/1"]["state"] == "LOADING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "probes.npz: file not found" in _index(c)["m/1"]["reason"]


def test_probe_block_edits_must_match_the_file(tmp_path):
    folder = write_probed_version(tmp_path, "m", "1")
    m = Manifest.load(folder)
    bad = {**m.probes, "clean": {**m.probes["clean"], "count": 32}}
    dataclasses.replace(m, probes=bad).write(folder)
    with app_client(tmp_path, wait="live") as c:
        deadline = time.monotonic() + 20
        while _index(c)["m/1"]["state"] == "LOADING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "clean_images has shape [64, 1, 28, 28], expected [32, 1, 28, 28]" in _index(c)["m/1"]["reason"]
