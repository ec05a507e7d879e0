"""Every listed bad input gets its status and a clear message; the service then still answers.

FastAPI's TestClient around create_app(settings): no socket needed for errors.
"""

from __future__ import annotations

import base64
import gzip
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.support.fake_model import FAKE_MODEL
from tests.support.images import smooth_image, to_png
from tests.support.servers import app_client
from tests.support.v2client import HEADER_LENGTH, metric, scrape

MAX_BODY = 200_000
MAX_PIXELS = 1_000_000
MAX_BATCH = 8

V1 = f"/v1/models/{FAKE_MODEL}/classify"
V2 = f"/v2/models/{FAKE_MODEL}/infer"


@pytest.fixture(scope="module")
def client(repository):
    with app_client(repository, max_body_bytes=MAX_BODY, max_image_pixels=MAX_PIXELS,
                    max_request_batch=MAX_BATCH) as c:
        yield c


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="GIF")
    return buf.getvalue()


def _tensor(data=None, shape=(1, 1, 28, 28), datatype="FP32", name="image"):
    if data is None:
        data = smooth_image().ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data}


def _v2(*inputs, **extra):
    return {"inputs": list(inputs), **extra}


GOOD = _tensor()
PNG = to_png(smooth_image())

# (id, method kwargs for client.post(path, ...), path, status, message fragment)
CASES = [
    # --- v1 --------------------------------------------------------------------------------
    ("v1-body-too-large", V1, {"content": b"\x89PNG" + b"0" * (MAX_BODY + 10),
                               "headers": {"Content-Type": "image/png"}}, 413, "AWNET_MAX_BODY_BYTES"),
    ("v1-decompression-bomb", V1, {"content": _png(2000, 2000),
                                   "headers": {"Content-Type": "image/png"}}, 413,
     "2000x2000 = 4000000 pixels, above the limit of 1000000"),
    ("v1-gif", V1, {"content": _gif(), "headers": {"Content-Type": "image/png"}}, 415,
     "send PNG, JPEG, WebP or BMP"),
    ("v1-garbage", V1, {"content": b"hello world" * 10,
                        "headers": {"Content-Type": "application/octet-stream"}}, 415,
     "not a supported image"),
    ("v1-content-type", V1, {"content": b"abc", "headers": {"Content-Type": "text/plain"}}, 415,
     "Content-Type 'text/plain' not supported"),
    ("v1-truncated-png", V1, {"content": PNG[: len(PNG) // 2],
                              "headers": {"Content-Type": "image/png"}}, 400, "truncated"),
    ("v1-aspect-ratio", V1, {"content": to_png(smooth_image(), size=(56, 28)),
                             "headers": {"Content-Type": "image/png"}}, 400,
     "image is 56x28 (aspect ratio 2.00) but the model takes 28x28"),
    ("v1-empty-body", V1, {"content": b"", "headers": {"Content-Type": "image/png"}}, 400,
     "empty body"),
    ("v1-bad-base64", V1, {"json": {"image_b64": "not base64!!"}}, 400, "not valid base64"),
    ("v1-bad-json", V1, {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
     400, "not valid JSON"),
    ("v1-json-no-image", V1, {"json": {"mode": "auto"}}, 400,
     "exactly one of 'image_b64' and 'pixels'"),
    ("v1-json-unknown-key", V1, {"json": {"image": "x"}}, 400, "image: Extra inputs"),
    ("v1-pixels-shape", V1, {"json": {"pixels": np.zeros((27, 28)).tolist()}}, 400,
     "pixels have shape [1, 27, 28], the model takes [28, 28]"),
    ("v1-pixels-nan", V1, {"content": json.dumps({"pixels": np.full((28, 28), np.nan).tolist()}),
                           "headers": {"Content-Type": "application/json"}}, 400,
     "contains 784 NaN"),
    ("v1-pixels-range", V1, {"json": {"pixels": np.full((28, 28), 255.0).tolist()}}, 400,
     "values outside [0, 1] (min 255, max 255)"),
    ("v1-pixels-strings", V1, {"json": {"pixels": [["a"] * 28] * 28}}, 400,
     "must be a (nested) list of numbers"),
    ("v1-bad-mode", V1, {"content": PNG, "headers": {"Content-Type": "image/png"},
                         "params": {"mode": "turbo"}}, 400, "mode must be one of auto, clean, robust"),
    ("v1-bad-top-k", V1, {"content": PNG, "headers": {"Content-Type": "image/png"},
                          "params": {"top_k": "0"}}, 400, "top_k"),
    ("v1-multipart-no-file", V1, {"data": {"mode": "auto"}, "files": {"other": ("x.txt", b"x")}},
     400, "field named 'file'"),
    # --- v2 --------------------------------------------------------------------------------
    ("v2-bad-json", V2, {"content": b"{\"inputs\": [", "headers": {"Content-Type": "application/json"}},
     400, "not valid JSON"),
    ("v2-no-inputs", V2, {"json": {"outputs": []}}, 400, "non-empty 'inputs' list"),
    ("v2-unknown-input", V2, {"json": _v2(GOOD, _tensor([0.0], (1,), name="extra"))}, 400,
     "unknown input 'extra'"),
    ("v2-missing-image", V2, {"json": _v2(_tensor([0.0], (1,), name="mix_override"))}, 400,
     "input 'image' is required"),
    ("v2-datatype", V2, {"json": _v2(_tensor(datatype="FP64"))}, 400,
     "input 'image' has datatype FP64, the model takes FP32"),
    ("v2-unknown-datatype", V2, {"json": _v2(_tensor(datatype="FLOAT"))}, 400,
     "unknown datatype 'FLOAT'"),
    ("v2-shape", V2, {"json": _v2(_tensor([0.0] * 27 * 28, (1, 1, 27, 28)))}, 400,
     "input 'image' has shape [1, 1, 27, 28], the model takes [N, 1, 28, 28]"),
    ("v2-count", V2, {"json": _v2(_tensor([0.0] * 10))}, 400,
     "'data' has 10 values but shape [1, 1, 28, 28] needs 784"),
    ("v2-nan", V2, {"content": json.dumps(_v2(_tensor([float("nan")] * 784))),
                    "headers": {"Content-Type": "application/json"}}, 400, "contains 784 NaN"),
    ("v2-inf", V2, {"content": json.dumps(_v2(_tensor([float("inf")] + [0.0] * 783))),
                    "headers": {"Content-Type": "application/json"}}, 400, "1 infinite value"),
    ("v2-range", V2, {"json": _v2(_tensor([-0.5] + [0.0] * 783))}, 400,
     "values outside [0, 1] (min -0.5, max 0)"),
    ("v2-batch-too-large", V2, {"json": _v2(_tensor([0.0] * 784 * (MAX_BATCH + 1),
                                                    (MAX_BATCH + 1, 1, 28, 28)))}, 413,
     f"batch of {MAX_BATCH + 1} inputs, above the limit of {MAX_BATCH}"),
    ("v2-empty-batch", V2, {"json": _v2(_tensor([], (0, 1, 28, 28)))}, 400, "empty batch"),
    ("v2-mix-range", V2, {"json": _v2(GOOD, _tensor([2.0], (1,), name="mix_override"))}, 400,
     "input 'mix_override' has values above 1"),
    ("v2-mix-shape", V2, {"json": _v2(GOOD, _tensor([0.0, 0.0], (2,), name="mix_override"))}, 400,
     "input 'mix_override' has shape [2], expected [1]"),
    ("v2-unknown-output", V2, {"json": _v2(GOOD, outputs=[{"name": "scores"}])}, 400,
     "unknown output 'scores'"),
    ("v2-classification-p-adv", V2, {"json": _v2(GOOD, outputs=[
        {"name": "p_adv", "parameters": {"classification": 2}}])}, 400,
     "classification is only available"),
    ("v2-shared-memory", V2, {"json": _v2({**GOOD, "parameters": {"shared_memory_region": "r"}})},
     400, "shared memory is not supported"),
    ("v2-binary-size", V2, {"content": json.dumps(_v2({"name": "image", "datatype": "FP32",
                                                       "shape": [1, 1, 28, 28],
                                                       "parameters": {"binary_data_size": 100}})
                                                  ).encode() + b"\0" * 100,
                            "headers": {HEADER_LENGTH: "9999"}}, 400,
     "Inference-Header-Content-Length is 9999 but the body has"),
    ("v2-binary-mismatch", V2, {"content": (lambda h: h + b"\0" * 100)(json.dumps(_v2(
        {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
         "parameters": {"binary_data_size": 100}})).encode()),
        "headers": {HEADER_LENGTH: str(len(json.dumps(_v2(
            {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
             "parameters": {"binary_data_size": 100}})).encode()))}}, 400,
     "binary_data_size is 100 bytes but shape [1, 1, 28, 28] of FP32 needs 3136"),
    ("v2-binary-trailing", V2, {"content": json.dumps(_v2(GOOD)).encode() + b"junk",
                                "headers": {HEADER_LENGTH: str(len(json.dumps(_v2(GOOD))))}}, 400,
     "4 bytes of binary data after the JSON header are not claimed"),
    ("v2-content-encoding", V2, {"content": b"x", "headers": {"Content-Encoding": "br"}}, 415,
     "Content-Encoding 'br' not supported"),
    ("v2-gzip-bomb", V2, {"content": gzip.compress(b" " * (MAX_BODY * 5)),
                          "headers": {"Content-Encoding": "gzip"}}, 413,
     "decompressed body exceeds the limit"),
    ("v2-body-too-large", V2, {"content": b" " * (MAX_BODY + 1)}, 413, "AWNET_MAX_BODY_BYTES"),
    # --- unknown models ----------------------------------------------------------------------
    ("v2-unknown-model", "/v2/models/nope/infer", {"json": _v2(GOOD)}, 404,
     "unknown model 'nope' (available: awnet-fake)"),
    ("v2-unknown-version", f"/v2/models/{FAKE_MODEL}/versions/7/infer", {"json": _v2(GOOD)}, 404,
     "model 'awnet-fake' has no version '7' (versions: 1)"),
    ("v1-unknown-model", "/v1/models/nope/classify", {"content": PNG}, 404, "unknown model 'nope'"),
]


def _ok(client) -> None:
    r = client.post(V1, content=PNG, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    r = client.post(V2, json=_v2(GOOD))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path,kwargs,status,fragment",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_then_service_still_answers(client, path, kwargs, status, fragment):
    r = client.post(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert fragment in body["error"], body["error"]
    assert r.headers.get("x-request-id")
    _ok(client)


def test_metadata_unknown_model_is_404(client):
    for path in ("/v2/models/nope", "/v2/models/nope/ready", f"/v2/models/{FAKE_MODEL}/versions/9",
                 "/v1/models/nope"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.json(), path


def test_unknown_route_and_method_use_error_shape(client):
    r = client.get("/v3/whatever")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    r = client.get(V2)
    assert r.status_code == 405 and "error" in r.json()


def test_refusals_are_counted_by_reason(client):
    before = scrape(client)
    client.post(V2, json=_v2(_tensor(datatype="FP64")))
    client.post(V2, json=_v2(_tensor([0.0] * 784 * 9, (9, 1, 28, 28))))
    after = scrape(client)
    labels = {"model": FAKE_MODEL, "version": "1"}
    for reason in ("bad_input", "too_large"):
        delta = (metric(after, "awnet_refused_requests_total", reason=reason, **labels)
                 - metric(before, "awnet_refused_requests_total", reason=reason, **labels))
        assert delta == 1, reason
    delta = (metric(after, "awnet_requests_total", status="400", **labels)
             - metric(before, "awnet_requests_total", status="400", **labels))
    assert delta == 1


def test_base64_of_non_image_is_415(client):
    r = client.post(V1, json={"image_b64": base64.b64encode(b"plain text").decode()})
    assert r.status_code == 415
    _ok(client)
