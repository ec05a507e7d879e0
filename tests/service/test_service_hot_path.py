"""The hot path of inference requests (docs/service.md "Serving speed"): adaptive batching,
deadlines in the batcher, the direct route and fast lane, the HTTP protocol choices, one write
per response, batched log writes, cached metric children, orjson with the stdlib's answers,
ORT thread and CUDA options. Behaviour only: speed is measured by `python -m benchmarks`,
never asserted here."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import sys
from functools import partial

import numpy as np
import pytest

from service import jsonbody
from service.codec_v2 import parse_infer_request
from service.errors import BadInput, InferenceTimeout
from tests.support.batching import Runner, batcher, req
from tests.support.fake_model import FAKE_MODEL
from tests.support.images import smooth_image
from tests.support.servers import app_client, start_process

V2 = f"/v2/models/{FAKE_MODEL}/infer"
GOOD = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                    "data": smooth_image().ravel().tolist()}]}


# --- batching -----------------------------------------------------------------------------------
_batcher = partial(batcher, max_delay_s=0.0)  # other options as keywords


async def _until(predicate, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_adaptive_batching_runs_a_lone_request_at_once_and_gathers_during_a_call():
    async def main():
        runner = Runner()
        b = _batcher(runner)
        assert float((await b.submit(*req(7.0), timeout=5))["p_adv"][0]) == 7.0
        runner.gate.clear()
        runner.started.clear()
        first = asyncio.create_task(b.submit(*req(0.0), timeout=5))
        await _until(runner.started.is_set)  # the model is busy with `first`
        rest = [asyncio.create_task(b.submit(*req(float(i)), timeout=5)) for i in range(1, 6)]
        await _until(lambda: b.queued_inputs == 5)
        runner.gate.set()
        outs = await asyncio.gather(first, *rest)
        await b.close()
        return runner.calls, outs

    calls, outs = asyncio.run(main())
    assert calls == [1, 1, 5]  # alone, alone (model idle), then the five that waited together
    assert [float(o["p_adv"][0]) for o in outs] == [float(i) for i in range(6)]


def test_deadline_of_a_running_request_and_shorter_timeouts_out_of_order():
    async def main():
        runner = Runner()
        runner.gate.clear()
        b = _batcher(runner, max_batch_size=1)
        running = asyncio.create_task(b.submit(*req(0.0), timeout=0.05))
        await _until(runner.started.is_set)
        slow = asyncio.create_task(b.submit(*req(1.0), timeout=5))      # queued, long deadline
        quick = asyncio.create_task(b.submit(*req(2.0), timeout=0.05))  # queued, shorter one
        with pytest.raises(InferenceTimeout, match="request timeout of 0.05 s"):
            await running  # answered while its call still runs
        with pytest.raises(InferenceTimeout):
            await quick
        assert b.queued_inputs == 1  # the expired queued request left the queue
        runner.gate.set()
        out = await slow
        await b.close()
        return runner.calls, out, len(b._pending)

    calls, out, pending = asyncio.run(main())
    assert calls == [1, 1]  # `quick` never ran
    assert float(out["p_adv"][0]) == 1.0
    assert pending == 0


def test_cancelled_request_leaves_the_queue_and_answered_ones_are_forgotten():
    async def main():
        runner = Runner()
        runner.gate.clear()
        b = _batcher(runner, max_batch_size=1)
        first = asyncio.create_task(b.submit(*req(0.0), timeout=5))
        await _until(runner.started.is_set)
        gone = asyncio.create_task(b.submit(*req(1.0), timeout=5))
        await _until(lambda: b.queued_inputs == 1)
        gone.cancel()
        await asyncio.sleep(0)
        assert b.queued_inputs == 0
        runner.gate.set()
        await first
        for i in range(50):
            await b.submit(*req(float(i)), timeout=5)
        await b.close()
        return runner.calls, len(b._pending)

    calls, pending = asyncio.run(main())
    assert calls == [1] * 51  # the cancelled request never ran
    assert pending == 0


# --- metrics --------------------------------------------------------------------------------------
def test_router_histogram_of_a_batch_equals_one_observation_per_value():
    from service.metrics import Metrics

    values = np.random.default_rng(0).random(200).astype(np.float32)
    values[:6] = [0.0, 0.001, 0.5, 0.999, 1.0, 0.0050000004]
    batched, single = Metrics(), Metrics()
    batched.series("m", "1").observe_router(values, values >= 0.5)
    for v in values.tolist():
        single.router_score.labels("m", "1").observe(v)
    single.inputs.labels("m", "1", "adversarial").inc(int((values >= 0.5).sum()))
    single.inputs.labels("m", "1", "clean").inc(int((values < 0.5).sum()))

    def samples(m):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in m.registry.collect() if fam.name in ("awnet_router_score", "awnet_inputs")
                for s in fam.samples}

    a, b = samples(batched), samples(single)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    assert batched.series("m", "1") is batched.series("m", "1")


# --- JSON ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    b'{"a": 1, "a": 2}', b"[1.5e-320, -0.0, 0.1, 1e16]", b'"\\u00e9"', b"18446744073709551615",
    b"[NaN, Infinity]", b"1e400", b'"\\ud800"', b"\xef\xbb\xbf[1]",
])
def test_loads_fast_gives_the_stdlib_value(text):
    value, _ = jsonbody.loads_fast(text)
    expected = json.loads(text)
    assert json.dumps(value) == json.dumps(expected)


@pytest.mark.parametrize("text", [b"{not json", b'{"a": [', b"\xff\xfe", b"[" * 5000 + b"]" * 5000])
def test_loads_fast_refuses_with_the_stdlib_message(text):
    with pytest.raises(BadInput) as fast:
        jsonbody.loads_fast(text)
    with pytest.raises(BadInput) as slow:
        jsonbody.loads(text)
    assert fast.value.message == slow.value.message


def test_integers_beyond_64_bits_in_shapes_are_read_exactly():
    big = 2**64 + 1
    body = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [big, 1],
                                   "data": [0.5]}]}).encode()
    with pytest.raises(BadInput, match=f"shape \\[{big}, 1\\] needs {big}"):
        parse_infer_request(body, None)


# --- routes -----------------------------------------------------------------------------------------
def test_direct_route_refuses_what_it_cannot_call():
    from fastapi import Depends, Request
    from fastapi.responses import Response

    from service.deps import DirectRoute

    async def endpoint(request: Request, name: str) -> Response:
        return Response()

    def sync_check(request: Request) -> None:
        return None

    with pytest.raises(TypeError, match="must be async def"):
        DirectRoute("/x/{name}", endpoint, methods=["POST"],
                    dependencies=[Depends(sync_check)]).get_route_handler()

    async def wrong(request: Request, other: str) -> Response:
        return Response()

    with pytest.raises(TypeError, match="takes \\(request, name\\)"):
        DirectRoute("/x/{name}", wrong, methods=["POST"]).get_route_handler()


def test_fast_lane_answers_like_the_router(repository):
    with app_client(repository, api_key="k3y") as c:
        assert c.app.context.fast_lane is not None  # the lane is built with the app
        assert c.post(V2, json=GOOD).status_code == 401
        r = c.post(V2, json=GOOD, headers={"Authorization": "Bearer k3y", "X-Request-ID": "r1"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "r1"
        assert c.post(f"/v2/models/{FAKE_MODEL}/versions/1/infer", json=GOOD,
                      headers={"Authorization": "Bearer k3y"}).status_code == 200
        r = c.post("/v2/models/nope/infer", json=GOOD, headers={"Authorization": "Bearer k3y"})
        assert r.status_code == 404 and set(r.json()) == {"error"}
        assert c.get(V2).status_code == 405  # another method: the router's answer
        text = c.get("/metrics").text
        assert 'endpoint="/v2/models/{name}/infer"' in text
    with app_client(repository, cors_origins=["https://a.example"]) as c:
        assert c.app.context.fast_lane is None
        r = c.post(V2, json=GOOD, headers={"Origin": "https://a.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"]


# --- HTTP protocol -----------------------------------------------------------------------------------
def test_protocol_choice_and_fallbacks(monkeypatch):
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from service.server import event_loop, http_protocol
    from service.settings import Settings

    s = Settings()
    assert issubclass(http_protocol(s)[0], HttpToolsProtocol) and event_loop(s) == "uvloop"
    s = Settings(http="h11", loop="asyncio")
    assert issubclass(http_protocol(s)[0], H11Protocol) and event_loop(s) == "asyncio"
    monkeypatch.setitem(sys.modules, "httptools", None)  # not installed
    monkeypatch.setitem(sys.modules, "uvloop", None)
    s = Settings()
    assert http_protocol(s)[1] == "h11" and event_loop(s) == "asyncio"


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_one_write_per_response():
    from service.server import _OneWriteTransport

    t = _Transport()
    w = _OneWriteTransport(t)
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # interim answers go at once
    w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    w.write(b"ok")
    assert t.writes[1] == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    w.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    w.flush()  # no body write (HEAD, 204): the head goes out at the response's end
    w.write(b"HTTP/1.1 200 OK\r\n\r\n")
    w.close()
    assert t.writes[2:] == [b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"]
    assert t.closed and w.is_closing()


def _recv_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


@pytest.mark.slow
def test_httptools_server_bounds_heads_that_arrive_in_pieces(repository):
    env = {"AWNET_PROVIDERS": "cpu", "AWNET_MAX_HEADER_BYTES": "4096"}
    with start_process(repository, env) as srv:
        assert "httptools parser, uvloop event loop" in srv.logs()
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
            for _ in range(40):  # 40 pieces of 1 KiB: above 4 x 4096 bytes, never complete
                try:
                    sock.sendall(b"X-Filler: " + b"a" * 1012 + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break
            answer = _recv_all(sock)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"AWNET_MAX_HEADER_BYTES" in answer
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            # HEAD: an answer without body writes (405 here) still gets its head out
            sock.sendall(b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = _recv_all(sock)
        assert answer.startswith(b"HTTP/1.1 405 ") and answer.endswith(b"\r\n\r\n"), answer


# --- logs -----------------------------------------------------------------------------------------------
class _Stream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def write(self, s: str) -> int:
        self.calls += 1
        return super().write(s)


def test_log_lines_of_one_loop_iteration_are_one_write():
    from service.logging import JsonFormatter, LoopStreamHandler

    stream = _Stream()
    handler = LoopStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.hot_path")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("before the loop")

        async def main():
            for i in range(5):
                logger.info("line %d", i)
            assert stream.calls == 1  # still pending
            await asyncio.sleep(0)
            assert stream.calls == 2  # the five in one write
            logger.info("pending at the end")

        asyncio.run(main())
        handler.flush()
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(x)["message"] for x in stream.getvalue().splitlines()]
    assert lines == ["before the loop", *(f"line {i}" for i in range(5)), "pending at the end"]
    assert '"level": "INFO"' in stream.getvalue()  # the format log readers grep for


def test_request_ids_are_unique_hex():
    from service.logging import new_request_id

    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# --- runtime -------------------------------------------------------------------------------------------
def test_intra_op_threads_leave_a_core_to_the_event_loop():
    from service.runtime import intra_op_threads_for

    assert [intra_op_threads_for(0, n) for n in (1, 2, 8)] == [1, 1, 7]
    assert intra_op_threads_for(3, 2) == 3
    # AWNET_WORKERS share the cores: each worker's share but one, at least 1
    assert [intra_op_threads_for(0, 8, w) for w in (1, 2, 4, 8)] == [7, 3, 1, 1]
    assert intra_op_threads_for(0, 2, 2) == 1


def test_session_options_cpu_and_cuda(monkeypatch, repository):
    import onnxruntime as ort

    from service import runtime
    from service.artifact import load_artifact
    from service.settings import Settings

    seen = {}
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        seen["so"], seen["providers"] = sess_options, providers
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(runtime.ort, "InferenceSession", spy)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    art = load_artifact(repository / FAKE_MODEL / "1")
    runtime.OnnxModel(art, runtime.RuntimeOptions(providers=("CPUExecutionProvider",)))
    assert seen["providers"] == ["CPUExecutionProvider"]  # nothing else on the CPU path
    assert seen["so"].intra_op_num_threads == 1
    assert seen["so"].get_session_config_entry("session.intra_op.allow_spinning") == "0"

    opts = runtime.RuntimeOptions.from_settings(Settings(
        providers=["cuda", "cpu"], cuda_device_id=1, cudnn_conv_algo_search="HEURISTIC",
        ort_allow_spinning=True))
    assert opts.allow_spinning and opts.cuda_device_id == 1
    listed = runtime.provider_list(["CUDAExecutionProvider", "CPUExecutionProvider"], opts)
    assert listed[1] == "CPUExecutionProvider"
    assert listed[0] == ("CUDAExecutionProvider", {
        "device_id": "1", "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": "1"})


def test_io_binding_is_used_only_on_cuda(repository):
    from service import runtime
    from service.artifact import load_artifact

    art = load_artifact(repository / FAKE_MODEL / "1")
    model = runtime.OnnxModel(art, runtime.RuntimeOptions(providers=("CPUExecutionProvider",)))
    assert not model.io_binding
    real = model.session
    log: list[str] = []

    class Binding:
        def __init__(self) -> None:
            self.inputs: dict[str, np.ndarray] = {}

        def bind_cpu_input(self, name, value):
            log.append(f"in:{name}")
            self.inputs[name] = value

        def bind_output(self, name, device):
            log.append(f"out:{name}:{device}")

        def synchronize_inputs(self):
            log.append("sync-in")

        def synchronize_outputs(self):
            log.append("sync-out")

        def copy_outputs_to_cpu(self):
            return real.run(None, self.inputs)

    class CudaSession:
        def io_binding(self):
            return Binding()

        def run_with_iobinding(self, binding):
            log.append("run")

        def run(self, names, feeds):
            raise AssertionError("session.run on the CUDA path")

    model.session, model.io_binding = CudaSession(), True
    image = np.zeros((2, 1, 28, 28), np.float32)
    out = model.run(image, np.full((2,), -1.0, np.float32))
    assert out["logits"].shape == (2, 10)
    assert log[:2] == ["in:image", "in:mix_override"] and "run" in log and log[-1] == "sync-out"
