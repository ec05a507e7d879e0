"""Success paths of every endpoint: FastAPI's TestClient around create_app(settings), serving
the fake model (no socket; tritonclient against a real server: test_service_tritonclient.py)."""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import onnxruntime as ort
import pytest

from tests.support.fake_model import FAKE_MODEL
from tests.support.images import noisy_image, smooth_image, to_png
from tests.support.servers import app_client
from tests.support.v2client import HEADER_LENGTH, decode_v2_response, post_tensors


@pytest.fixture(scope="module")
def client(repository):
    with app_client(repository, max_queue_delay_ms=1.0) as c:
        yield c


@pytest.fixture(scope="module")
def reference(repository):
    """The fake model run directly with ONNX Runtime, to compare the service's answers."""
    sess = ort.InferenceSession(str(repository / FAKE_MODEL / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])

    def run(images: np.ndarray, mix: np.ndarray | None = None) -> dict[str, np.ndarray]:
        n = images.shape[0]
        mix = np.full((n,), -1.0, np.float32) if mix is None else mix.astype(np.float32)
        logits, p_adv, mix_out = sess.run(None, {"image": images.astype(np.float32),
                                                 "mix_override": mix})
        return {"logits": logits, "p_adv": p_adv, "mix": mix_out}

    return run


# --- server-level ------------------------------------------------------------------------------
def test_server_metadata_and_health(client):
    r = client.get("/v2")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "awnet-serve"
    assert "binary_tensor_data" in body["extensions"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200


def test_request_id_is_returned_and_echoed(client):
    r = client.get("/v2/health/live")
    assert len(r.headers["x-request-id"]) >= 16
    r = client.get("/v2/health/live", headers={"X-Request-ID": "my-id-123"})
    assert r.headers["x-request-id"] == "my-id-123"
    r = client.get("/v2/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


def test_docs_and_openapi(client):
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/models", "/v1/models/{name}/classify", "/v2/models/{name}/infer",
                 "/v2/health/ready", "/v2/repository/index", "/metrics"):
        assert path in paths, path
    body = paths["/v1/models/{name}/classify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png"} <= set(body)


def test_metrics_endpoint(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "awnet_model_ready{" in r.text


# --- v1 ------------------------------------------------------------------------------------------
def test_v1_list_models(client):
    models = client.get("/v1/models").json()["models"]
    (m,) = [m for m in models if m["name"] == FAKE_MODEL]
    assert m["version"] == "1" and m["state"] == "READY" and m["reason"] is None
    assert m["provider"] == "CPUExecutionProvider"
    assert m["manifest"]["kind"] == "awnet"
    assert m["threshold"] == 0.5 and m["threshold_source"] == "manifest"
    one = client.get(f"/v1/models/{FAKE_MODEL}").json()
    assert one["versions"][0]["version"] == "1"


def _check_classify(body, *, k=5):
    assert body["model"] == FAKE_MODEL and body["version"] == "1"
    assert body["class"] == str(body["class_index"])
    assert len(body["top_k"]) == k
    probs = [e["probability"] for e in body["top_k"]]
    assert probs == sorted(probs, reverse=True)
    assert body["top_k"][0]["class"] == body["class"]
    assert 0.0 <= body["p_adv"] <= 1.0
    assert body["verdict"] == ("adversarial" if body["p_adv"] >= body["threshold"] else "clean")


def test_v1_classify_multipart(client, reference):
    img = smooth_image()
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify",
                    files={"file": ("digit.png", to_png(img), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    _check_classify(body)
    assert body["verdict"] == "clean" and body["mode"] == "auto"
    assert body["mix"] == pytest.approx(body["p_adv"])
    # Same answer as ONNX Runtime on the same 8-bit pixels.
    pixels = np.round(img * 255) / 255
    ref = reference(pixels[None])
    assert body["class_index"] == int(np.argmax(ref["logits"][0]))
    assert body["p_adv"] == pytest.approx(float(ref["p_adv"][0]), abs=1e-5)


def test_v1_classify_multipart_fields(client):
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify",
                    files={"file": ("digit.png", to_png(noisy_image()), "image/png")},
                    data={"mode": "clean", "top_k": "3"})
    assert r.status_code == 200, r.text
    body = r.json()
    _check_classify(body, k=3)
    assert body["mode"] == "clean" and body["mix"] == 0.0
    assert body["verdict"] == "adversarial"  # the verdict is the router's, whatever the mode


@pytest.mark.parametrize("fmt,ctype", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                       ("WEBP", "image/webp"), ("BMP", "image/bmp")])
def test_v1_classify_raw_formats(client, fmt, ctype):
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify?mode=robust&top_k=2",
                    content=to_png(smooth_image(), fmt=fmt), headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    body = r.json()
    _check_classify(body, k=2)
    assert body["mode"] == "robust" and body["mix"] == 1.0


def test_v1_classify_noisy_is_adversarial(client):
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify", content=to_png(noisy_image()),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["p_adv"] > 0.9 and body["verdict"] == "adversarial"


def test_v1_classify_json_base64(client):
    b64 = base64.b64encode(to_png(smooth_image())).decode()
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify",
                    json={"image_b64": b64, "top_k": 10})
    assert r.status_code == 200, r.text
    _check_classify(r.json(), k=10)
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify",
                    json={"image_b64": "data:image/png;base64," + b64, "mode": "clean"})
    assert r.status_code == 200 and r.json()["mix"] == 0.0


