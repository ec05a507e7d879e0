"""Probes: run a version's probe set (``artifact_contract.probes``) through its session.

* At load (``run_probes``): a version takes traffic only when its outputs on its own probes
  match what the exporter recorded (parity within the export's tolerance, clean accuracy,
  clean and adversarial flagged rates within the manifest's tolerances).
* The canary (``Canary``, ``AWNET_CANARY_INTERVAL_S`` > 0): the same check again in the
  background for every ready version, one small batch at a time and only while the version
  has no request queued or in flight, so it never runs ahead of user traffic. Its figures are
  gauges (``awnet_probe_*``) the alert rule ``AWNetProbeDrift`` watches.

No torch and no training code: numpy and the loaded ONNX Runtime session only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from artifact_contract import OUTPUT_LOGITS, OUTPUT_P_ADV, ProbeReport, ProbeSet, check_outputs
from artifact_contract.probes import SETS

if TYPE_CHECKING:
    from service.repository import ModelRepository, ModelVersion

log = logging.getLogger("service.probes")

Run = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def run_probes(run: Run, probes: ProbeSet, chunk: int = 32,
               between: Callable[[], None] | None = None) -> ProbeReport:  # fmt: skip
    """``run(image, mix_override)`` on every probe input (router mode), then the checks."""
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for s in SETS:
        images = probes.arrays[s]["images"]
        logits, p_adv = [], []
        for start in range(0, len(images), chunk):
            if between is not None:
                between()
            x = images[start:start + chunk]
            out = run(x, np.full((len(x),), -1.0, dtype=np.float32))
            logits.append(np.asarray(out[OUTPUT_LOGITS], dtype=np.float32))
            p_adv.append(np.asarray(out[OUTPUT_P_ADV], dtype=np.float32))
        outputs[s] = {"logits": np.concatenate(logits), "p_adv": np.concatenate(p_adv)}
    return check_outputs(probes, outputs)


class ProbeMetrics:
    """The probe gauges, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("model", "version")
        # With several workers each runs its own probes: the gauges show the worst worker
        # (multiprocess_mode; see service/metrics.py).
        self.accuracy = Gauge("awnet_probe_accuracy", "Accuracy on the version's probe set "
                              "(last probe run).", (*labels, "set"),
                              multiprocess_mode="livemin", registry=registry)
        self.flagged = Gauge("awnet_probe_flagged_share", "Share of the probe set the router "
                             "flags (last probe run).", (*labels, "set"),
                             multiprocess_mode="livemostrecent", registry=registry)
        self.parity = Gauge("awnet_probe_parity_error", "Max |output - exporter's output| on "
                            "the probe set (last probe run).", (*labels, "output"),
                            multiprocess_mode="livemax", registry=registry)
        self.failed = Gauge("awnet_probe_failed_checks", "Probe checks outside their tolerance "
                            "(last probe run; 0 = passing).", labels,
                            multiprocess_mode="livemax", registry=registry)
        self.last_run = Gauge("awnet_probe_last_run_timestamp_seconds", "When the probes last "
                              "ran on this version.", labels,
                              multiprocess_mode="livemax", registry=registry)
        self.runs = Counter("awnet_probe_runs", "Probe runs, by result (load or canary).",
                            (*labels, "when", "result"), registry=registry)

    def register(self, model: str, version: str, measured: bool) -> None:
        """A served version's series exist from the start: NaN (not measured) until probes ran."""
        for when in ("load", "canary"):
            for result in ("passed", "failed"):
                self.runs.labels(model, version, when, result)
        if measured:
            return
        nan = float("nan")
        for s in SETS:
            self.accuracy.labels(model, version, s).set(nan)
            self.flagged.labels(model, version, s).set(nan)
        for out in ("logits", "p_adv"):
            self.parity.labels(model, version, out).set(nan)
        self.failed.labels(model, version).set(nan)
        self.last_run.labels(model, version).set(nan)

    def observe(self, model: str, version: str, report: ProbeReport, when: str) -> None:
        f = report.figures
        for s in SETS:
            if f"{s}_accuracy" in f:
                self.accuracy.labels(model, version, s).set(f[f"{s}_accuracy"])
            if f"{s}_flagged" in f:
                self.flagged.labels(model, version, s).set(f[f"{s}_flagged"])
        self.parity.labels(model, version, "logits").set(f.get("parity_logits", float("nan")))
        self.parity.labels(model, version, "p_adv").set(f.get("parity_p_adv", float("nan")))
        self.failed.labels(model, version).set(len(report.failures))
        self.last_run.labels(model, version).set(time.time())
        self.runs.labels(model, version, when, "passed" if report.passed else "failed").inc()

    def forget(self, model: str, version: str) -> None:
        """An unloaded version's gauges go away (its last figures would alert for ever)."""
        for gauge, extra in ((self.accuracy, SETS), (self.flagged, SETS),
                             (self.parity, ("logits", "p_adv"))):
            for e in extra:
                with contextlib.suppress(KeyError):
                    gauge.remove(model, version, e)
        for gauge in (self.failed, self.last_run):
            with contextlib.suppress(KeyError):
                gauge.remove(model, version)


