"""The canary (``AWNET_CANARY_INTERVAL_S`` > 0): each ready version's probes again, in the
background, one small chunk at a time and only while the version has no request queued or
in flight, so that it never runs ahead of user traffic (the same chunks and checks as at
load: service/probes.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from artifact_contract import ProbeReport
from service.probes import ProbeMetrics, ProbeOutputs, probe_chunks
from service.served_model import ServedModel

log = logging.getLogger("service.probes")


class Canary:
    """Re-runs each ready version's probes every ``interval_s``, only while it is idle."""

    def __init__(self, versions: Callable[[], Iterable[ServedModel]], probe_metrics: ProbeMetrics,
                 interval_s: float, chunk: int = 8) -> None:  # fmt: skip
        self.versions = versions
        self.probe_metrics = probe_metrics
        self.interval_s = interval_s
        self.chunk = chunk
        self.last: dict[int, float] = {}  # id(ServedModel) -> monotonic time of the last run

    @staticmethod
    def _idle(mv: ServedModel) -> bool:
        batcher = mv.batcher
        return mv.serving and batcher is not None and batcher.queued_inputs == 0 and mv.holders == 0

    async def run_once(self, mv: ServedModel) -> ProbeReport | None:
        """One canary pass over ``mv`` (None: it got busy or went away meanwhile)."""
        probes, model = mv.probes, mv.model
        if probes is None or model is None:
            return None
        outputs = ProbeOutputs(probes)
        for s, x, mix in probe_chunks(probes, self.chunk):
            waited = 0.0
            while not self._idle(mv):  # user requests first
                if not mv.serving or waited > self.interval_s:
                    return None
                await asyncio.sleep(0.05)
                waited += 0.05
            try:
                outputs.add(s, await asyncio.to_thread(model.run, x, mix))
            except Exception as exc:  # noqa: BLE001 - a failing session fails the canary
                outputs.failed(s, len(x))
                log.warning("canary: model %s failed on its probes: %s", mv.key, exc,
                            extra={"model": mv.name, "version": mv.version})  # fmt: skip
        report = outputs.report()
        if not mv.serving:
            return None
        mv.probe_report = report
        self.probe_metrics.observe(mv.name, mv.version, report, "canary")
        level = logging.INFO if report.passed else logging.ERROR
        log.log(level, "canary: model %s %s", mv.key, report.summary(),
                extra={"model": mv.name, "version": mv.version, "probe_figures": report.figures})
        return report

    async def forever(self) -> None:
        tick = min(1.0, self.interval_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for mv in list(self.versions()):
                if not mv.serving or mv.probes is None:
                    continue
                if now - self.last.get(id(mv), mv.loaded_at or 0.0) < self.interval_s:
                    continue
                self.last[id(mv)] = now
                try:
                    await self.run_once(mv)
                except Exception:  # noqa: BLE001 - the canary must never stop the service
                    log.exception("canary: probe run on %s failed", mv.key)