@pytest.mark.parametrize("shape", ["hw", "chw", "nchw"])
def test_v1_classify_json_pixels(client, reference, shape):
    img = smooth_image(seed=3)
    pixels = {"hw": img[0], "chw": img, "nchw": img[None]}[shape]
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify", json={"pixels": pixels.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    ref = reference(img[None])
    assert body["class_index"] == int(np.argmax(ref["logits"][0]))
    assert body["p_adv"] == pytest.approx(float(ref["p_adv"][0]), abs=1e-6)


def test_v1_classify_version_path_and_resize(client):
    # 56x56 (same aspect ratio): resized to 28x28 by the documented rule
    png = to_png(smooth_image(), size=(56, 56))
    r = client.post(f"/v1/models/{FAKE_MODEL}/versions/1/classify", content=png,
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "clean"
    # 30x28: aspect ratio within 10 %: resized too
    png = to_png(smooth_image(), size=(30, 28))
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify", content=png,
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text


def test_v1_classify_rgb_and_alpha_images_are_converted(client):
    from io import BytesIO

    from PIL import Image

    rgb = np.repeat(smooth_image(), 3, axis=0)
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify", content=to_png(rgb),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    grey = client.post(f"/v1/models/{FAKE_MODEL}/classify", content=to_png(smooth_image()),
                       headers={"Content-Type": "image/png"}).json()
    assert r.json()["p_adv"] == pytest.approx(grey["p_adv"], abs=1e-3)
    rgba = Image.new("RGBA", (28, 28), (255, 255, 255, 0))  # fully transparent -> black
    buf = BytesIO()
    rgba.save(buf, format="PNG")
    r = client.post(f"/v1/models/{FAKE_MODEL}/classify", content=buf.getvalue(),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text


# --- v2 ------------------------------------------------------------------------------------------
def test_v2_model_metadata(client):
    for path in (f"/v2/models/{FAKE_MODEL}", f"/v2/models/{FAKE_MODEL}/versions/1"):
        meta = client.get(path).json()
        assert meta["name"] == FAKE_MODEL and meta["versions"] == ["1"]
        assert meta["platform"] == "onnxruntime_onnx"
        assert meta["state"] == "READY" and meta["provider"] == "CPUExecutionProvider"
        assert meta["inputs"][0] == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
        assert meta["inputs"][1]["name"] == "mix_override" and meta["inputs"][1]["optional"]
        names = [o["name"] for o in meta["outputs"]]
        assert names == ["logits", "p_adv", "mix", "probabilities", "adversarial"]


def test_v2_model_ready_and_config(client):
    for path in (f"/v2/models/{FAKE_MODEL}/ready", f"/v2/models/{FAKE_MODEL}/versions/1/ready"):
        r = client.get(path)
        assert r.status_code == 200 and r.json()["ready"] is True
    cfg = client.get(f"/v2/models/{FAKE_MODEL}/config").json()
    assert cfg["input"][0]["dims"] == [1, 28, 28]
    assert client.get(f"/v2/models/{FAKE_MODEL}/versions/1/config").status_code == 200


def test_v2_repository_index(client):
    rows = client.post("/v2/repository/index").json()
    assert {"name": FAKE_MODEL, "version": "1", "state": "READY", "reason": ""} in rows
    rows = client.post("/v2/repository/index", json={"ready": True}).json()
    assert all(r["state"] == "READY" for r in rows)


def test_v2_infer_json(client, reference):
    images = np.stack([smooth_image(seed=1), noisy_image(seed=1)])
    req = {"id": "req-1", "inputs": [{"name": "image", "datatype": "FP32",
                                      "shape": list(images.shape),
                                      "data": images.tolist()}]}  # nested data is allowed
    r = client.post(f"/v2/models/{FAKE_MODEL}/infer", json=req)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["model_name"] == FAKE_MODEL and body["model_version"] == "1"
    assert body["id"] == "req-1" and body["parameters"]["threshold"] == 0.5
    out = {o["name"]: o for o in body["outputs"]}
    ref = reference(images)
    np.testing.assert_allclose(np.array(out["logits"]["data"]).reshape(2, 10), ref["logits"],
                               rtol=1e-5, atol=1e-6)
    assert out["logits"]["shape"] == [2, 10]
    assert out["adversarial"]["datatype"] == "BOOL"
    assert out["adversarial"]["data"] == [False, True]
    np.testing.assert_allclose(out["p_adv"]["data"], ref["p_adv"], rtol=1e-5)


def test_v2_infer_binary_with_mix_override(client, reference):
    images = np.stack([noisy_image(seed=i) for i in range(4)])
    mix = np.array([-1.0, 0.0, 1.0, 0.25], np.float32)
    out = post_tensors(client, FAKE_MODEL, images, mix, version="1")
    ref = reference(images, mix)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["mix"], [ref["p_adv"][0], 0.0, 1.0, 0.25], rtol=1e-5)
    assert out["adversarial"].dtype == bool and out["adversarial"].all()
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_v2_infer_mode_parameter_and_selected_outputs(client):
    images = noisy_image()[None]
    req = {"parameters": {"mode": "clean"},
           "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                       "data": images.ravel().tolist()}],
           "outputs": [{"name": "mix"}, {"name": "probabilities", "parameters": {"classification": 3}}]}
    r = client.post(f"/v2/models/{FAKE_MODEL}/infer", json=req)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert set(out) == {"mix", "probabilities"}
    assert out["mix"]["data"] == [0.0]
    assert out["probabilities"]["datatype"] == "BYTES" and out["probabilities"]["shape"] == [1, 3]
    value, index, label = out["probabilities"]["data"][0].split(":")
    assert label == index and 0 < float(value) < 1


def test_v2_infer_binary_output_request_level_and_gzip(client):
    images = smooth_image()[None]
    blob = images.astype("<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                   "parameters": {"binary_data_size": len(blob)}}],
                       "parameters": {"binary_data_output": True}}).encode()
    r = client.post(f"/v2/models/{FAKE_MODEL}/infer",
                    content=gzip.compress(head + blob),
                    headers={HEADER_LENGTH: str(len(head)), "Content-Encoding": "gzip",
                             "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    out = decode_v2_response(r)
    assert out["logits"].shape == (1, 10) and out["adversarial"].tolist() == [False]


def test_v2_batch_of_many_requests_is_batched(client):
    """Concurrent requests are answered correctly (rows are not mixed up between them)."""
    from concurrent.futures import ThreadPoolExecutor

    images = [noisy_image(seed=i) if i % 2 else smooth_image(seed=i) for i in range(16)]

    def one(i):
        return post_tensors(client, FAKE_MODEL, images[i][None], outputs=("adversarial",))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert [bool(r["adversarial"][0]) for r in results] == [bool(i % 2) for i in range(16)]
