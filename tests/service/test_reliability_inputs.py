"""The catalogue of hostile and broken inputs, against a real ``python -m service``.

Each entry is one request (or one misbehaving connection) with the status it must get. The
catalogue runs twice; afterwards the service answers a normal request exactly as before it,
and its memory (RSS) is where it was after the first pass (no leak per pass) and near where it
started. Numbers are printed (``-s``) for docs/reliability.md.
"""

from __future__ import annotations

import gzip
import io
import json
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.fake_model import FAKE_MODEL
from tests.support.images import noisy_image, smooth_image, to_png
from tests.support.servers import app_client, start_process
from tests.support.v2client import HEADER_LENGTH, decode_v2_response

MAX_BATCH = 8
BODY_TIMEOUT_S = 2.0
HEADER_TIMEOUT_S = 2.0
MAX_BODY = 8 * 1024 * 1024  # the default
V1 = f"/v1/models/{FAKE_MODEL}/classify"
V2 = f"/v2/models/{FAKE_MODEL}/infer"
ENV = {"AWNET_PROVIDERS": "cpu", "AWNET_INTRA_OP_THREADS": "1", "AWNET_INTER_OP_THREADS": "1",
       "AWNET_MAX_REQUEST_BATCH": str(MAX_BATCH), "AWNET_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
       "AWNET_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "AWNET_LOG_LEVEL": "WARNING"}


# --- inputs ------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` (a pixel bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def image_bytes(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def grey(seed: int = 0) -> Image.Image:
    return Image.fromarray((smooth_image(seed=seed)[0] * 255).astype(np.uint8))


def animated(fmt: str) -> bytes:
    frames = [grey(i) for i in range(3)]
    return image_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50)


def corrupted(data: bytes, start: int) -> bytes:
    out = bytearray(data)
    for i in range(start, len(out) - 12, 5):
        out[i] ^= 0xFF
    return bytes(out)


PNG = to_png(smooth_image())
JPEG = to_png(smooth_image(), "JPEG")
GOOD_IMAGES = smooth_image()[None]  # [1, 1, 28, 28]


def tensor(data: Any = None, shape=(1, 1, 28, 28), datatype="FP32", name="image") -> dict:
    if data is None:
        data = smooth_image().ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data}


def binary(arr: np.ndarray, *, datatype="FP32", shape=None, size=None, extra=b"",
           header: str | None = None) -> dict:
    """kwargs for a binary-extension request; every field can lie."""
    raw = arr.tobytes()
    head = json.dumps({"inputs": [{
        "name": "image", "datatype": datatype, "shape": list(shape or arr.shape),
        "parameters": {"binary_data_size": len(raw) if size is None else size}}]}).encode()
    return {"content": head + raw + extra, "headers": {
        HEADER_LENGTH: str(len(head)) if header is None else header,
        "Content-Type": "application/octet-stream"}}


def raw(data: bytes, content_type: str = "image/png") -> dict:
    return {"content": data, "headers": {"Content-Type": content_type}}


def gzip_bomb() -> bytes:
    return gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB -> ~64 KiB


