"""Probes: run a version's probe set (``artifact_contract.probes``) through its session.

At load (``run_probes``) a version takes traffic only when its outputs on its own probes
match what the exporter recorded (parity within the export's tolerance, clean accuracy,
clean and adversarial flagged rates within the manifest's tolerances). The canary
(service/canary.py) runs the same chunks again in the background. Their figures are gauges
(``awnet_probe_*``, ``ProbeMetrics``) the alert rule ``AWNetProbeDrift`` watches.

No torch and no training code: numpy and the loaded ONNX Runtime session only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from artifact_contract import OUTPUT_LOGITS, OUTPUT_P_ADV, ProbeReport, ProbeSet, check_outputs
from artifact_contract.probes import SETS

Run = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def probe_chunks(probes: ProbeSet, chunk: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(set, images, mix_override) of every probe input in chunks, in router mode."""
    for s in SETS:
        images = probes.arrays[s]["images"]
        for start in range(0, len(images), chunk):
            x = images[start:start + chunk]
            yield s, x, np.full((len(x),), -1.0, dtype=np.float32)


class ProbeOutputs:
    """The outputs of a probe run, gathered chunk by chunk, then checked."""

    def __init__(self, probes: ProbeSet) -> None:
        self.probes = probes
        self.parts: dict[str, dict[str, list[np.ndarray]]] = {s: {"logits": [], "p_adv": []} for s in SETS}

    def add(self, probe_set: str, out: dict[str, np.ndarray]) -> None:
        self.parts[probe_set]["logits"].append(np.asarray(out[OUTPUT_LOGITS], dtype=np.float32))
        self.parts[probe_set]["p_adv"].append(np.asarray(out[OUTPUT_P_ADV], dtype=np.float32))

    def failed(self, probe_set: str, n: int) -> None:
        """A chunk the session could not run: NaN outputs, which fail the checks."""
        k = self.probes.arrays[probe_set]["logits"].shape[1]
        self.add(probe_set, {OUTPUT_LOGITS: np.full((n, k), np.nan, np.float32),
                             OUTPUT_P_ADV: np.full((n,), np.nan, np.float32)})  # fmt: skip

    def report(self) -> ProbeReport:
        merged = {s: {k: np.concatenate(v) for k, v in self.parts[s].items()} for s in SETS}
        return check_outputs(self.probes, merged)


def run_probes(run: Run, probes: ProbeSet, chunk: int = 32) -> ProbeReport:
    """``run(image, mix_override)`` on every probe input (router mode), then the checks."""
    outputs = ProbeOutputs(probes)
    for s, x, mix in probe_chunks(probes, chunk):
        outputs.add(s, run(x, mix))
    return outputs.report()


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
