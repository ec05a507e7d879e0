"""Dynamic batching: one asyncio batcher per model version.

Requests put their inputs in a bounded queue (counted in inputs). One loop task takes the
oldest request, waits at most ``max_delay_s`` after that request arrived for others to fill a
batch of up to ``max_batch_size`` inputs, concatenates them and runs ONE blocking call in a
dedicated single-thread executor (never on the event loop), then hands each request its rows.

* Queue full: ``submit`` raises ``QueueFull`` at once (503 + Retry-After), it never waits.
* Timeout: a request not answered within ``timeout`` raises ``InferenceTimeout``; if it was
  still queued it is removed, so it costs no inference.
* A single request larger than ``max_batch_size`` forms a batch of its own (the runner
  splits it into calls of at most ``max_batch_size``).
* ``close()`` refuses new requests, lets the queue drain, then stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.errors import InferenceFailed, InferenceTimeout, NotReady, QueueFull

log = logging.getLogger("service.batching")

Runner = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


@dataclass(eq=False)
class _Request:
    image: np.ndarray
    mix: np.ndarray
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


class DynamicBatcher:
    def __init__(
        self,
        runner: Runner,
        *,
        name: str,
        max_batch_size: int,
        max_delay_s: float,
        max_queue_size: int,
        retry_after_s: int = 1,
        on_queue_depth: Callable[[int], None] | None = None,
        on_dequeue: Callable[[float], None] | None = None,
    ) -> None:
        self.runner = runner
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue_size = max_queue_size
        self.retry_after_s = retry_after_s
        self._on_queue_depth = on_queue_depth or (lambda n: None)
        self._on_dequeue = on_dequeue or (lambda s: None)
        self._queue: deque[_Request] = deque()
        self._queued_inputs = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"batcher-{self.name}"
            )

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    @property
    def queued_inputs(self) -> int:
        return self._queued_inputs

    # --- requests -------------------------------------------------------------------------
    async def submit(
        self, image: np.ndarray, mix: np.ndarray, timeout: float
    ) -> dict[str, np.ndarray]:
        if self._closing or self._task is None:
            raise NotReady(f"model {self.name} is shutting down")
        n = int(image.shape[0])
        if self._queued_inputs + n > self.max_queue_size:
            raise QueueFull(
                f"model {self.name}: queue full ({self._queued_inputs} of {self.max_queue_size} "
                f"inputs waiting); retry later",
                retry_after_s=self.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        request = _Request(image=image, mix=mix, future=loop.create_future())
        self._queue.append(request)
        self._queued_inputs += n
        self._on_queue_depth(self._queued_inputs)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            self._forget(request)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise InferenceTimeout(
                f"model {self.name}: no answer within the request timeout of {timeout:g} s"
            ) from None

    def _forget(self, request: _Request) -> None:
        """Drop a timed-out request from the queue if it is still there."""
        request.future.cancel()  # its result, if any, is no longer wanted
        try:
            self._queue.remove(request)
        except ValueError:
            return  # already taken into a batch; its result will be dropped
        self._queued_inputs -= request.size
        self._on_queue_depth(self._queued_inputs)

    # --- loop -----------------------------------------------------------------------------
    async def _wait(self, timeout: float | None) -> None:
        self._wakeup.clear()
        if timeout is None:
            await self._wakeup.wait()
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        total = 0
        while self._queue:
            nxt = self._queue[0]
            if batch and total + nxt.size > self.max_batch_size:
                break
            self._queue.popleft()
            batch.append(nxt)
            total += nxt.size
        self._queued_inputs -= total
        self._on_queue_depth(self._queued_inputs)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                await self._wait(None)
            deadline = self._queue[0].enqueued + self.max_delay_s
            while self._queued_inputs < self.max_batch_size and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await self._wait(remaining)
                if not self._queue:
                    break
            if not self._queue:
                continue
            batch = self._take_batch()
            now = time.monotonic()
            for req in batch:
                self._on_dequeue(now - req.enqueued)
            live = [r for r in batch if not r.future.done()]
            if not live:
                continue
            try:
                if len(live) == 1:
                    image, mix = live[0].image, live[0].mix
                else:
                    image = np.concatenate([r.image for r in live], axis=0)
                    mix = np.concatenate([r.mix for r in live], axis=0)
                out = await loop.run_in_executor(self._executor, self.runner, image, mix)
            except Exception as exc:  # noqa: BLE001 - every failure goes to the waiting requests
                log.exception("inference failed for model %s", self.name)
                for req in live:
                    if not req.future.done():
                        req.future.set_exception(InferenceFailed(f"inference failed: {exc}"))
                continue
            offset = 0
            for req in live:
                rows = slice(offset, offset + req.size)
                offset += req.size
                if not req.future.done():
                    req.future.set_result({k: v[rows] for k, v in out.items()})