class Canary:
    """Re-runs each ready version's probes every ``interval_s``, only while it is idle."""

    def __init__(self, repository: ModelRepository, interval_s: float, chunk: int = 8) -> None:
        self.repository = repository
        self.interval_s = interval_s
        self.chunk = chunk
        self.last: dict[int, float] = {}  # id(ModelVersion) -> monotonic time of the last run

    def _idle(self, mv: ModelVersion) -> bool:
        batcher = mv.batcher
        return (mv.serving and batcher is not None and batcher.queued_inputs == 0
                and self.repository.holders(mv) == 0)

    async def run_once(self, mv: ModelVersion) -> ProbeReport | None:
        """One canary pass over ``mv`` (None: it got busy or went away meanwhile)."""
        probes, model = mv.probes, mv.model
        if probes is None or model is None:
            return None
        outputs: dict[str, dict[str, list[np.ndarray]]] = {s: {"logits": [], "p_adv": []} for s in SETS}
        for s in SETS:
            images = probes.arrays[s]["images"]
            for start in range(0, len(images), self.chunk):
                waited = 0.0
                while not self._idle(mv):  # user requests first
                    if not mv.serving or waited > self.interval_s:
                        return None
                    await asyncio.sleep(0.05)
                    waited += 0.05
                x = images[start:start + self.chunk]
                mix = np.full((len(x),), -1.0, dtype=np.float32)
                try:
                    out = await asyncio.to_thread(model.run, x, mix)
                except Exception as exc:  # noqa: BLE001 - a failing session fails the canary
                    out = {OUTPUT_LOGITS: np.full((len(x), probes.arrays[s]["logits"].shape[1]), np.nan,
                                                  np.float32),
                           OUTPUT_P_ADV: np.full((len(x),), np.nan, np.float32)}  # fmt: skip
                    log.warning("canary: model %s failed on its probes: %s", mv.key, exc,
                                extra={"model": mv.name, "version": mv.version})
                outputs[s]["logits"].append(np.asarray(out[OUTPUT_LOGITS], np.float32))
                outputs[s]["p_adv"].append(np.asarray(out[OUTPUT_P_ADV], np.float32))
        merged = {s: {k: np.concatenate(v) for k, v in outputs[s].items()} for s in SETS}
        report = check_outputs(probes, merged)
        if not mv.serving:
            return None
        mv.probe_report = report
        self.repository.probe_metrics.observe(mv.name, mv.version, report, "canary")
        level = logging.INFO if report.passed else logging.ERROR
        log.log(level, "canary: model %s %s", mv.key, report.summary(),
                extra={"model": mv.name, "version": mv.version, "probe_figures": report.figures})
        return report

    async def forever(self) -> None:
        tick = min(1.0, self.interval_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for mv in list(self.repository.all_versions()):
                if not mv.serving or mv.probes is None:
                    continue
                if now - self.last.get(id(mv), mv.loaded_at or 0.0) < self.interval_s:
                    continue
                self.last[id(mv)] = now
                try:
                    await self.run_once(mv)
                except Exception:  # noqa: BLE001 - the canary must never stop the service
                    log.exception("canary: probe run on %s failed", mv.key)
