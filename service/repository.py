"""The model repository: discover ``<name>/<version>/`` folders, load, warm up, track state.

States (Triton's names): ``LOADING`` -> ``READY`` or ``UNAVAILABLE`` (with the reason), and
``UNLOADING`` during shutdown. A version that fails any check is never served; its reason is
logged and shown in its metadata.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artifact_contract import NAME_RE, VERSION_RE, ArtifactError
from service.artifact import DEFAULT_THRESHOLD, Artifact, load_artifact
from service.batching import DynamicBatcher
from service.errors import ModelNotFound, NotReady
from service.metrics import Metrics
from service.runtime import OnnxModel, RuntimeOptions
from service.settings import Settings

log = logging.getLogger("service.repository")

LOADING = "LOADING"
READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
UNLOADING = "UNLOADING"


@dataclass(eq=False)
class ModelVersion:
    name: str
    version: str
    path: Path
    state: str = LOADING
    reason: str = ""
    artifact: Artifact | None = None
    model: OnnxModel | None = None
    batcher: DynamicBatcher | None = None
    threshold: float = DEFAULT_THRESHOLD
    threshold_source: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def provider(self) -> str | None:
        return self.model.provider if self.model is not None else None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.root = Path(settings.model_repository)
        self.versions: dict[str, dict[str, ModelVersion]] = {}
        self.loading_done = asyncio.Event()

    # --- discovery ------------------------------------------------------------------------
    def scan(self) -> list[ModelVersion]:
        found: list[ModelVersion] = []
        if not self.root.is_dir():
            log.error("model repository %s is not a directory", self.root)
            return found
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if model_dir.name.startswith("."):
                continue
            if not NAME_RE.match(model_dir.name):
                log.warning("ignoring %s: model names must match [a-z0-9][a-z0-9._-]*", model_dir)
                continue
            for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                if not VERSION_RE.match(version_dir.name):
                    if not version_dir.name.startswith("."):
                        log.warning("ignoring %s: versions are positive integers", version_dir)
                    continue
                mv = ModelVersion(model_dir.name, version_dir.name, version_dir)
                self.versions.setdefault(mv.name, {})[mv.version] = mv
                self.metrics.model_registered(mv.name, mv.version)
                found.append(mv)
        if not found:
            log.warning("no model versions found in %s", self.root)
        return found

    def all_versions(self) -> list[ModelVersion]:
        return [mv for by_v in self.versions.values() for mv in by_v.values()]

    # --- loading ----------------------------------------------------------------------------
    def _load_blocking(self, mv: ModelVersion) -> None:
        s = self.settings
        artifact = load_artifact(mv.path)
        model = OnnxModel(
            artifact,
            RuntimeOptions(
                providers=tuple(s.providers),
                intra_op_threads=s.intra_op_threads,
                inter_op_threads=s.inter_op_threads,
                log_severity=s.ort_log_severity,
            ),
        )
        if s.warmup_runs:
            try:
                model.warmup(s.warmup_runs, (1, s.max_batch_size))
            except Exception as exc:  # noqa: BLE001
                raise ArtifactError(f"{artifact.onnx_path}: warm-up failed: {exc}") from exc
        mv.artifact = artifact
        mv.model = model
        if s.threshold is not None:
            mv.threshold, mv.threshold_source = s.threshold, "setting AWNET_THRESHOLD"
        elif artifact.manifest_threshold is not None:
            mv.threshold, mv.threshold_source = artifact.manifest_threshold, "manifest"
        else:
            mv.threshold, mv.threshold_source = DEFAULT_THRESHOLD, "default (manifest router is null)"

    def _make_batcher(self, mv: ModelVersion) -> DynamicBatcher:
        s = self.settings
        m = self.metrics
        labels = (mv.name, mv.version)
        model = mv.model
        assert model is not None
        batch_hist = m.batch_size.labels(*labels)
        infer_hist = m.inference_duration.labels(*labels)
        queue_hist = m.queue_duration.labels(*labels)
        depth = m.queue_depth.labels(*labels)

        def on_call(batch_size: int, seconds: float) -> None:
            batch_hist.observe(batch_size)
            infer_hist.observe(seconds)

        def runner(image: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
            return model.run(image, mix, max_batch_size=s.max_batch_size, on_call=on_call)

        batcher = DynamicBatcher(
            runner,
            name=mv.key,
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_queue_delay_s,
            max_queue_size=s.max_queue_size,
            retry_after_s=s.retry_after_s,
            on_queue_depth=depth.set,
            on_dequeue=queue_hist.observe,
        )
        batcher.start()
        return batcher

    async def load_all(self) -> None:
        """Load every discovered version, one after the other, off the event loop."""
        try:
            for mv in self.all_versions():
                if mv.state != LOADING:
                    continue
                try:
                    await asyncio.to_thread(self._load_blocking, mv)
                except ArtifactError as exc:
                    mv.state, mv.reason = UNAVAILABLE, str(exc)
                    log.error("model %s not served: %s", mv.key, exc,
                              extra={"model": mv.name, "version": mv.version})
                    continue
                except Exception as exc:  # noqa: BLE001 - any failure: not served, say why
                    mv.state, mv.reason = UNAVAILABLE, f"{type(exc).__name__}: {exc}"
                    log.exception("model %s not served", mv.key,
                                  extra={"model": mv.name, "version": mv.version})
                    continue
                if mv.state != LOADING:  # shutdown began meanwhile
                    continue
                mv.batcher = self._make_batcher(mv)
                assert mv.artifact is not None and mv.model is not None
                self.metrics.model_loaded(
                    mv.name, mv.version, mv.model.provider, mv.artifact.kind, mv.artifact.method
                )
                mv.state, mv.reason = READY, ""
                self.metrics.set_ready(mv.name, mv.version, True)
                log.info(
                    "model %s ready on %s (threshold %.4g from %s)",
                    mv.key, mv.model.provider, mv.threshold, mv.threshold_source,
                    extra={"model": mv.name, "version": mv.version,
                           "provider": mv.model.provider, "providers": mv.model.providers},
                )
        finally:
            self.loading_done.set()

    async def close(self) -> None:
        """Readiness off, then let every batcher finish its queue."""
        closing = []
        for mv in self.all_versions():
            if mv.state in (READY, LOADING):
                mv.state, mv.reason = UNLOADING, "server shutting down"
            self.metrics.set_ready(mv.name, mv.version, False)
            if mv.batcher is not None:
                closing.append(mv.batcher.close())
        await asyncio.gather(*closing)

    # --- lookup ---------------------------------------------------------------------------
    @property
    def all_loaded(self) -> bool:
        return self.loading_done.is_set()

    def any_ready(self) -> bool:
        return any(mv.ready for mv in self.all_versions())

    def names(self) -> list[str]:
        return sorted(self.versions)

    def find(self, name: str, version: str | None = None) -> ModelVersion:
        """The version asked for, or the highest ready version (else the highest one)."""
        by_version = self.versions.get(name)
        if not by_version:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFound(f"unknown model {name!r} (available: {known})")
        if version is not None:
            mv = by_version.get(version)
            if mv is None:
                known = ", ".join(sorted(by_version, key=int))
                raise ModelNotFound(f"model {name!r} has no version {version!r} (versions: {known})")
            return mv
        ordered = sorted(by_version.values(), key=lambda m: int(m.version), reverse=True)
        for mv in ordered:
            if mv.ready:
                return mv
        return ordered[0]

    def find_ready(self, name: str, version: str | None = None) -> ModelVersion:
        mv = self.find(name, version)
        if not mv.ready:
            why = {
                LOADING: "is loading",
                UNLOADING: "is shutting down",
            }.get(mv.state, f"is not available: {mv.reason}")
            raise NotReady(f"model {mv.name} version {mv.version} {why}")
        return mv
