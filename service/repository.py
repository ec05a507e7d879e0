"""The model repository: the map from name and version to ``ServedModel``, and the version
policy that fills it.

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
the policy no longer selects keeps serving while none of the selected ones is ready. States
and the kinds of reasons: service/lifecycle.py; one version: service/served_model.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artifact_contract import NAME_RE, ArtifactError
from service.discovery import fingerprint, model_dirs, policy_for, version_dirs
from service.errors import ModelNotFound, NotReady, scrub
from service.lifecycle import State, Why, drain
from service.metrics import Metrics
from service.occupancy import Occupancy
from service.probes import ProbeMetrics
from service.served_model import ServedModel
from service.settings import Settings

log = logging.getLogger("service.repository")

LOADING, READY, UNAVAILABLE, UNLOADING = State.LOADING, State.READY, State.UNAVAILABLE, State.UNLOADING


class LoadFailed(Exception):
    """``load_model``: the model or some version the policy selects did not become READY."""


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics, occupancy: Occupancy | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.probe_metrics = ProbeMetrics(metrics.registry)
        self.occupancy = occupancy or Occupancy()
        self.root = Path(settings.model_repository)
        self.versions: dict[str, dict[str, ServedModel]] = {}
        self.loading_done = asyncio.Event()
        self.listeners: list[Callable[[], None]] = []  # called after the served set changes
        self.closing = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []

    def _policy(self, name: str, folders: dict[str, Path]) -> tuple[Any, str]:
        return policy_for(name, folders, self.settings.policy)

    def scan(self) -> list[ServedModel]:
        """Register (LOADING) the versions the policy selects, the others as UNAVAILABLE."""
        found: list[ServedModel] = []
        for model_dir in model_dirs(self.root):
            name = model_dir.name
            folders = version_dirs(self.root, name)
            policy, _ = self._policy(name, folders)
            chosen = policy.select(folders)
            for v, path in folders.items():
                if v in self.versions.get(name, {}):
                    continue
                mv = ServedModel(name, v, path)
                if v not in chosen:
                    mv.status.set(UNAVAILABLE, Why.NOT_SELECTED, f"not selected by the version policy {policy}")
                self.versions.setdefault(name, {})[v] = mv
                self.metrics.model_registered(name, v)
                found.append(mv)
        if not found:
            log.warning("no model versions found in %s", self.root)
        return found

    def all_versions(self) -> list[ServedModel]:
        return [mv for by_v in self.versions.values() for mv in by_v.values()]

    # --- loading ----------------------------------------------------------------------------
    async def _load(self, mv: ServedModel) -> bool:
        """Load, warm up and probe ``mv`` off the event loop; READY (True) or UNAVAILABLE."""
        mv.status.set(LOADING)
        self.metrics.model_registered(mv.name, mv.version)
        ids = {"model": mv.name, "version": mv.version}
        t0 = time.perf_counter()
        try:
            await asyncio.to_thread(mv.load, self.settings, self.probe_metrics)
        except ArtifactError as exc:
            mv.status.set(UNAVAILABLE, Why.FAILED, scrub(str(exc)))  # paths: log only
            log.error("model %s not served: %s", mv.key, exc, extra=ids)
            return False
        except Exception as exc:  # noqa: BLE001 - any failure: not served, say why
            mv.status.set(UNAVAILABLE, Why.FAILED, scrub(f"{type(exc).__name__}: {exc}"))
            log.exception("model %s not served", mv.key, extra=ids)
            return False
        if self.closing or mv.state != LOADING:  # shutdown began meanwhile
            mv.release(self.metrics)
            mv.status.set(UNLOADING, Why.SHUTTING_DOWN, "server shutting down")
            return False
        mv.start(self.settings, self.metrics, self.occupancy.alone)
        assert mv.artifact is not None and mv.model is not None
        self.metrics.model_loaded(mv.name, mv.version, mv.model.provider, mv.artifact.kind, mv.artifact.method)
        self.metrics.model_evaluated(mv.name, mv.version, mv.artifact.robustness)
        self.probe_metrics.register(mv.name, mv.version, measured=mv.probe_report is not None)
        mv.load_seconds = time.perf_counter() - t0
        mv.loaded_at = time.monotonic()
        mv.status.set(READY)
        self.metrics.set_ready(mv.name, mv.version, True)
        probes = mv.probe_report.summary() if mv.probe_report is not None else f"probes {mv.probe_status}"
        log.info(
            "model %s ready on %s in %.2f s (threshold %.4g from %s; %s)",
            mv.key, mv.model.provider, mv.load_seconds, mv.threshold, mv.threshold_source, probes,
            extra={**ids, "provider": mv.model.provider, "providers": mv.model.providers,
                   "load_seconds": round(mv.load_seconds, 4), "probes": mv.probe_status},
        )  # fmt: skip
        return True

    # --- unloading --------------------------------------------------------------------------
    def _retire(self, mv: ServedModel, why: str) -> asyncio.Task[None]:
        """Stop new requests at once; drain and release in the background."""
        mv.status.set(UNLOADING, Why.DRAINING, why)
        mv.draining = True
        self.metrics.set_ready(mv.name, mv.version, False)
        log.info("model %s unloading: %s", mv.key, why, extra={"model": mv.name, "version": mv.version})
        task = asyncio.get_running_loop().create_task(self._drain(mv, why), name=f"unload-{mv.key}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)
        return task

    async def _drain(self, mv: ServedModel, why: str) -> None:
        async def finish() -> None:
            mv.draining = False
            if mv.batcher is not None:
                await mv.batcher.close()  # whatever is still queued is answered first

        seconds = await drain(lambda: mv.holders, self.settings.unload_drain_s, finish)
        mv.release(self.metrics)
        self.probe_metrics.forget(mv.name, mv.version)
        if mv.state == UNLOADING:
            mv.status.set(UNAVAILABLE, Why.UNLOADED, f"unloaded ({why})")
        by_v = self.versions.get(mv.name, {})
        if by_v.get(mv.version) is mv and not mv.path.is_dir():
            del by_v[mv.version]  # its folder is gone: out of the index
            if not by_v:
                self.versions.pop(mv.name, None)
        log.info("model %s unloaded after %.3f s of draining", mv.key, seconds,
                 extra={"model": mv.name, "version": mv.version})  # fmt: skip
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # --- reconciling one model ----------------------------------------------------------------
    async def reconcile(self, name: str, *, retry_failed: bool = False) -> list[ServedModel]:
        """Bring ``name`` to what its folder and version policy say; returns the selected
        versions (each READY or UNAVAILABLE). ``retry_failed``: reload versions that failed
        even when their files did not change (explicit load)."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            return await self._reconcile(name, retry_failed)

    async def _reconcile(self, name: str, retry_failed: bool) -> list[ServedModel]:
        folders = version_dirs(self.root, name)
        policy, source = self._policy(name, folders)
        chosen = policy.select(folders)
        not_selected = f"not selected by the version policy {policy}"
        by_v = self.versions.setdefault(name, {})
        changed = False
        # 1. the selected versions: load what is not serving the current files, beside the rest
        for v in sorted(chosen, key=int):
            path, fp = folders[v], fingerprint(folders[v])
            cur = by_v.get(v)
            if cur is not None and cur.fingerprint == fp:
                if cur.state == READY:
                    continue  # serving these files already
                if not cur.status.retryable and not retry_failed:
                    continue  # they failed and did not change since: not every poll again
            if cur is not None and cur.state == LOADING and cur.model is None:
                cand = cur  # reuse the LOADING index entry scan() registered (it has no model yet)
            else:
                cand = ServedModel(name, v, path)
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
                    cur.status.note(Why.STALE_FILES, "new files failed to load, still serving the "
                                    f"previous ones: {cand.reason}")  # fmt: skip
        # 2. versions no longer selected: unload once a selected one serves (or their folder is gone)
        selected_ready = any(by_v[v].serving for v in chosen if v in by_v)
        for v, mv in list(by_v.items()):
            if v in chosen:
                continue
            gone = v not in folders
            if mv.state == READY:
                if selected_ready or gone:
                    self._retire(mv, "version folder removed" if gone else not_selected)
                    changed = True
                elif mv.status.why == Why.NONE:
                    mv.status.note(Why.KEPT_SERVING, f"kept serving: no version the policy {policy} "
                                   f"selects is ready ({source})")  # fmt: skip
            elif mv.state in (UNAVAILABLE, LOADING):
                if gone:
                    del by_v[v]
                    changed = True
                elif mv.state == LOADING or mv.status.why != Why.UNLOADED:
                    mv.status.set(UNAVAILABLE, Why.NOT_SELECTED, not_selected)
        # 3. new folders the policy does not select: listed, not loaded
        for v, path in folders.items():
            if v not in by_v:
                mv = ServedModel(name, v, path, UNAVAILABLE, Why.NOT_SELECTED, not_selected)
                mv.fingerprint = fingerprint(path)
                by_v[v] = mv
                self.metrics.model_registered(name, v)
        if selected_ready:
            for v in chosen:  # a kept-serving note no longer applies
                if v in by_v and by_v[v].serving and by_v[v].status.why == Why.KEPT_SERVING:
                    by_v[v].status.note(Why.NONE, "")
        if not by_v:
            self.versions.pop(name, None)
        if changed:
            self._changed()
        return [by_v[v] for v in sorted(chosen, key=int) if v in by_v]

    async def reconcile_all(self) -> None:
        names = {d.name for d in model_dirs(self.root)} | set(self.versions)
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

    async def load_model(self, name: str) -> list[ServedModel]:
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

    async def unload_model(self, name: str) -> list[ServedModel]:
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
                mv.status.set(UNLOADING, Why.SHUTTING_DOWN, "server shutting down")
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

    def find(self, name: str, version: str | None = None) -> ServedModel:
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

    def find_ready(self, name: str, version: str | None = None) -> ServedModel:
        mv = self.find(name, version)
        if not mv.serving:
            why = {
                LOADING: "is loading",
                UNLOADING: "is shutting down" if self.closing else f"is unloading ({mv.reason})",
            }.get(mv.state, f"is not available: {mv.reason}")
            raise NotReady(f"model {mv.name} version {mv.version} {why}")
        return mv
