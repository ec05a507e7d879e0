"""Prometheus metrics of the service (names and labels: docs/contracts.md).

One ``Metrics`` object per app, each with its own ``CollectorRegistry`` so that tests can
create many apps in one process. Every model-level series carries ``model`` and ``version``;
requests not tied to a known model use ``model=""``, ``version=""``.
"""

from __future__ import annotations

from collections.abc import Iterable

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
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

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

CONTENT_TYPE = CONTENT_TYPE_LATEST

# No `*_created` series: they double the series count and nothing here uses them.
disable_created_metrics()


class Metrics:
    """All collectors of one app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        # Standard process_* and python_* series, scoped to this registry.
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
        self.batch_size = Histogram(
            "awnet_batch_size", "Inputs per ONNX Runtime call.",
            MODEL_LABELS, buckets=BATCH_SIZE_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "awnet_queue_depth", "Inputs waiting in the batching queue.", MODEL_LABELS, registry=r,
        )
        self.inflight = Gauge(
            "awnet_inflight_requests", "Inference requests being processed (queued or running).",
            MODEL_LABELS, registry=r,
        )
        self.model_info = Gauge(
            "awnet_model_info", "Served model version (=1), with its execution provider.",
            (*MODEL_LABELS, "provider", "kind", "method"), registry=r,
        )
        self.model_ready = Gauge(
            "awnet_model_ready", "1 when the model version is ready, 0 otherwise.",
            MODEL_LABELS, registry=r,
        )
        self.refused_requests = Counter(
            "awnet_refused_requests", "Requests refused, by reason.",
            (*MODEL_LABELS, "reason"), registry=r,
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

    def model_loaded(self, model: str, version: str, provider: str, kind: str, method: str) -> None:
        self.model_info.labels(model, version, provider, kind, method).set(1)

    def set_ready(self, model: str, version: str, ready: bool) -> None:
        self.model_ready.labels(model, version).set(1 if ready else 0)

    # --- requests ------------------------------------------------------------------------
    def observe_request(
        self, model: str, version: str, endpoint: str, status: int, seconds: float
    ) -> None:
        self.requests.labels(model, version, endpoint, str(status)).inc()
        self.request_duration.labels(model, version, endpoint).observe(seconds)

    def refused(self, model: str, version: str, reason: str) -> None:
        self.refused_requests.labels(model, version, reason).inc()

    def observe_router(
        self, model: str, version: str, p_adv: Iterable[float], adversarial: Iterable[bool]
    ) -> None:
        hist = self.router_score.labels(model, version)
        for p in p_adv:
            hist.observe(float(p))
        flags = list(adversarial)
        n_adv = sum(1 for a in flags if a)
        if n_adv:
            self.inputs.labels(model, version, "adversarial").inc(n_adv)
        if len(flags) - n_adv:
            self.inputs.labels(model, version, "clean").inc(len(flags) - n_adv)

    # --- exposition ----------------------------------------------------------------------
    def render(self) -> bytes:
        return generate_latest(self.registry)
