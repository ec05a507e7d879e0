"""Dynamic batching: unit tests of the batcher, and overload / timeout through HTTP (timing:
real servers, the overload one in its own process)."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpx
import pytest

from service.errors import InferenceFailed, InferenceTimeout, NotReady, QueueFull
from tests.support.batching import Runner, batcher, req
from tests.support.fake_model import FAKE_MODEL, slow_layers_for, write_model_version
from tests.support.images import smooth_image
from tests.support.servers import start_process, start_server
from tests.support.v2client import metric, scrape

_batcher = partial(batcher, max_delay_s=0.05)  # other options as keywords


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    async def main():
        runner = Runner()
        b = _batcher(runner)
        outs = await asyncio.gather(*(b.submit(*req(i), timeout=5) for i in range(8)))
        await b.close()
        return runner, outs

    runner, outs = asyncio.run(main())
    assert runner.calls == [8]
    assert [float(o["p_adv"][0]) for o in outs] == [float(i) for i in range(8)]


def test_max_batch_size_and_large_requests():
    async def main():
        runner = Runner()
        b = _batcher(runner, max_batch_size=4)
        sizes = [1, 1, 1, 1, 1, 1, 3, 6]
        outs = await asyncio.gather(*(b.submit(*req(i, n), timeout=5) for i, n in enumerate(sizes)))
        await b.close()
        return runner, outs, sizes

    runner, outs, sizes = asyncio.run(main())
    assert all(c <= 4 for c in runner.calls[:-1])
    assert sum(runner.calls) == sum(sizes)
    assert 6 in runner.calls  # a request above max_batch_size runs alone
    assert [o["p_adv"].shape[0] for o in outs] == sizes


def test_max_delay_bounds_the_wait():
    async def main():
        runner = Runner()
        b = _batcher(runner, max_delay_s=0.02)
        t0 = time.monotonic()
        await b.submit(*req(1.0), timeout=5)
        elapsed = time.monotonic() - t0
        await b.close()
        return elapsed

    assert asyncio.run(main()) < 0.5


def test_queue_full_is_refused_at_once():
    async def main():
        runner = Runner()
        runner.gate.clear()  # the first call blocks
        b = _batcher(runner, max_batch_size=1, max_queue_size=2, max_delay_s=0.0)
        first = asyncio.create_task(b.submit(*req(0), timeout=5))
        await asyncio.sleep(0.05)  # taken by the loop, now running (blocked)
        queued = [asyncio.create_task(b.submit(*req(i), timeout=5)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        t0 = time.monotonic()
        with pytest.raises(QueueFull) as info:
            await b.submit(*req(3), timeout=5)
        refused_in = time.monotonic() - t0
        runner.gate.set()
        await asyncio.gather(first, *queued)
        await b.close()
        return info.value, refused_in

    err, refused_in = asyncio.run(main())
    assert refused_in < 0.05
    assert err.headers["Retry-After"] == "1" and "queue full" in err.message


def test_a_full_batch_goes_to_the_executor_during_a_call_and_starts_without_the_loop():
    """The next full batch is handed over while a call runs: it starts when that call ends
    even though the event loop is busy (blocked here), and it counts as queued till then."""
    import threading

    loop_blocked = threading.Event()
    seen: list[bool] = []

    class Recording(Runner):
        def __call__(self, image, mix):
            seen.append(loop_blocked.is_set())
            return super().__call__(image, mix)

    async def main():
        runner = Recording()
        runner.gate.clear()  # the first call blocks
        b = _batcher(runner, max_batch_size=2, max_delay_s=0.0)
        first = asyncio.create_task(b.submit(*req(0, n=2), timeout=5))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(b.submit(*req(1, n=2), timeout=5))
        await asyncio.sleep(0.05)
        depth = b.queued_inputs  # handed over, not yet running
        loop_blocked.set()
        runner.gate.set()
        time.sleep(0.3)  # the event loop is busy: only the executor's thread can start it
        loop_blocked.clear()
        await asyncio.gather(first, second)
        after = b.queued_inputs
        await b.close()
        return runner.calls, depth, after

    calls, depth, after = asyncio.run(main())
    assert calls == [2, 2] and seen == [False, True]
    assert depth == 2 and after == 0


def test_timeout_removes_a_queued_request():
    async def main():
        runner = Runner(delay=0.3)
        b = _batcher(runner, max_batch_size=1, max_delay_s=0.0)
        first = asyncio.create_task(b.submit(*req(0), timeout=5))
        await asyncio.sleep(0.02)
        with pytest.raises(InferenceTimeout):
            await b.submit(*req(1), timeout=0.05)
        assert b.queued_inputs == 0
        await first
        await b.close()
        return runner

    runner = asyncio.run(main())
    assert runner.calls == [1]  # the timed-out request never ran


def test_close_drains_the_queue_then_refuses():
    async def main():
        runner = Runner(delay=0.02)
        b = _batcher(runner, max_batch_size=2, max_delay_s=0.0)
        tasks = [asyncio.create_task(b.submit(*req(i), timeout=5)) for i in range(7)]
        await asyncio.sleep(0)
        await b.close()
        results = await asyncio.gather(*tasks)
        with pytest.raises(NotReady):
            await b.submit(*req(9), timeout=1)
        return results

    results = asyncio.run(main())
    assert len(results) == 7


def test_runner_failure_goes_to_every_request_and_the_loop_survives():
    async def main():
        runner = Runner(fail=True)
        b = _batcher(runner)
        results = await asyncio.gather(*(b.submit(*req(i), timeout=5) for i in range(3)),
                                       return_exceptions=True)
        runner.fail = False
        ok = await b.submit(*req(1), timeout=5)
        await b.close()
        return results, ok

    results, ok = asyncio.run(main())
    assert all(isinstance(r, InferenceFailed) for r in results)
    assert ok["p_adv"].shape == (1,)


# --- through HTTP, with a slow model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_repository(tmp_path_factory, slow_layer_seconds):
    repo = tmp_path_factory.mktemp("slow-repo")
    write_model_version(repo, FAKE_MODEL, "1",
                        slow_layers=slow_layers_for(0.3, slow_layer_seconds))
    return repo


BODY = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                               "data": smooth_image().ravel().tolist()}]}).encode()


def _post(url: str, client: httpx.Client | None = None) -> tuple[int, dict, float]:
    client = client or httpx.Client(timeout=30)  # (creating a client costs ~30 ms of CPU)
    t0 = time.monotonic()
    r = client.post(f"{url}/v2/models/{FAKE_MODEL}/infer", content=BODY,
                    headers={"Content-Type": "application/json"})
    return r.status_code, {"headers": r.headers, "json": r.json()}, time.monotonic() - t0


@pytest.mark.slow
def test_overload_returns_503_with_retry_after_quickly(slow_repository):
    # A separate process, so that the 12 client threads do not share the server's GIL.
    env = {"AWNET_MAX_BATCH_SIZE": "1", "AWNET_MAX_QUEUE_SIZE": "2", "AWNET_MAX_REQUEST_BATCH": "1",
           "AWNET_MAX_QUEUE_DELAY_MS": "0", "AWNET_INTRA_OP_THREADS": "1",
           "AWNET_RETRY_AFTER_S": "2", "AWNET_PROVIDERS": "cpu"}
    with start_process(slow_repository, env) as srv:
        clients = [httpx.Client(timeout=30) for _ in range(12)]
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda c: _post(srv.url, c), clients))
        for c in clients:
            c.close()
        refused = [r for r in results if r[0] == 503]
        served = [r for r in results if r[0] == 200]
        assert len(served) + len(refused) == 12, [r[0] for r in results]
        assert served and len(refused) >= 6
        for _, resp, seconds in refused:
            assert resp["headers"]["retry-after"] == "2"
            assert "queue full" in resp["json"]["error"]
            assert seconds < 0.25  # refused at once, not after waiting for the model
        samples = scrape(srv.url)
        assert metric(samples, "awnet_refused_requests_total", reason="queue_full",
                      model=FAKE_MODEL, version="1") == len(refused)
        assert _post(srv.url)[0] == 200  # and it still serves


@pytest.fixture(scope="module")
def very_slow_repository(tmp_path_factory, slow_layer_seconds):
    """A model whose single call takes ~1.5 s: far longer than the timeout under test, so
    the 504's promptness is measurable with a wide margin even on a loaded machine."""
    repo = tmp_path_factory.mktemp("very-slow-repo")
    write_model_version(repo, FAKE_MODEL, "1",
                        slow_layers=slow_layers_for(1.5, slow_layer_seconds))
    return repo


@pytest.mark.slow
def test_request_timeout_is_504(very_slow_repository):
    with start_server(very_slow_repository, max_batch_size=1, request_timeout_s=0.1,
                      intra_op_threads=1, warmup_runs=0) as srv:
        status, resp, seconds = _post(srv.url)
        assert status == 504
        assert "no answer within the request timeout of 0.1 s" in resp["json"]["error"]
        assert seconds < 1.0  # answered at the timeout, not after the ~1.5 s model call
        samples = scrape(srv.url)
        assert metric(samples, "awnet_refused_requests_total", reason="timeout",
                      model=FAKE_MODEL, version="1") == 1
        assert httpx.get(srv.url + "/v2/health/ready").status_code == 200
