"""The four defects of issue 10, each pinned by a test that failed before the fix.

1. A client that disconnects mid-request was an unhandled ERROR and a counted 500; it is a
   499 ("client closed request"), logged at INFO, outside the 5xx share.
2. Deeply nested JSON (``[[[[...]]]]``) was a 500 (RecursionError) on ``/v2/.../infer`` and
   ``/v1/.../classify``; it is a 400 with a clear message.
3. The OpenAPI document did not describe the infer and classify bodies; it declares the
   KServe v2 request and response (binary extension included), the classify bodies and the
   error bodies (schemathesis checks the whole document: test_reliability_schema.py).
4. ``/docs`` loaded Swagger UI from a CDN (blank offline); every asset is served locally.
"""

from __future__ import annotations

import logging
import re
import socket
import time

import pytest

from tests.support.fake_model import FAKE_MODEL
from tests.support.servers import app_client, start_server
from tests.support.v2client import metric, scrape

V1 = f"/v1/models/{FAKE_MODEL}/classify"
V2 = f"/v2/models/{FAKE_MODEL}/infer"


@pytest.fixture(scope="module")
def client(repository):
    with app_client(repository) as c:
        yield c


# --- 1. client disconnect ------------------------------------------------------------------------
def _send_and_vanish(port: int, path: str, declared: int, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode() + sent
        )
        time.sleep(0.2)  # the app is now waiting for the rest of the body


def test_client_disconnect_is_499_at_info_not_a_server_error(repository, caplog):
    caplog.set_level(logging.INFO)
    with start_server(repository) as server:
        for path in (V2, V1):
            _send_and_vanish(server.port, path, 100_000, b'{"inputs": [')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            samples = scrape(server.url)
            if metric(samples, "awnet_requests_total", status="499") >= 2:
                break
            time.sleep(0.05)
        assert metric(samples, "awnet_requests_total", status="499") == 2, samples
        five_xx = sum(v for (name, labels), v in samples.items()
                      if name == "awnet_requests_total" and dict(labels)["status"].startswith("5"))
        assert five_xx == 0
        r = server.client().get("/v2/health/ready")  # and the server is fine
        assert r.status_code == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    closed = [r for r in caplog.records if "client closed" in r.getMessage()]
    assert len(closed) == 2 and all(r.levelno == logging.INFO for r in closed)
    access = [r for r in caplog.records if r.name == "service.access"
              and getattr(r, "status", None) == 499]
    assert len(access) == 2


# --- 2. deeply nested JSON -----------------------------------------------------------------------
def _nested(depth: int, leaf: str = "0.5") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize("depth", [5_000, 100_000])  # 100,000: parsed in a worker thread
@pytest.mark.parametrize("path,body", [
    (V2, lambda d: '{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], '
                   f'"data": {_nested(d)}}}]}}'),
    (V2, _nested),
    (V2, lambda d: '{"inputs": [], "parameters": ' + '{"a": ' * d + "1" + "}" * d + "}"),
    (V1, lambda d: '{"pixels": ' + _nested(d) + "}"),
    (V1, _nested),
], ids=["v2-data", "v2-body", "v2-parameters", "v1-pixels", "v1-body"])
def test_deeply_nested_json_is_400(client, path, body, depth):
    r = client.post(path, content=body(depth), headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "nested too deeply" in r.json()["error"]


def test_moderately_nested_json_is_a_plain_400(client):
    # Below the parser's limit but deeper than a tensor can be: numpy's 64 dimensions.
    body = '{"pixels": ' + _nested(200) + "}"
    r = client.post(V1, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "list of numbers" in r.json()["error"]


# --- 3. the OpenAPI document declares the bodies ----------------------------------------------------
def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_openapi_declares_v2_inference_bodies(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        op = spec["paths"][path]["post"]
        content = op["requestBody"]["content"]
        request = _resolve(spec, content["application/json"]["schema"])
        assert request["required"] == ["inputs"]
        assert {"id", "parameters", "inputs", "outputs"} <= set(request["properties"])
        assert "Inference-Header-Content-Length" in content["application/octet-stream"]["schema"][
            "description"]
        ok = op["responses"]["200"]["content"]
        response = _resolve(spec, ok["application/json"]["schema"])
        assert {"model_name", "model_version", "outputs"} <= set(response["required"])
        assert "application/octet-stream" in ok
        assert "Inference-Header-Content-Length" in op["responses"]["200"]["headers"]
    # The served model's input, exactly: [N, 1, 28, 28], values in [0, 1], N <= the batch limit.
    image = spec["components"]["schemas"]["InferenceRequest"]["properties"]["inputs"]["anyOf"][0][
        "prefixItems"][0]
    dims = image["properties"]["shape"]["prefixItems"]
    assert [d.get("const") for d in dims[1:]] == [1, 28, 28]
    assert dims[0]["minimum"] == 1 and dims[0]["maximum"] == 256
    flat = image["properties"]["data"]["oneOf"][0]
    assert flat["items"] == {"type": "number", "minimum": 0.0, "maximum": 1.0}


def test_openapi_declares_v1_bodies_and_error_bodies(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/models/{name}/classify", "/v1/models/{name}/versions/{version}/classify"):
        op = spec["paths"][path]["post"]
        content = op["requestBody"]["content"]
        assert {"multipart/form-data", "application/json", "image/png", "image/jpeg"} <= set(content)
        body = _resolve(spec, content["application/json"]["schema"])
        assert body["additionalProperties"] is False and len(body["oneOf"]) == 2
        assert content["multipart/form-data"]["schema"]["required"] == ["file"]
        ok = _resolve(spec, op["responses"]["200"]["content"]["application/json"]["schema"])
        assert {"class", "p_adv", "verdict"} <= set(ok["properties"])
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert "422" not in op["responses"], (method, path)  # never sent: 400 it is
            for status, resp in op["responses"].items():
                if status[0] in "45":
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
    error = spec["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]


def test_openapi_bodies_match_real_requests(client):
    """The declared JSON schemas accept what the server accepts, and refuse what it refuses."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    spec = client.get("/openapi.json").json()

    def validator(name):
        schema = {**spec["components"]["schemas"][name],
                  "$schema": "https://json-schema.org/draft/2020-12/schema"}
        return jsonschema_rs.validator_for(schema)

    infer, classify = validator("InferenceRequest"), validator("ClassifyRequest")
    good = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                        "data": [0.5] * 784}]}
    bad = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                       "data": [True] * 784}]}
    assert infer.is_valid(good) and not infer.is_valid(bad)
    assert client.post(V2, json=good).status_code == 200
    assert client.post(V2, json=bad).status_code == 400
    good = {"pixels": [[0.25] * 28] * 28, "mode": "clean"}
    bad = {"pixels": [[0.25] * 28] * 28, "image_b64": "aGVsbG8="}
    assert classify.is_valid(good) and not classify.is_valid(bad)
    assert client.post(V1, json=good).status_code == 200
    assert client.post(V1, json=bad).status_code == 400


# --- 4. /docs offline ------------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_server(client, page):
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", r.text)
    assert urls, r.text
    external = [u for u in urls if re.match(r"^(https?:)?//", u)]
    assert not external, external  # nothing from a CDN
    assets = [u for u in urls if u.startswith("/docs-static/")]
    assert assets, urls
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "/openapi.json" in urls or "'/openapi.json'" in r.text or '"/openapi.json"' in r.text
