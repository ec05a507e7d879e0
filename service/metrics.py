"""Prometheus metrics of the service (names and labels: docs/contracts.md).

One ``Metrics`` object per app, each with its own ``CollectorRegistry`` so that tests can
create many apps in one process. Every model-level series carries ``model`` and ``version``;
requests not tied to a known model use ``model=""``, ``version=""``.

With ``AWNET_WORKERS`` > 1 the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts
the workers: prometheus_client then keeps every value in a file per process, ``/metrics`` of
any worker reads them all (``MultiProcessCollector``), counters and histograms add up over the
workers, and each gauge declares how its workers' values combine (``multiprocess_mode``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from artifact_contract import Robustness

ROUTER_SCORE_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
FAST_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)
VERDICTS = ("clean", "adversarial")
REFUSED_REASONS = ("queue_full", "timeout", "too_large", "bad_input", "unauthorized")
MODEL_LABELS = ("model", "version")
#: The stages of a prediction (service/served_model.py), each a series of awnet_stage_duration_seconds.
STAGES = ("decode", "run", "derive", "observe", "postprocess")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# No `*_created` series: they double the series count and nothing here uses them.
disable_created_metrics()


# prometheus_client's multiprocess mode reads this variable when it is imported.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when this process is a worker."""
    return os.environ.get(MULTIPROC_ENV) or None


class ModelSeries:
    """The per-request series of one model version, looked up once (``labels()`` takes a
    lock and builds its key on every call: a few microseconds a request on the hot path)."""

    __slots__ = ("inflight", "router_score", "clean", "adversarial", "_bounds", "_buckets",
                 "_sum")

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self.inflight = metrics.inflight.labels(model, version)
        self.router_score = metrics.router_score.labels(model, version)
        self.clean = metrics.inputs.labels(model, version, "clean")
        self.adversarial = metrics.inputs.labels(model, version, "adversarial")
        # The histogram's own per-bucket values, for many observations in one step; None
        # when prometheus_client keeps them otherwise (then observe() one by one).
        hist: Any = self.router_score
        buckets, total = getattr(hist, "_buckets", None), getattr(hist, "_sum", None)
        bounds = getattr(hist, "_upper_bounds", None)
        ok = (buckets is not None and total is not None and bounds is not None
              and len(buckets) == len(bounds) and bounds[-1] == float("inf"))
        self._bounds = np.asarray(bounds, dtype=np.float64) if ok else None
        self._buckets = buckets if ok else None
        self._sum = total if ok else None

    def observe_router(self, p_adv: np.ndarray, adversarial: np.ndarray) -> None:
        """One router score per input, and the verdict counts."""
        n = int(p_adv.shape[0])
        if n == 1 or self._bounds is None:
            for p in p_adv.tolist():
                self.router_score.observe(p)
        elif n:
            # observe() puts a value in the first bucket whose upper bound is >= it.
            values = p_adv.astype(np.float64, copy=False)
            counts = np.bincount(np.searchsorted(self._bounds, values, side="left"),
                                 minlength=len(self._bounds))
            assert self._buckets is not None and self._sum is not None
            for i in np.flatnonzero(counts).tolist():
                self._buckets[i].inc(float(counts[i]))
            self._sum.inc(float(values.sum()))
        n_adv = int(np.count_nonzero(adversarial))
        if n_adv:
            self.adversarial.inc(n_adv)
        if n - n_adv:
            self.clean.inc(n - n_adv)


