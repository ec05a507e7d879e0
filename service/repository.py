"""The model repository: discover ``<name>/<version>/`` folders, load, probe, swap, unload.

States (Triton's names): ``LOADING`` -> ``READY`` or ``UNAVAILABLE`` (with the reason), and
``UNLOADING`` while a version drains. A version that fails any check (manifest, checksum,
graph, warm-up, probes) is never served; its reason is logged and shown in the index.

Model control (``AWNET_MODEL_CONTROL_MODE``, docs/lifecycle.md):

* ``none``: the repository is read once at start;
* ``poll``: it is re-read every ``AWNET_REPOSITORY_POLL_S``; new or changed versions load,
  removed ones unload;
* ``explicit``: ``load_model`` / ``unload_model`` (``POST /v2/repository/models/{name}/load``
  and ``/unload``).

Whatever the mode, one model is changed by ``reconcile`` (one at a time per model): the
versions the version policy selects are loaded and probed *beside* the ones serving; only
when that is done do unversioned requests move to the new highest ready version, and the
versions no longer wanted start to unload: they take no new request, the requests already
holding them finish there (queued ones included), then the session is released. A version
the policy no longer selects keeps serving while none of the selected ones is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artifact_contract import (
    MANIFEST_FILE,
    NAME_RE,
    OUTPUT_P_ADV,
    VERSION_RE,
    ArtifactError,
    ProbeReport,
    ProbeSet,
    VersionPolicy,
    load_probes,
    read_json,
)
from service.artifact import DEFAULT_THRESHOLD, Artifact, load_artifact
from service.batching import DynamicBatcher
from service.errors import ModelNotFound, NotReady, scrub
from service.metrics import Metrics
from service.postprocess import OUTPUT_ADVERSARIAL, derive, finite_rows
from service.probes import ProbeMetrics, run_probes
from service.runtime import OnnxModel, RuntimeOptions
from service.settings import Settings

log = logging.getLogger("service.repository")

LOADING = "LOADING"
READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
UNLOADING = "UNLOADING"

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(folder: Path) -> Fingerprint:
    """(name, size, mtime) of the files of a version folder: changes when any file does."""
    out = []
    with contextlib.suppress(OSError):
        for p in sorted(folder.iterdir()):
            with contextlib.suppress(OSError):
                st = p.stat()
                out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


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
    fingerprint: Fingerprint = ()
    draining: bool = False  # UNLOADING, still answering the requests that already hold it
    probes: ProbeSet | None = None
    probe_status: str = "none"  # passed | failed | none (no probes) | off (AWNET_PROBES_ON_LOAD)
    probe_report: ProbeReport | None = None
    loaded_at: float | None = None  # time.monotonic() when it became READY
    load_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def serving(self) -> bool:
        """Takes new requests."""
        return self.state == READY

    @property
    def ready(self) -> bool:
        """Answers a request that holds it: READY, or UNLOADING while it drains."""
        return self.state == READY or (self.state == UNLOADING and self.draining)

    @property
    def provider(self) -> str | None:
        return self.model.provider if self.model is not None else None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


class LoadFailed(Exception):
    """``load_model``: the model or some version the policy selects did not become READY."""


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.probe_metrics = ProbeMetrics(metrics.registry)
        self.root = Path(settings.model_repository)
        self.versions: dict[str, dict[str, ModelVersion]] = {}
        self.loading_done = asyncio.Event()
        self.listeners: list[Callable[[], None]] = []  # called after the served set changes
        # True while no other request and no other connection is open in this process: the
        # server sets it (service/server.py, from uvicorn's state); a batcher then runs a
        # lone one-image request on the event loop (AWNET_INLINE_MAX_MS, service/batching.py).
        self.alone: Callable[[], bool] = lambda: False
        self.closing = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []

    # --- discovery ------------------------------------------------------------------------
    def _model_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            log.error("model repository %s is not a directory", self.root)
            return []
        out = []
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if model_dir.name.startswith("."):
                continue
            if not NAME_RE.match(model_dir.name):
                log.warning("ignoring %s: model names must match [a-z0-9][a-z0-9._-]*", model_dir)
                continue
            out.append(model_dir)
        return out

    def _version_dirs(self, name: str) -> dict[str, Path]:
        model_dir = self.root / name
        found: dict[str, Path] = {}
        if not model_dir.is_dir():
            return found
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if not VERSION_RE.match(version_dir.name):
                if not version_dir.name.startswith("."):
                    log.warning("ignoring %s: versions are positive integers", version_dir)
                continue
            found[version_dir.name] = version_dir
        return found

    def policy_for(self, name: str, folders: dict[str, Path]) -> tuple[VersionPolicy, str]:
        """The setting's policy, unless the highest version's manifest sets ``version_policy``."""
        for v in sorted(folders, key=int, reverse=True):
            try:
                raw = read_json(folders[v] / MANIFEST_FILE)
                if raw.get("version_policy") is not None:
                    where = f"{name}/{v}/{MANIFEST_FILE}"
                    return VersionPolicy.from_dict(raw["version_policy"], where), f"manifest of version {v}"
            except ArtifactError as exc:
                log.warning("version policy of %s: %s", name, scrub(str(exc)))
            break  # only the highest version's manifest counts
        return self.settings.policy, "setting AWNET_VERSION_POLICY"

    def scan(self) -> list[ModelVersion]:
        """Register (LOADING) the versions the policy selects, the others as UNAVAILABLE."""
        found: list[ModelVersion] = []
        for model_dir in self._model_dirs():
            name = model_dir.name
            folders = self._version_dirs(name)
            policy, _ = self.policy_for(name, folders)
            chosen = policy.select(folders)
            for v, path in folders.items():
                if v in self.versions.get(name, {}):
                    continue
                mv = ModelVersion(name, v, path)
                if v not in chosen:
                    mv.state, mv.reason = UNAVAILABLE, f"not selected by the version policy {policy}"
                self.versions.setdefault(name, {})[v] = mv
                self.metrics.model_registered(name, v)
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
        model = OnnxModel(artifact, RuntimeOptions.from_settings(s))
        if s.warmup_runs:
            try:
                model.warmup(s.warmup_runs, (1, s.max_batch_size))
            except Exception as exc:  # noqa: BLE001
                raise ArtifactError(f"{artifact.onnx_path}: warm-up failed: {exc}") from exc
        block = artifact.manifest.get("probes")
        if block is None:
            mv.probe_status = "none"
            log.warning("model %s has no probe set (an older export): it loads without its "
                        "probes being checked", mv.key,
                        extra={"model": mv.name, "version": mv.version})  # fmt: skip
        else:
            probes = load_probes(mv.path, block, shape=artifact.input_shape,
                                 num_classes=artifact.num_classes)
            if s.probes_on_load:
                def run(x: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
                    return model.run(x, m, max_batch_size=s.max_batch_size)

                try:
                    report = run_probes(run, probes, chunk=s.max_batch_size)
                except Exception as exc:  # noqa: BLE001
                    raise ArtifactError(f"probes failed: the model cannot run them: {exc}") from exc
                mv.probe_report = report
                self.probe_metrics.observe(mv.name, mv.version, report, "load")
                if not report.passed:
                    mv.probe_status = "failed"
                    raise ArtifactError(report.summary())
                mv.probe_status = "passed"
            else:
                mv.probe_status = "off"
            mv.probes = probes
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

        series = m.series(mv.name, mv.version)
        threshold = mv.threshold

        def runner(image: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
            # Derived outputs and router metrics once per batch, here in the executor thread
            # (service/postprocess.py), not per request on the event loop.
            out = derive(model.run(image, mix, max_batch_size=s.max_batch_size,
                                   on_call=on_call), threshold)
            ok = finite_rows(out)
            p_adv, adversarial = out[OUTPUT_P_ADV], out[OUTPUT_ADVERSARIAL]
            series.observe_router(p_adv if ok is None else p_adv[ok],
                                  adversarial if ok is None else adversarial[ok])
            return out

        batcher = DynamicBatcher(
            runner,
            name=mv.key,
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_queue_delay_s,
            max_queue_size=s.max_queue_size,
            retry_after_s=s.retry_after_s,
            on_queue_depth=depth.set,
            on_dequeue=queue_hist.observe,
            inline_max_s=s.inline_max_s,
            alone=lambda: self.alone(),
        )
        batcher.start()
        return batcher

    async def _load(self, mv: ModelVersion) -> bool:
        """Load, warm up and probe ``mv`` off the event loop; READY (True) or UNAVAILABLE."""
        mv.state, mv.reason = LOADING, ""
        self.metrics.model_registered(mv.name, mv.version)
        ids = {"model": mv.name, "version": mv.version}
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(self._load_blocking, mv)
        except ArtifactError as exc:
            mv.state, mv.reason = UNAVAILABLE, scrub(str(exc))  # paths: log only
            log.error("model %s not served: %s", mv.key, exc, extra=ids)
            return False
        except Exception as exc:  # noqa: BLE001 - any failure: not served, say why
            mv.state, mv.reason = UNAVAILABLE, scrub(f"{type(exc).__name__}: {exc}")
            log.exception("model %s not served", mv.key, extra=ids)
            return False
        if self.closing or mv.state != LOADING:  # shutdown began meanwhile
            self._release(mv)
            mv.state, mv.reason = UNLOADING, "server shutting down"
            return False
        mv.batcher = self._make_batcher(mv)
        assert mv.artifact is not None and mv.model is not None
        self.metrics.model_loaded(
            mv.name, mv.version, mv.model.provider, mv.artifact.kind, mv.artifact.method
        )
        self.metrics.model_evaluated(mv.name, mv.version, mv.artifact.robustness)
        self.probe_metrics.register(mv.name, mv.version, measured=mv.probe_report is not None)
        mv.load_seconds = time.perf_counter() - t0
        mv.loaded_at = time.monotonic()
        mv.state, mv.reason = READY, ""
        self.metrics.set_ready(mv.name, mv.version, True)
        probes = mv.probe_report.summary() if mv.probe_report is not None else f"probes {mv.probe_status}"
        log.info(
            "model %s ready on %s in %.2f s (threshold %.4g from %s; %s)",
            mv.key, mv.model.provider, mv.load_seconds, mv.threshold, mv.threshold_source, probes,
            extra={**ids, "provider": mv.model.provider, "providers": mv.model.providers,
                   "load_seconds": round(mv.load_seconds, 4), "probes": mv.probe_status},
        )
        return True

    def _release(self, mv: ModelVersion) -> None:
        """Drop the session and batcher (the memory goes back once nothing refers to them)."""
        if mv.model is not None and mv.artifact is not None:
            with contextlib.suppress(KeyError):
                self.metrics.model_info.remove(mv.name, mv.version, mv.model.provider,
                                               mv.artifact.kind, mv.artifact.method)
        mv.model = None
        mv.batcher = None
        mv.probes = None

    # --- unloading --------------------------------------------------------------------------
    def holders(self, mv: ModelVersion) -> float:
        """Requests that have looked this version up and are not answered yet."""
        value = self.metrics.registry.get_sample_value(
            "awnet_inflight_requests", {"model": mv.name, "version": mv.version})
        return value or 0.0

    def _retire(self, mv: ModelVersion, why: str) -> asyncio.Task[None]:
        """Stop new requests at once; drain and release in the background."""
        mv.state, mv.reason, mv.draining = UNLOADING, why, True
        self.metrics.set_ready(mv.name, mv.version, False)
        log.info("model %s unloading: %s", mv.key, why,
                 extra={"model": mv.name, "version": mv.version})
        task = asyncio.get_running_loop().create_task(self._drain(mv, why), name=f"unload-{mv.key}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)
        return task

    async def _drain(self, mv: ModelVersion, why: str) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.settings.unload_drain_s
        while self.holders(mv) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        mv.draining = False
        if mv.batcher is not None:
            await mv.batcher.close()  # whatever is still queued is answered first
        self._release(mv)
        self.probe_metrics.forget(mv.name, mv.version)
        if mv.state == UNLOADING:
            mv.state, mv.reason = UNAVAILABLE, f"unloaded ({why})"
        by_v = self.versions.get(mv.name, {})
        if by_v.get(mv.version) is mv and not mv.path.is_dir():
            del by_v[mv.version]  # its folder is gone: out of the index
            if not by_v:
                self.versions.pop(mv.name, None)
        log.info("model %s unloaded after %.3f s of draining", mv.key, time.monotonic() - t0,
                 extra={"model": mv.name, "version": mv.version})
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # --- reconciling one model ----------------------------------------------------------------
    async def reconcile(self, name: str, *, retry_failed: bool = False) -> list[ModelVersion]:
        """Bring ``name`` to what its folder and version policy say; returns the selected
        versions (each READY or UNAVAILABLE). ``retry_failed``: reload versions that failed
        even when their files did not change (explicit load)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            return await self._reconcile(name, retry_failed)

    async def _reconcile(self, name: str, retry_failed: bool) -> list[ModelVersion]:
        folders = self._version_dirs(name) if NAME_RE.match(name) else {}
        policy, source = self.policy_for(name, folders)
        chosen = policy.select(folders)
        by_v = self.versions.setdefault(name, {})
        changed = False
        # 1. the selected versions: load what is not serving the current files, beside the rest
        for v in sorted(chosen, key=int):
            path, fp = folders[v], fingerprint(folders[v])
            cur = by_v.get(v)
            if cur is not None and cur.fingerprint == fp:
                if cur.state == READY:
                    continue  # serving these files already
                failed = cur.state == UNAVAILABLE and not cur.reason.startswith(
                    ("not selected", "unloaded"))
                if failed and not retry_failed:
                    continue  # they failed and did not change since: not every poll again
            if cur is not None and cur.state == LOADING and cur.model is None:
                cand = cur  # reuse the LOADING index entry scan() registered (it has no model yet)
            else:
                cand = ModelVersion(name, v, path)
            cand.fingerprint = fp
            if cur is None or cur.state != READY:
                by_v[v] = cand  # the index shows it LOADING
            ok = await self._load(cand)
            changed = True
            if self.closing:
                break
            if cur is not None and cur.state == READY and cur is not cand:  # new files, same version
                if ok:
                    by_v[v] = cand
                    self._retire(cur, "replaced by new files of the same version")
                else:
                    cur.reason = f"new files failed to load, still serving the previous ones: {cand.reason}"
        # 2. versions no longer selected: unload once a selected one serves (or their folder is gone)
        selected_ready = any(by_v[v].serving for v in chosen if v in by_v)
        for v, mv in list(by_v.items()):
            if v in chosen:
                continue
            gone = v not in folders
            if mv.state == READY:
                if selected_ready or gone:
                    why = "version folder removed" if gone else f"not selected by the version policy {policy}"
                    self._retire(mv, why)
                    changed = True
                elif not mv.reason:
                    mv.reason = (f"kept serving: no version the policy {policy} selects is ready "
                                 f"({source})")  # fmt: skip
            elif mv.state in (UNAVAILABLE, LOADING):
                if gone:
                    del by_v[v]
                    changed = True
                elif mv.state == LOADING or not mv.reason.startswith("unloaded"):
                    mv.state, mv.reason = UNAVAILABLE, f"not selected by the version policy {policy}"
        # 3. new folders the policy does not select: listed, not loaded
        for v, path in folders.items():
            if v not in by_v:
                mv = ModelVersion(name, v, path, state=UNAVAILABLE,
                                  reason=f"not selected by the version policy {policy}")
                mv.fingerprint = fingerprint(path)
                by_v[v] = mv
                self.metrics.model_registered(name, v)
        if selected_ready:
            for v in chosen:  # a kept-serving note no longer applies
                if v in by_v and by_v[v].serving and by_v[v].reason.startswith("kept serving"):
                    by_v[v].reason = ""
        if not by_v:
            self.versions.pop(name, None)
        if changed:
            self._changed()
        return [by_v[v] for v in sorted(chosen, key=int) if v in by_v]

    async def reconcile_all(self) -> None:
        names = {d.name for d in self._model_dirs()} | set(self.versions)
        for name in sorted(names):
            if self.closing:
                return
            await self.reconcile(name)

    # --- start, poll, explicit control, stop ----------------------------------------------------
    async def load_all(self) -> None:
        """Load what the policy selects (every mode at start), then poll in ``poll`` mode."""
        try:
            await self.reconcile_all()
        finally:
            self.loading_done.set()
        if self.settings.model_control_mode == "poll" and not self.closing:
            await self.poll_forever()

    async def poll_forever(self) -> None:
        period = self.settings.repository_poll_s
        log.info("polling the model repository every %g s", period)
        while not self.closing:
            await asyncio.sleep(period)
            try:
                await self.reconcile_all()
            except Exception:  # noqa: BLE001 - one bad scan must not stop polling
                log.exception("repository poll failed")

    def start_background(self, coro: Any, name: str) -> None:
        self._background.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def load_model(self, name: str) -> list[ModelVersion]:
        """Explicit load (or reload) of ``name``; ``LoadFailed`` unless every selected
        version is READY (the versions that were serving keep serving either way)."""
        if not NAME_RE.match(name) or not (self.root / name).is_dir():
            raise LoadFailed(f"failed to load '{name}': no such model folder in the repository")
        selected = await self.reconcile(name, retry_failed=True)
        if not selected:
            raise LoadFailed(f"failed to load '{name}': the version policy selects no version "
                             "(no version folders?)")  # fmt: skip
        bad = [mv for mv in selected if not mv.serving]
        if bad:
            raise LoadFailed(f"failed to load '{name}': " + "; ".join(
                f"version {mv.version} is {mv.state}: {mv.reason}" for mv in bad))
        return selected

    async def unload_model(self, name: str) -> list[ModelVersion]:
        """Explicit unload of every version of ``name``; returns once they have drained."""
        by_v = self.versions.get(name)
        if not by_v:
            raise ModelNotFound(f"failed to unload '{name}': unknown model")
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            tasks = [self._retire(mv, "explicit unload") for mv in list(by_v.values())
                     if mv.state in (READY, LOADING)]  # fmt: skip
        await asyncio.gather(*tasks)
        return list(self.versions.get(name, {}).values())

    async def close(self) -> None:
        """Readiness off, then let every batcher finish its queue."""
        self.closing = True
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        closing = []
        for mv in self.all_versions():
            if mv.state in (READY, LOADING, UNLOADING):
                mv.state, mv.reason = UNLOADING, "server shutting down"
            mv.draining = False
            self.metrics.set_ready(mv.name, mv.version, False)
            if mv.batcher is not None:
                closing.append(mv.batcher.close())
        await asyncio.gather(*closing, *self._drains, return_exceptions=True)

    # --- lookup ---------------------------------------------------------------------------
    @property
    def all_loaded(self) -> bool:
        return self.loading_done.is_set()

    def any_ready(self) -> bool:
        return any(mv.serving for mv in self.all_versions())

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
            if mv.serving:
                return mv
        return ordered[0]

    def find_ready(self, name: str, version: str | None = None) -> ModelVersion:
        mv = self.find(name, version)
        if not mv.serving:
            why = {
                LOADING: "is loading",
                UNLOADING: "is shutting down" if self.closing else f"is unloading ({mv.reason})",
            }.get(mv.state, f"is not available: {mv.reason}")
            raise NotReady(f"model {mv.name} version {mv.version} {why}")
        return mv
