"""Dynamic batching: one asyncio batcher per model version, adaptive.

Requests put their inputs in a bounded queue (counted in inputs). One loop task runs ONE
blocking call at a time in a dedicated single-thread executor (never on the event loop) and
hands each request its rows. It batches adaptively:

* model idle: the queued requests (up to ``max_batch_size`` inputs) run at once; a lone
  request does not wait for company that may never come;
* model busy: requests arriving meanwhile gather in the queue and form the next batch as soon
  as the call returns; so batches grow with the load, and only with the load;
* ``max_delay_s`` > 0 (``AWNET_MAX_QUEUE_DELAY_MS``, default 0) adds a fixed wait on top: an
  idle model waits up to that long after the oldest queued request arrived for a batch to
  fill (the classic fixed-delay batching, for models whose cost barely grows with the batch).

* model busy and a full batch queued: that batch is handed to the executor at once, behind
  the running call, so the executor's thread starts it the moment the call ends rather than
  after a trip through a busy event loop; it counts as queued until then, and is cancelled
  before it starts if all its requests go (timeouts, clients).

* a one-image request alone in the server (``alone()``: no other request in progress and no
  other open connection, service/server.py), with the model idle and its recent one-image
  call shorter than ``inline_max_s`` (``AWNET_INLINE_MAX_MS``): the call runs right there on
  the event loop. The two thread hand-offs cost ~0.1 ms each on a small VM, a fifth of a
  small model's latency; the loop is blocked for one short call, which is what anything
  arriving meanwhile would wait for anyway.

* Queue full: ``submit`` raises ``QueueFull`` at once (503 + Retry-After), it never waits.
* Timeout: a request not answered within ``timeout`` raises ``InferenceTimeout`` at its
  deadline, queued or running; if it was still queued it is removed, so it costs no
  inference. Deadlines are kept by the batcher (one timer for requests in submission order),
  not by a ``wait_for`` per request.
* A single request larger than ``max_batch_size`` forms a batch of its own (the runner
  splits it into calls of at most ``max_batch_size``).
* ``close()`` refuses new requests, lets the queue drain, then stops the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from service.errors import InferenceFailed, InferenceTimeout, NotReady, QueueFull

log = logging.getLogger("service.batching")

Runner = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


class _Request:
    __slots__ = ("image", "mix", "future", "enqueued", "deadline", "timeout", "size", "queued",
                 "ahead")

    def __init__(self, image: np.ndarray, mix: np.ndarray,
                 future: asyncio.Future[dict[str, np.ndarray]], enqueued: float,
                 deadline: float, timeout: float) -> None:
        self.image = image
        self.mix = mix
        self.future = future
        self.enqueued = enqueued  # time.monotonic(), for the queue-duration metric
        self.deadline = deadline  # loop.time()
        self.timeout = timeout
        self.size = int(image.shape[0])
        self.queued = True
        self.ahead = False  # handed to the executor behind the running call (still counted)


async def _settled(future: asyncio.Future) -> None:
    """Wait for ``future`` without raising its exception (``_deliver`` reads it)."""
    with contextlib.suppress(Exception):  # the outcome is the caller's to read
        await future


class _Call:
    """A batch handed to the executor: its requests, the executor's future (``work``) and
    the loop's future that follows it."""

    __slots__ = ("live", "future", "work")

    def __init__(self, live: list[_Request], future: asyncio.Future[dict[str, np.ndarray]],
                 work: concurrent.futures.Future | None = None) -> None:
        self.live = live
        self.future = future
        self.work = work

    def cancel(self) -> None:
        """Cancel a call that has not started. The executor's future is cancelled right here:
        cancelling only the loop's future reaches it one loop iteration later, by which time
        the executor's thread may have started the call (a cancelled batch that ran anyway)."""
        if self.work is not None:
            self.work.cancel()
        self.future.cancel()


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
        inline_max_s: float = 0.0,
        alone: Callable[[], bool] | None = None,
    ) -> None:
        self.runner = runner
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue_size = max_queue_size
        self.retry_after_s = retry_after_s
        self._on_queue_depth = on_queue_depth or (lambda n: None)
        self._on_dequeue = on_dequeue or (lambda s: None)
        self.inline_max_s = inline_max_s
        self._alone = alone or (lambda: False)
        self._one_call_s: float | None = None  # moving average of one-image calls (any thread)
        self._queue: deque[_Request] = deque()
        self._queued_inputs = 0
        # Requests not yet answered, in submission order (deadlines non-decreasing): the one
        # timer below fires at the first deadline; requests whose deadline comes before the
        # last one's (a shorter timeout) get a timer of their own.
        self._pending: deque[_Request] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None  # the loop sleeping for work
        self._call_running = False  # the loop waits for a call (and for a full batch)
        self._ahead: _Call | None = None  # the batch handed to the executor behind that call
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._loop_obj: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._loop_obj = asyncio.get_running_loop()
            self._task = self._loop_obj.create_task(self._loop(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, stop."""
        self._closing = True
        self._wake()
        if self._task is not None:
            await self._task
            self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._executor.shutdown(wait=True)

    @property
    def queued_inputs(self) -> int:
        return self._queued_inputs

    # --- requests -------------------------------------------------------------------------
    async def submit(
        self, image: np.ndarray, mix: np.ndarray, timeout: float
    ) -> dict[str, np.ndarray]:
        loop = self._loop_obj
        if self._closing or self._task is None or loop is None:
            raise NotReady(f"model {self.name} is shutting down")
        n = int(image.shape[0])
        if n == 1 and self._may_inline():
            return self._run_inline(image, mix)
        if self._queued_inputs + n > self.max_queue_size:
            raise QueueFull(
                f"model {self.name}: queue full ({self._queued_inputs} of {self.max_queue_size} "
                f"inputs waiting); retry later",
                retry_after_s=self.retry_after_s,
            )
        request = _Request(image, mix, loop.create_future(), time.monotonic(),
                           loop.time() + timeout, timeout)
        self._queue.append(request)
        self._queued_inputs += n
        self._on_queue_depth(self._queued_inputs)
        self._watch(request, loop)
        if self._call_running:
            self._hand_ahead()  # a full batch goes to the executor behind the running call
        else:
            self._wake()
        try:
            return await request.future
        except asyncio.CancelledError:
            self._forget(request)  # the client went away: drop it if still queued
            raise

    def _may_inline(self) -> bool:
        one = self._one_call_s
        return (one is not None and one < self.inline_max_s and not self._call_running
                and self._ahead is None and not self._queue and self.max_delay_s == 0
                and self._alone())

    def _run_inline(self, image: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
        """The call on the event loop (``_may_inline``): no queue, no thread hand-off."""
        self._on_dequeue(0.0)
        try:
            return self._run(image, mix)
        except Exception as exc:  # noqa: BLE001 - answered like a failed batch
            raise InferenceFailed(self._failure(exc)) from None

    def _run(self, image: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
        """The runner, timed when it gets one image and inline calls are on (``_may_inline``
        reads the average)."""
        if image.shape[0] != 1 or self.inline_max_s <= 0:
            return self.runner(image, mix)
        t0 = time.perf_counter()
        out = self.runner(image, mix)
        took = time.perf_counter() - t0
        one = self._one_call_s
        self._one_call_s = took if one is None else one + 0.1 * (took - one)
        return out

    def _failure(self, exc: BaseException | None) -> str:
        """Log a failed call; the clients' message (the details, ORT's message and paths, go
        to the log only)."""
        log.error("inference failed for model %s", self.name, exc_info=exc)
        return (f"inference failed in model {self.name} "
                f"({type(exc).__name__ if exc else 'CancelledError'}); "
                "the server log has the details")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _watch(self, request: _Request, loop: asyncio.AbstractEventLoop) -> None:
        pending = self._pending
        if pending and request.deadline < pending[-1].deadline:
            loop.call_at(request.deadline, self._expire, request)  # out of order: its own timer
            return
        pending.append(request)
        if self._timer is None:
            self._timer = loop.call_at(request.deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        loop = self._loop_obj
        assert loop is not None
        now = loop.time()
        pending = self._pending
        while pending and (pending[0].future.done() or pending[0].deadline <= now):
            self._expire(pending.popleft())
        if pending:
            self._timer = loop.call_at(pending[0].deadline, self._on_timer)

    def _expire(self, request: _Request) -> None:
        """Deadline reached: answer the request with a timeout; drop it if still queued."""
        if request.future.done():
            return
        request.future.set_exception(InferenceTimeout(
            f"model {self.name}: no answer within the request timeout of {request.timeout:g} s"
        ))
        self._unqueue(request)

    def _forget(self, request: _Request) -> None:
        """A cancelled request: remove it from the queue if it is still there."""
        request.future.cancel()  # its result, if any, is no longer wanted
        self._unqueue(request)

    def _unqueue(self, request: _Request) -> None:
        if request.ahead:  # in the batch waiting behind the running call
            self._uncount_ahead(request)
            self._on_queue_depth(self._queued_inputs)
            ahead = self._ahead
            if ahead is not None and all(r.future.done() for r in ahead.live):
                ahead.cancel()  # nobody waits for it: it does not run
            return
        if not request.queued:
            return  # already taken into a batch; its result will be dropped
        request.queued = False
        self._queue.remove(request)
        self._queued_inputs -= request.size
        self._on_queue_depth(self._queued_inputs)

    # --- loop -----------------------------------------------------------------------------
    async def _sleep(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        """Until a request arrives (or close), at most ``timeout`` seconds."""
        waiter = self._waiter = loop.create_future()
        handle = None if timeout is None else loop.call_later(timeout, self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    def _take_batch(self) -> list[_Request]:
        batch: list[_Request] = []
        total = 0
        queue = self._queue
        while queue:
            nxt = queue[0]
            if batch and total + nxt.size > self.max_batch_size:
                break
            queue.popleft()
            nxt.queued = False
            batch.append(nxt)
            total += nxt.size
        self._queued_inputs -= total
        self._on_queue_depth(self._queued_inputs)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            call = self._ahead
            if call is not None:  # handed over during the last call: the thread runs it now
                self._ahead = None
                for r in call.live:
                    self._uncount_ahead(r)
                self._on_queue_depth(self._queued_inputs)
            else:
                if not self._queue:
                    if self._closing:
                        return
                    await self._sleep(loop, None)
                    continue
                if (self.max_delay_s > 0 and self._queued_inputs < self.max_batch_size
                        and not self._closing):
                    remaining = self._queue[0].enqueued + self.max_delay_s - time.monotonic()
                    if remaining > 0:
                        await self._sleep(loop, remaining)
                        continue  # look again: full, deadline passed, or more to wait
                call = self._start(loop)
                if call is None:
                    self._prune()
                    continue
            if not call.future.done():
                self._call_running = True
                self._hand_ahead()
                try:
                    await _settled(call.future)  # one wake-up when it ends, as before
                finally:
                    self._call_running = False
            self._deliver(call)
            self._prune()

    def _hand_ahead(self) -> None:
        """During a call, once the queue holds a full batch, hand that batch to the executor
        too: its single thread starts it the moment the call ends, instead of after a trip
        through a busy event loop (between 32-image requests the model idled ~7 % of the
        time). Only a full batch goes ahead, so batches still grow with the load. Its inputs
        count as queued until it runs; if all its requests go (timeouts, clients), it is
        cancelled before it starts (``_unqueue``)."""
        if not self._call_running or self._ahead is not None:
            return
        if self._queued_inputs < self.max_batch_size or self._loop_obj is None:
            return
        ahead = self._start(self._loop_obj)
        if ahead is None:
            return
        for r in ahead.live:
            r.ahead = True
            self._queued_inputs += r.size
        self._on_queue_depth(self._queued_inputs)
        self._ahead = ahead

    def _uncount_ahead(self, request: _Request) -> None:
        """A request of the batch handed ahead leaves the queue count (it runs, or it went)."""
        if request.ahead:
            request.ahead = False
            self._queued_inputs -= request.size

    def _start(self, loop: asyncio.AbstractEventLoop) -> _Call | None:
        """Take the next batch and hand it to the executor (None: all its requests are gone)."""
        batch = self._take_batch()
        now = time.monotonic()
        live = []
        for req in batch:
            self._on_dequeue(now - req.enqueued)
            if not req.future.done():
                live.append(req)
        if not live:
            return None
        try:
            if len(live) == 1:
                image, mix = live[0].image, live[0].mix
            else:
                image = np.concatenate([r.image for r in live], axis=0)
                mix = np.concatenate([r.mix for r in live], axis=0)
            work = self._executor.submit(self._run, image, mix)
            future = asyncio.wrap_future(work, loop=loop)
        except Exception as exc:  # noqa: BLE001 - handed to the requests like a runner failure
            work, future = None, loop.create_future()
            future.set_exception(exc)
        return _Call(live, future, work)

    def _deliver(self, call: _Call) -> None:
        live = call.live
        if call.future.cancelled() and all(r.future.done() for r in live):
            return  # cancelled because every request of it was answered (timeouts, clients)
        exc = call.future.exception() if not call.future.cancelled() else None
        if call.future.cancelled() or exc is not None:
            message = self._failure(exc)
            for req in live:
                if not req.future.done():
                    req.future.set_exception(InferenceFailed(message))
            return
        out = call.future.result()
        if len(live) == 1:
            if not live[0].future.done():
                live[0].future.set_result(out)
            return
        offset = 0
        for req in live:
            end = offset + req.size
            if not req.future.done():
                req.future.set_result({k: v[offset:end] for k, v in out.items()})
            offset = end

    def _prune(self) -> None:
        """Forget answered requests at the front of the deadline list (it stays short)."""
        pending = self._pending
        while pending and pending[0].future.done():
            pending.popleft()