class Metrics:
    """All collectors of one app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._series: dict[tuple[str, str], ModelSeries] = {}
        self._request_series: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
        self._evaluated: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
        # What /metrics shows: this registry, or every worker's files in multiprocess mode
        # (prometheus_client's process_* and python_* series describe one process only, so
        # that mode leaves them out, as prometheus_client's documentation says).
        self.exposition = r
        path = multiprocess_dir()
        if path is not None:
            self.exposition = CollectorRegistry()
            MultiProcessCollector(self.exposition, path=path)
        else:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        self.router_score = Histogram(
            "awnet_router_score", "Router adversarial probability p_adv per input.",
            MODEL_LABELS, buckets=ROUTER_SCORE_BUCKETS, registry=r,
        )
        self.inputs = Counter(
            "awnet_inputs", "Inputs classified, by router verdict.",
            (*MODEL_LABELS, "verdict"), registry=r,
        )
        self.requests = Counter(
            "awnet_requests", "Requests answered, by endpoint and HTTP status.",
            (*MODEL_LABELS, "endpoint", "status"), registry=r,
        )
        self.request_duration = Histogram(
            "awnet_request_duration_seconds", "End-to-end request latency.",
            (*MODEL_LABELS, "endpoint"), buckets=REQUEST_BUCKETS, registry=r,
        )
        self.queue_duration = Histogram(
            "awnet_queue_duration_seconds", "Time a request waited in the batching queue.",
            MODEL_LABELS, buckets=FAST_BUCKETS, registry=r,
        )
        self.inference_duration = Histogram(
            "awnet_inference_duration_seconds", "Duration of one ONNX Runtime call.",
            MODEL_LABELS, buckets=FAST_BUCKETS, registry=r,
        )
        self.stage_duration = Histogram(
            "awnet_stage_duration_seconds", "Duration of one stage of a prediction: decode and "
            "postprocess per request, run, derive and observe per batch (service/served_model.py).",
            (*MODEL_LABELS, "stage"), buckets=FAST_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "awnet_batch_size", "Inputs per ONNX Runtime call.",
            MODEL_LABELS, buckets=BATCH_SIZE_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "awnet_queue_depth", "Inputs waiting in the batching queue.", MODEL_LABELS,
            multiprocess_mode="livesum", registry=r,
        )
        self.inflight = Gauge(
            "awnet_inflight_requests", "Inference requests being processed (queued or running).",
            MODEL_LABELS, multiprocess_mode="livesum", registry=r,
        )
        self.model_info = Gauge(
            "awnet_model_info", "Served model version (=1), with its execution provider.",
            (*MODEL_LABELS, "provider", "kind", "method"), multiprocess_mode="livemax", registry=r,
        )
        self.model_ready = Gauge(
            "awnet_model_ready", "1 when the model version is ready, 0 otherwise.",
            MODEL_LABELS, multiprocess_mode="livemin", registry=r,
        )
        self.refused_requests = Counter(
            "awnet_refused_requests", "Requests refused, by reason.",
            (*MODEL_LABELS, "reason"), registry=r,
        )
        # What the version's evaluation card measured (manifest evaluation.robustness): the
        # dashboard sets the flagged rate it observes against what the router was found to catch.
        self.evaluated_accuracy = Gauge(
            "awnet_model_evaluated_accuracy",
            "Test accuracy from the version's evaluation card at L-inf eps: clean, and the worst "
            "case per image over every attack (adaptive ones included).",
            (*MODEL_LABELS, "inputs", "eps", "sanity"), multiprocess_mode="livemax", registry=r,
        )
        self.evaluated_router = Gauge(
            "awnet_router_evaluated_ratio",
            "The router under the evaluation card's attacks: detected = flagged share of the test "
            "images some attack misclassifies, missed = share misclassified and not flagged, "
            "false_positive = share of clean test images flagged.",
            (*MODEL_LABELS, "share"), multiprocess_mode="livemax", registry=r,
        )

    # --- model lifecycle ---------------------------------------------------------------
    def model_registered(self, model: str, version: str) -> None:
        """Create the series of a model version at zero, so that rates exist from the start."""
        self.model_ready.labels(model, version).set(0)
        for verdict in VERDICTS:
            self.inputs.labels(model, version, verdict)
        for reason in REFUSED_REASONS:
            self.refused_requests.labels(model, version, reason)
        self.queue_depth.labels(model, version).set(0)
        self.inflight.labels(model, version).set(0)
        for hist in (self.router_score, self.queue_duration, self.inference_duration,
                     self.batch_size):
            hist.labels(model, version)
        for stage in STAGES:
            self.stage_duration.labels(model, version, stage)

    def model_loaded(self, model: str, version: str, provider: str, kind: str, method: str) -> None:
        self.model_info.labels(model, version, provider, kind, method).set(1)

    def model_evaluated(self, model: str, version: str, card: Robustness | None) -> None:
        """The evaluation card's figures of a loaded version (no series without a card). A
        version reloaded with another card (``attach-card``) drops the old card's series."""
        for gauge, labels in self._evaluated.pop((model, version), ()):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        if card is None:
            return
        eps, sanity = f"{float(card.eps):g}", "passed" if card.sanity_passed else "failed"
        values: list[tuple[Gauge, tuple[str, ...], float | None]] = [
            (self.evaluated_accuracy, (model, version, "clean", eps, sanity), card.clean_acc),
            (self.evaluated_accuracy, (model, version, "worst_case", eps, sanity), card.worst_case_acc),
            (self.evaluated_router, (model, version, "detected"), card.detected_share),
            (self.evaluated_router, (model, version, "missed"), card.missed),
            (self.evaluated_router, (model, version, "false_positive"), card.clean_fpr),
        ]
        self._evaluated[(model, version)] = [(g, labels) for g, labels, v in values if v is not None]
        for gauge, labels, value in values:
            if value is not None:
                gauge.labels(*labels).set(value)

    def set_ready(self, model: str, version: str, ready: bool) -> None:
        self.model_ready.labels(model, version).set(1 if ready else 0)

    def series(self, model: str, version: str) -> ModelSeries:
        """The cached per-request series of a model version."""
        found = self._series.get((model, version))
        if found is None:
            found = self._series[(model, version)] = ModelSeries(self, model, version)
        return found

    def forget(self, model: str, version: str) -> None:
        """Drop the cached children of a model version (call it after removing its series)."""
        self._series.pop((model, version), None)
        for key in [k for k in self._request_series if k[:2] == (model, version)]:
            del self._request_series[key]

    # --- requests ------------------------------------------------------------------------
    def observe_request(
        self, model: str, version: str, endpoint: str, status: int, seconds: float
    ) -> None:
        key = (model, version, endpoint, status)
        children = self._request_series.get(key)
        if children is None:
            if len(self._request_series) > 10_000:  # bounded whatever the labels are
                self._request_series.clear()
            children = self._request_series[key] = (
                self.requests.labels(model, version, endpoint, str(status)),
                self.request_duration.labels(model, version, endpoint),
            )
        children[0].inc()
        children[1].observe(seconds)

    def refused(self, model: str, version: str, reason: str) -> None:
        self.refused_requests.labels(model, version, reason).inc()

    def observe_router(
        self, model: str, version: str, p_adv: Iterable[float], adversarial: Iterable[bool]
    ) -> None:
        self.series(model, version).observe_router(
            np.asarray(list(p_adv) if not isinstance(p_adv, np.ndarray) else p_adv,
                       dtype=np.float64).reshape(-1),
            np.asarray(list(adversarial) if not isinstance(adversarial, np.ndarray)
                       else adversarial, dtype=bool).reshape(-1))

    # --- exposition ----------------------------------------------------------------------
    def render(self) -> bytes:
        return generate_latest(self.exposition)
