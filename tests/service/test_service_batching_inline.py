"""A lone one-image request runs its model call on the event loop (``AWNET_INLINE_MAX_MS``,
service/batching.py): unit tests of the rule on a real batcher and event loop, and the wiring
to uvicorn's running requests through a real ``python -m service``."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path

import httpx
import pytest

from service.errors import InferenceFailed
from tests.support.batching import Runner, batcher, req
from tests.support.servers import start_process
from tests.support.v2client import metric, scrape

_batcher = partial(batcher, max_delay_s=0.0, inline_max_s=0.002)


def _loop_thread() -> str:
    return threading.current_thread().name


def test_a_lone_request_runs_on_the_loop_once_the_call_is_known_to_be_short():
    async def main():
        runner = Runner()
        b = _batcher(runner, alone=lambda: True)
        for i in range(3):
            await b.submit(*req(i), timeout=5)
        await b.close()
        return runner, _loop_thread()

    runner, loop_thread = asyncio.run(main())
    # The first call measures the model (executor thread); the next ones run inline.
    assert runner.threads[0].startswith("ort-t/1")
    assert runner.threads[1:] == [loop_thread, loop_thread]


@pytest.mark.parametrize("case", ["not alone", "off", "slow model", "two images", "delay"])
def test_the_call_stays_on_the_model_thread(case: str):
    kw = {"alone": lambda: case != "not alone"}
    if case == "off":
        kw["inline_max_s"] = 0.0
    if case == "delay":
        kw["max_delay_s"] = 0.001
    runner = Runner(delay=0.005 if case == "slow model" else 0.0)  # 5 ms > 2 ms
    n = 2 if case == "two images" else 1

    async def main():
        b = _batcher(runner, **kw)
        for i in range(3):
            await b.submit(*req(i, n), timeout=5)
        await b.close()

    asyncio.run(main())
    assert runner.threads and all(t.startswith("ort-t/1") for t in runner.threads)


def test_not_inline_while_the_model_is_busy():
    """A lone request arriving during a running call queues behind it, as before."""
    async def main():
        runner = Runner()
        b = _batcher(runner, alone=lambda: True)
        await b.submit(*req(0), timeout=5)  # measured: a lone one-image request may go inline
        runner.gate.clear()
        runner.started.clear()
        busy = asyncio.ensure_future(b.submit(*req(1, 2), timeout=5))  # two images: executor
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, runner.started.wait, 5)  # it is running
        lone = asyncio.ensure_future(b.submit(*req(2), timeout=5))
        await asyncio.sleep(0.01)
        assert not lone.done()  # queued behind the running call (inline would have run it)
        runner.gate.set()
        await asyncio.gather(busy, lone)
        await b.close()
        return runner

    runner = asyncio.run(main())
    assert runner.calls == [1, 2, 1]
    assert all(t.startswith("ort-t/1") for t in runner.threads)


def test_an_inline_failure_is_answered_like_a_batch_failure():
    async def main():
        runner = Runner()
        b = _batcher(runner, alone=lambda: True)
        await b.submit(*req(0), timeout=5)
        runner.fail = True
        with pytest.raises(InferenceFailed, match=r"inference failed in model t/1 \(RuntimeError\)"):
            await b.submit(*req(1), timeout=5)
        runner.fail = False
        ok = await b.submit(*req(2), timeout=5)
        await b.close()
        return runner, ok

    runner, ok = asyncio.run(main())
    assert ok["p_adv"].shape == (1,)
    assert runner.threads[1] == runner.threads[2]  # both inline: the batcher goes on


ONE = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                   "data": [0.5] * 784}]}


def _queue_seconds(client: httpx.Client) -> tuple[float, float]:
    s = scrape(client)  # on the client's own connection: a second one would end "alone"
    return (metric(s, "awnet_queue_duration_seconds_sum"),
            metric(s, "awnet_queue_duration_seconds_count"))


def _queued_in_20_requests(c: httpx.Client) -> float:
    """Seconds the queue-duration histogram gains over 20 sequential one-image requests on
    ``c``, after 3 that let the batcher measure the model."""
    model = c.get("/v1/models").json()["models"][0]["name"]
    for _ in range(3):
        assert c.post(f"/v2/models/{model}/infer", json=ONE).status_code == 200
    total0, n0 = _queue_seconds(c)
    for _ in range(20):
        assert c.post(f"/v2/models/{model}/infer", json=ONE).status_code == 200
    total1, n1 = _queue_seconds(c)
    assert n1 - n0 == 20
    return total1 - total0


def test_a_second_open_connection_keeps_requests_off_the_loop(repository: Path):
    """Another client's idle keep-alive connection: not one sequential client any more, so
    nothing runs inline (with many connections a request is briefly alone now and then, and
    inlining those raised the tail latency at moderate load)."""
    with (start_process(repository, {"AWNET_INLINE_MAX_MS": "2"}) as server,
          httpx.Client(base_url=server.url, timeout=30) as c,
          httpx.Client(base_url=server.url, timeout=30) as other):
        assert other.get("/v2/health/live").status_code == 200  # open, then idle
        assert _queued_in_20_requests(c) > 0


@pytest.mark.parametrize("inline_ms", ["2", "0"])
def test_sequential_requests_skip_the_queue_only_when_inline_is_on(repository: Path,
                                                                   inline_ms: str):
    """``python -m service``: one client's sequential requests on one connection are alone in
    the server, so they run inline and spend exactly 0 s queued (the executor path queues
    each ~20 us)."""
    with (start_process(repository, {"AWNET_INLINE_MAX_MS": inline_ms}) as server,
          httpx.Client(base_url=server.url, timeout=30) as c):
        queued = _queued_in_20_requests(c)
    if inline_ms == "0":
        assert queued > 0
    else:
        assert queued == 0.0
