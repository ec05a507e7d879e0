"""One served model version: its files, ONNX Runtime session, batcher, threshold and probes.

KServe's ``Model``: the repository is a map of these, the data plane asks one to
``predict``. A prediction runs named stages, each timed into
``awnet_stage_duration_seconds`` (docs/contracts.md): ``decode`` (the inputs checked against
the model's input configuration, by the data plane), then per batch, in the batcher's
executor thread, ``run`` (the ONNX Runtime call, also ``awnet_inference_duration_seconds``),
``derive`` (probabilities and verdicts, service/postprocess.py) and ``observe`` (router
metrics), and ``postprocess`` (the caller's rows, checked finite). Requests in flight are
counted here (``hold``), not read back from Prometheus.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artifact_contract import (
    OUTPUT_LOGITS,
    OUTPUT_MIX,
    OUTPUT_P_ADV,
    ArtifactError,
    ProbeReport,
    ProbeSet,
    load_probes,
)
from service.artifact import DEFAULT_THRESHOLD, Artifact, load_artifact
from service.batching import DynamicBatcher
from service.errors import BadInput, InferenceFailed, NotReady, TooLarge
from service.images import check_pixels
from service.lifecycle import State, Status, Why
from service.metrics import STAGES, Metrics
from service.postprocess import (
    NONFINITE,
    OUTPUT_ADVERSARIAL,
    OUTPUT_PROBABILITIES,
    derive,
    finite_rows,
)
from service.probes import ProbeMetrics, run_probes
from service.runtime import OnnxModel, RuntimeOptions
from service.settings import Settings

log = logging.getLogger("service.repository")

Fingerprint = tuple[tuple[str, int, int], ...]
FLOAT32_MAX = float(np.finfo(np.float32).max)  # a mix below -FLOAT32_MAX is refused

_AUTO_MIX: dict[int, np.ndarray] = {}


def auto_mix(n: int) -> np.ndarray:
    """``[n]`` of -1 (the router decides), read-only and shared for small n."""
    mix = _AUTO_MIX.get(n)
    if mix is None:
        mix = np.full((n,), -1.0, dtype=np.float32)
        if n <= 256:
            mix.setflags(write=False)
            _AUTO_MIX[n] = mix
    return mix


@dataclass
class Prediction:
    """Results for a batch of N inputs."""

    logits: np.ndarray  # [N, K]
    probabilities: np.ndarray  # [N, K]
    p_adv: np.ndarray  # [N]
    mix: np.ndarray  # [N]
    adversarial: np.ndarray  # [N] bool
    threshold: float


class ServedModel:
    """A version folder and, once loaded, everything that serves it."""

    def __init__(self, name: str, version: str, path: Path, state: State = State.LOADING,
                 why: Why = Why.NONE, reason: str = "") -> None:  # fmt: skip
        self.name, self.version, self.path = name, version, path
        self.status = Status(state, why, reason)
        self.fingerprint: Fingerprint = ()
        self.draining = False  # UNLOADING, still answering the requests that already hold it
        self.artifact: Artifact | None = None
        self.model: OnnxModel | None = None
        self.batcher: DynamicBatcher | None = None
        self.threshold = DEFAULT_THRESHOLD
        self.threshold_source = "default"
        self.probes: ProbeSet | None = None
        self.probe_status = "none"  # passed | failed | none (no probes) | off (AWNET_PROBES_ON_LOAD)
        self.probe_report: ProbeReport | None = None
        self.loaded_at: float | None = None  # time.monotonic() when it became READY
        self.load_seconds: float | None = None
        self._holders = 0
        self._stage_hist: dict[str, object] = {}

    # --- what it is ---------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def state(self) -> State:
        return self.status.state

    @property
    def reason(self) -> str:
        return self.status.reason

    @property
    def serving(self) -> bool:
        """Takes new requests."""
        return self.state == State.READY

    @property
    def ready(self) -> bool:
        """Answers a request that holds it: READY, or UNLOADING while it drains."""
        return self.state == State.READY or (self.state == State.UNLOADING and self.draining)

    @property
    def provider(self) -> str | None:
        return self.model.provider if self.model is not None else None

    # --- requests that hold it ----------------------------------------------------------------
    @property
    def holders(self) -> int:
        """Requests that have looked this version up and are not answered yet."""
        return self._holders

    def hold(self, metrics: Metrics) -> _Hold:
        """``with mv.hold(metrics):`` counts a request from lookup to answer (the drain waits
        for these; ``awnet_inflight_requests`` shows them)."""
        return _Hold(self, metrics.series(self.name, self.version).inflight)

    # --- load, start, release -----------------------------------------------------------------
    def load(self, settings: Settings, probe_metrics: ProbeMetrics) -> None:
        """Artifact, session, warm-up, probes, threshold (blocking: run it in a thread).
        Any failed check raises ``ArtifactError``: the version is not served."""
        s = settings
        artifact = load_artifact(self.path)
        model = OnnxModel(artifact, RuntimeOptions.from_settings(s))
        if s.warmup_runs:
            try:
                model.warmup(s.warmup_runs, (1, s.max_batch_size))
            except Exception as exc:  # noqa: BLE001
                raise ArtifactError(f"{artifact.onnx_path}: warm-up failed: {exc}") from exc
        block = artifact.manifest.get("probes")
        if block is None:
            self.probe_status = "none"
            log.warning("model %s has no probe set (an older export): it loads without its "
                        "probes being checked", self.key,
                        extra={"model": self.name, "version": self.version})  # fmt: skip
        else:
            probes = load_probes(self.path, block, shape=artifact.input_shape,
                                 num_classes=artifact.num_classes)  # fmt: skip
            if s.probes_on_load:
                def run(x: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
                    return model.run(x, m, max_batch_size=s.max_batch_size)

                try:
                    report = run_probes(run, probes, chunk=s.max_batch_size)
                except Exception as exc:  # noqa: BLE001
                    raise ArtifactError(f"probes failed: the model cannot run them: {exc}") from exc
                self.probe_report = report
                probe_metrics.observe(self.name, self.version, report, "load")
                if not report.passed:
                    self.probe_status = "failed"
                    raise ArtifactError(report.summary())
                self.probe_status = "passed"
            else:
                self.probe_status = "off"
            self.probes = probes
        self.artifact, self.model = artifact, model
        if s.threshold is not None:
            self.threshold, self.threshold_source = s.threshold, "setting AWNET_THRESHOLD"
        elif artifact.manifest_threshold is not None:
            self.threshold, self.threshold_source = artifact.manifest_threshold, "manifest"
        else:
            self.threshold, self.threshold_source = DEFAULT_THRESHOLD, "default (manifest router is null)"

    def start(self, settings: Settings, metrics: Metrics, alone: Callable[[], bool]) -> None:
        """The batcher, whose runner is where a batch is run, derived and observed."""
        s, m = settings, metrics
        labels = (self.name, self.version)
        model = self.model
        assert model is not None
        batch_hist = m.batch_size.labels(*labels)
        infer_hist = m.inference_duration.labels(*labels)
        stage = {name: m.stage_duration.labels(*labels, name) for name in STAGES}
        self._stage_hist = stage
        run_stage, derive_stage, observe_stage = stage["run"], stage["derive"], stage["observe"]

        def on_call(batch_size: int, seconds: float) -> None:
            batch_hist.observe(batch_size)
            infer_hist.observe(seconds)

        series = m.series(self.name, self.version)
        threshold = self.threshold

        def runner(image: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
            # Once per batch, here in the executor thread, not per request on the event loop.
            t0 = time.perf_counter()
            raw = model.run(image, mix, max_batch_size=s.max_batch_size, on_call=on_call)
            t1 = time.perf_counter()
            out = derive(raw, threshold)
            t2 = time.perf_counter()
            ok = finite_rows(out)
            p_adv, adversarial = out[OUTPUT_P_ADV], out[OUTPUT_ADVERSARIAL]
            series.observe_router(p_adv if ok is None else p_adv[ok],
                                  adversarial if ok is None else adversarial[ok])  # fmt: skip
            run_stage.observe(t1 - t0)
            derive_stage.observe(t2 - t1)
            observe_stage.observe(time.perf_counter() - t2)
            return out

        self.batcher = DynamicBatcher(
            runner,
            name=self.key,
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_queue_delay_s,
            max_queue_size=s.max_queue_size,
            retry_after_s=s.retry_after_s,
            on_queue_depth=m.queue_depth.labels(*labels).set,
            on_dequeue=m.queue_duration.labels(*labels).observe,
            inline_max_s=s.inline_max_s,
            alone=alone,
        )
        self.batcher.start()

    def release(self, metrics: Metrics) -> None:
        """Drop the session and batcher (the memory goes back once nothing refers to them)."""
        if self.model is not None and self.artifact is not None:
            with contextlib.suppress(KeyError):
                metrics.model_info.remove(self.name, self.version, self.model.provider,
                                          self.artifact.kind, self.artifact.method)  # fmt: skip
        self.model = None
        self.batcher = None
        self.probes = None

    # --- a prediction ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage that runs outside the batcher (``decode``, ``postprocess``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            hist = self._stage_hist.get(name)
            if hist is not None:
                hist.observe(time.perf_counter() - t0)  # type: ignore[attr-defined]

    def check_image(self, image: np.ndarray, what: str, max_request_batch: int) -> np.ndarray:
        """``image`` as the model takes it ([N, C, H, W] float32 inside its range), or BadInput."""
        art = self.artifact
        assert art is not None
        c, h, w = art.input_shape
        if image.ndim != 4 or tuple(image.shape[1:]) != (c, h, w):
            raise BadInput(f"{what} has shape {list(image.shape)}, the model takes [N, {c}, {h}, {w}]")
        n = int(image.shape[0])
        if n == 0:
            raise BadInput(f"{what} has an empty batch (N = 0)")
        if n > max_request_batch:
            raise TooLarge(
                f"{what} has a batch of {n} inputs, above the limit of "
                f"{max_request_batch} per request (AWNET_MAX_REQUEST_BATCH)"
            )
        if image.dtype == np.float32 or image.dtype == np.float64:
            # The common case in two reductions: finite and inside the range (NaN and inf
            # show in the min or max). Anything else: check_pixels, for its exact answer.
            lo, hi = art.input_range
            vmin, vmax = float(image.min()), float(image.max())
            if lo <= vmin and vmax <= hi:  # False for NaN
                return image.astype(np.float32, copy=False)
        return check_pixels(image, art.input_range, what)

    @staticmethod
    def check_mix(mix: np.ndarray, n: int, what: str) -> np.ndarray:
        if mix.ndim != 1 or mix.shape[0] != n:
            raise BadInput(f"{what} has shape {list(mix.shape)}, expected [{n}] (one per input)")
        if not np.all(np.isfinite(mix)):
            raise BadInput(f"{what} contains NaN or infinite values")
        if np.any(mix < -FLOAT32_MAX):
            raise BadInput(f"{what} has values below the float32 range")
        if np.any(mix > 1.0):
            raise BadInput(
                f"{what} has values above 1 (max {float(mix.max()):g}); use a value in [0, 1] "
                "to force a mix (0 = clean branch, 1 = robust branch) or a negative value "
                "for the router"
            )
        return mix.astype(np.float32, copy=False)

    async def predict(self, image: np.ndarray, mix: np.ndarray | None, timeout_s: float) -> Prediction:
        """Checked inputs through the batcher (run, derive, observe), then ``postprocess``."""
        if self.batcher is None or not self.ready:
            raise NotReady(f"model {self.name} version {self.version} is not ready")
        if mix is None:
            mix = auto_mix(int(image.shape[0]))
        out = await self.batcher.submit(image, mix, timeout_s)
        with self.stage("postprocess"):
            bad = out.get(NONFINITE)
            if bad is not None and bad.any():
                raise InferenceFailed(f"model {self.name} version {self.version} produced non-finite outputs")
            return Prediction(
                logits=out[OUTPUT_LOGITS],
                probabilities=out[OUTPUT_PROBABILITIES],
                p_adv=out[OUTPUT_P_ADV],
                mix=out[OUTPUT_MIX],
                adversarial=out[OUTPUT_ADVERSARIAL],
                threshold=self.threshold,
            )


class _Hold:
    """The context of ``ServedModel.hold`` (a class, not a generator: it is on the hot path)."""

    __slots__ = ("mv", "gauge")

    def __init__(self, mv: ServedModel, gauge: Any) -> None:
        self.mv, self.gauge = mv, gauge

    def __enter__(self) -> None:
        self.mv._holders += 1
        self.gauge.inc()

    def __exit__(self, *exc: object) -> None:
        self.mv._holders -= 1
        self.gauge.dec()