f32 = np.float32
# (id, path, request kwargs, expected status)
CATALOGUE: list[tuple[str, str, dict[str, Any], int]] = [
    ("v1-empty-body", V1, raw(b""), 400),
    ("v2-empty-body", V2, raw(b"", "application/json"), 400),
    ("png-truncated", V1, raw(PNG[: len(PNG) // 2]), 400),
    ("png-corrupted", V1, raw(corrupted(PNG, 60)), 400),
    ("jpeg-truncated", V1, raw(JPEG[: len(JPEG) // 2], "image/jpeg"), 400),
    ("jpeg-corrupted", V1, raw(corrupted(JPEG, len(JPEG) // 2), "image/jpeg"), 400),
    ("jpeg-corrupted-header", V1, raw(JPEG[:2] + b"\x00" * 18 + JPEG[20:], "image/jpeg"), 415),
    ("png-50000x50000", V1, raw(png_declaring(50_000, 50_000)), 413),
    ("png-65535x1", V1, raw(png_declaring(65_535, 1)), 400),  # aspect ratio, never decoded
    ("png-animated", V1, raw(animated("PNG")), 200),  # first frame
    ("webp-animated", V1, raw(animated("WEBP"), "image/webp"), 200),
    ("gif-animated", V1, raw(animated("GIF"), "image/gif"), 415),  # not a served format
    ("png-16-bit", V1, raw(image_bytes(Image.fromarray(
        (smooth_image()[0] * 65535).astype(np.uint16)), "PNG")), 200),
    ("jpeg-cmyk", V1, raw(image_bytes(grey().convert("CMYK"), "JPEG"), "image/jpeg"), 200),
    ("png-palette", V1, raw(image_bytes(grey().convert("P"), "PNG")), 200),
    ("png-palette-transparent", V1, raw(image_bytes(grey().convert("P"), "PNG",
                                                     transparency=0)), 200),
    ("json-huge-array", V2, {"json": {"inputs": [tensor([0] * 3_000_000)]}}, 400),
    ("json-over-body-limit", V2, raw(b"[" + b"0," * (MAX_BODY // 2) + b"0]",
                                     "application/json"), 413),
    ("json-deeply-nested", V2, raw(b"[" * 50_000 + b"]" * 50_000, "application/json"), 400),
    ("json-deeply-nested-v1", V1, raw(b'{"pixels": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                                      "application/json"), 400),
    ("json-huge-integer", V2, raw(b'{"inputs": [], "id": ' + b"9" * 10_000 + b"}",
                                  "application/json"), 400),
    ("json-not-utf8", V2, raw(b'{"inputs": "\xff\xfe"}', "application/json"), 400),
    ("json-booleans-as-pixels", V2, {"json": {"inputs": [tensor([True] * 784)]}}, 400),
    ("json-strings-as-pixels", V2, {"json": {"inputs": [tensor(["0.5"] * 784)]}}, 400),
    ("json-shape-overflow", V2, {"json": {"inputs": [tensor([0.5], shape=(2**62, 2**62))]}}, 400),
    ("binary-wrong-shape", V2, binary(np.zeros((1, 1, 27, 28), f32)), 400),
    ("binary-wrong-datatype", V2, binary(np.zeros((1, 1, 28, 28), np.int32), datatype="INT32"),
     400),
    ("binary-wrong-byte-length", V2, binary(np.zeros((1, 1, 28, 28), f32), size=784 * 4 - 4),
     400),
    ("binary-size-beyond-body", V2, binary(np.zeros((1, 1, 28, 28), f32)[..., :27],
                                           shape=(1, 1, 28, 28), size=784 * 4), 400),
    ("binary-unclaimed-bytes", V2, binary(np.zeros((1, 1, 28, 28), f32), extra=b"\0" * 16), 400),
    ("header-length-negative", V2, binary(np.zeros((1, 1, 28, 28), f32), header="-5"), 400),
    ("header-length-absurd", V2, binary(np.zeros((1, 1, 28, 28), f32), header="9" * 40), 400),
    ("header-length-zero", V2, binary(np.zeros((1, 1, 28, 28), f32), header="0"), 400),
    ("header-length-not-a-number", V2, binary(np.zeros((1, 1, 28, 28), f32), header="12a"), 400),
    ("binary-nan", V2, binary(np.full((1, 1, 28, 28), np.nan, f32)), 400),
    ("binary-inf", V2, binary(np.full((1, 1, 28, 28), np.inf, f32)), 400),
    ("json-nan", V2, raw(b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, '
                         b'28], "data": [' + b"NaN," * 783 + b"Infinity]}]}", "application/json"),
     400),
    ("binary-pixels-above-1", V2, binary(np.full((1, 1, 28, 28), 1.5, f32)), 400),
    ("json-pixels-below-0", V2, {"json": {"inputs": [tensor([-0.25] * 784)]}}, 400),
    ("v1-pixels-above-1", V1, {"json": {"pixels": [[2.0] * 28] * 28}}, 400),
    ("batch-over-limit", V2, binary(np.zeros((MAX_BATCH + 1, 1, 28, 28), f32)), 413),
    ("unknown-model-v2", "/v2/models/nope/infer", {"json": {"inputs": [tensor()]}}, 404),
    ("unknown-version-v2", f"/v2/models/{FAKE_MODEL}/versions/99/infer",
     {"json": {"inputs": [tensor()]}}, 404),
    ("unknown-model-v1", "/v1/models/nope/classify", raw(PNG), 404),
    ("unknown-version-v1", f"/v1/models/{FAKE_MODEL}/versions/99/classify", raw(PNG), 404),
    ("v1-wrong-content-type", V1, raw(PNG, "text/plain"), 415),
    ("v2-unknown-content-encoding", V2, {"content": b"x", "headers": {
        "Content-Encoding": "br"}}, 415),
    ("gzip-bomb", V2, {"content": gzip_bomb(), "headers": {"Content-Encoding": "gzip",
                                                            "Content-Type": "application/json"}},
     413),
    ("multipart-many-files", V1, {"files": [("file", (f"f{i}.png", PNG, "image/png"))
                                            for i in range(20)]}, 400),
]


# --- misbehaving connections ------------------------------------------------------------------------
def _recv_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _status(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


def slow_body(port: int) -> tuple[int | None, float]:
    """A JSON body sent one byte every 100 ms: refused once the body timeout has passed."""
    body = json.dumps({"inputs": [tensor()]}).encode()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"POST {V2} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        sock.settimeout(0.1)
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                answer = sock.recv(65536)
                if answer:
                    return _status(answer), time.monotonic() - t0
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if time.monotonic() - t0 > 4 * BODY_TIMEOUT_S:
                break
        return _status(_recv_all(sock, 1.0)), time.monotonic() - t0


def slow_headers(port: int) -> tuple[bool, float]:
    """Headers one byte every 200 ms (slowloris): the server closes the connection."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.2)
        for byte in b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    return True, time.monotonic() - t0
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return True, time.monotonic() - t0
            if time.monotonic() - t0 > 4 * HEADER_TIMEOUT_S:
                return False, time.monotonic() - t0
    return False, time.monotonic() - t0


def header_request(port: int, headers: list[tuple[str, str]]) -> int | None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
        try:
            sock.sendall(head.encode())
        except (BrokenPipeError, ConnectionResetError):
            return None
        return _status(_recv_all(sock, 5.0))


@dataclass
class Server:
    url: str
    port: int
    pid: int


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def normal_answer(client: httpx.Client) -> dict[str, np.ndarray]:
    images = np.concatenate([GOOD_IMAGES, noisy_image()[None]]).astype("<f4")
    raw_images = images.tobytes()
    head = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 1, 28, 28],
                                   "parameters": {"binary_data_size": len(raw_images)}}],
                       "parameters": {"binary_data_output": True}}).encode()
    r = client.post(V2, content=head + raw_images, headers={HEADER_LENGTH: str(len(head))})
    assert r.status_code == 200, r.text
    return decode_v2_response(r)


def run_catalogue(server: Server, client: httpx.Client) -> dict[str, int | None]:
    got: dict[str, int | None] = {}
    for name, path, kwargs, _ in CATALOGUE:
        r = client.post(path, **kwargs)
        got[name] = r.status_code
        if r.status_code >= 400:
            body = r.json()
            assert set(body) == {"error"}, (name, body)
            assert "Traceback" not in body["error"] and "/work/" not in body["error"], body
            assert "/site-packages/" not in body["error"] and ".py" not in body["error"], body
    # a slow body must not hold anything: a normal request meanwhile is answered at once
    result: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: result.update(slow=slow_body(server.port)))
    slow.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    normal_answer(client)
    result["meanwhile_s"] = time.monotonic() - t0
    slow.join(timeout=30)
    got["slow-body"], result["slow_s"] = result["slow"]
    closed, result["slowloris_s"] = slow_headers(server.port)
    got["slow-headers"] = 0 if closed else None
    got["header-64KiB"] = header_request(server.port, [("X-Big", "a" * 65536)])
    got["header-flood-3000"] = header_request(server.port, [(f"X-H{i}", "v" * 8)
                                                            for i in range(3000)])
    got["headers-50-small"] = header_request(server.port, [(f"X-H{i}", "v") for i in range(50)])
    r = client.get("/v2/health/live", headers={"X-Request-ID": "x" * 10_000})
    got["request-id-10k"] = r.status_code if len(r.headers["x-request-id"]) <= 128 else None
    r = client.get("/v2/health/live", headers={"X-Request-ID": "evil\u00e9;rm -rf".encode()})
    got["request-id-hostile"] = r.status_code if r.headers["x-request-id"].isalnum() else None
    got["_timings"] = result  # type: ignore[assignment]
    return got


EXPECTED_CONNECTIONS = {"slow-body": 408, "slow-headers": 0, "header-64KiB": 431,
                        "header-flood-3000": 431, "headers-50-small": 200, "request-id-10k": 200,
                        "request-id-hostile": 200}


@pytest.fixture(scope="module")
def server(repository: Path):
    with start_process(repository, env=ENV) as s:
        yield Server(url=s.url, port=s.port, pid=s.proc.pid), s


@pytest.mark.slow
def test_hostile_inputs_catalogue_then_normal_answer_and_memory(server):
    srv, process = server
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        reference = normal_answer(client)
        for _ in range(20):  # warm up: allocator and caches at their working size
            normal_answer(client)
        rss = [rss_mib(srv.pid)]
        passes = []
        for _ in range(2):
            passes.append(run_catalogue(srv, client))
            rss.append(rss_mib(srv.pid))
        after = normal_answer(client)
    timings = passes[-1].pop("_timings")
    passes[0].pop("_timings")
    expected = {name: status for name, _, _, status in CATALOGUE} | EXPECTED_CONNECTIONS
    print(f"\ncatalogue: {len(expected)} entries x 2 passes; RSS MiB start {rss[0]:.1f}, "
          f"after pass 1 {rss[1]:.1f}, after pass 2 {rss[2]:.1f}; timings {timings}")
    for got in passes:
        wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
        assert not wrong, f"(got, expected): {wrong}"
    for name in reference:  # the same request, the same answer
        np.testing.assert_array_equal(after[name], reference[name])
    assert timings["meanwhile_s"] < 1.0, timings  # the slow client held nothing
    assert timings["slow_s"] < BODY_TIMEOUT_S + 2, timings
    assert timings["slowloris_s"] < HEADER_TIMEOUT_S + 2, timings
    assert rss[2] < rss[1] * 1.05, rss  # the second pass did not grow memory: no leak per pass
    assert rss[2] < rss[0] * 1.25 + 16, rss  # and the service is near where it started
    assert "Traceback" not in process.logs()
    assert '"level": "ERROR"' not in process.logs(), process.logs()[-3000:]


@pytest.fixture(scope="module")
def app(repository: Path):
    with app_client(repository, max_request_batch=MAX_BATCH, body_timeout_s=BODY_TIMEOUT_S) as c:
        yield c


@pytest.mark.parametrize("name", [c[0] for c in CATALOGUE])
def test_catalogue_entry_in_process(app, name):
    """Each entry against the app itself (TestClient, fast): a failure names the entry."""
    _, path, kwargs, status = next(c for c in CATALOGUE if c[0] == name)
    r = app.post(path, **kwargs)
    assert r.status_code == status, r.text[:500]
