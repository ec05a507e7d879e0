"""The same service against the shipped model (models/repository/awnet-mnist/3).

Skipped while the model has not been exported yet (see the ``shipped_repository`` fixture).
API tests run through FastAPI's TestClient; tritonclient and ``python -m service`` need a
real socket. The clean-vs-PGD test is test_service_router_pgd.py.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests.support.images import smooth_image, to_png
from tests.support.paths import SHIPPED_MODEL, SHIPPED_VERSION_DIR
from tests.support.servers import app_client, start_process, start_server
from tests.support.v2client import metric, post_tensors, scrape


@pytest.fixture(scope="module")
def manifest(shipped_repository):
    return json.loads((SHIPPED_VERSION_DIR / "manifest.json").read_text())


@pytest.fixture(scope="module")
def client(shipped_repository):
    with app_client(shipped_repository) as c:
        yield c


def _shape(manifest) -> tuple[int, int, int]:
    c, h, w = manifest["input"]["shape"]
    return c, h, w


def test_shipped_model_is_ready_with_its_manifest(client, manifest):
    meta = client.get(f"/v2/models/{SHIPPED_MODEL}").json()
    assert meta["state"] == "READY", meta.get("reason")
    assert meta["inputs"][0]["shape"] == [-1, *manifest["input"]["shape"]]
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed[SHIPPED_MODEL]["manifest"]["onnx"]["sha256"] == manifest["onnx"]["sha256"]
    router = manifest.get("router")
    if router is not None:
        assert listed[SHIPPED_MODEL]["threshold"] == pytest.approx(router["threshold"])


def test_shipped_model_exports_its_evaluation_card_as_gauges(client, manifest):
    """What `evaluate` measured reaches Prometheus, so the dashboard can set the flagged rate
    against the share of fooled inputs the router was found to catch."""
    card = manifest["evaluation"]["robustness"]
    samples = scrape(client)
    labels = {"model": SHIPPED_MODEL, "version": SHIPPED_VERSION_DIR.name}
    acc = {**labels, "eps": f"{card['eps']:g}", "sanity": "passed" if card["sanity_passed"] else "failed"}
    assert metric(samples, "awnet_model_evaluated_accuracy", inputs="clean", **acc) == pytest.approx(card["clean_acc"])
    assert metric(samples, "awnet_model_evaluated_accuracy", inputs="worst_case", **acc) == pytest.approx(
        card["worst_case_acc"])
    for share, key in (("detected", "detected_share"), ("missed", "missed"), ("false_positive", "clean_fpr")):
        assert metric(samples, "awnet_router_evaluated_ratio", share=share, **labels) == pytest.approx(card[key])


def test_shipped_model_v2_infer(client, manifest):
    shape = _shape(manifest)
    k = len(manifest["class_names"])
    images = np.stack([smooth_image(shape, seed=i) for i in range(4)])
    out = post_tensors(client, SHIPPED_MODEL, images)
    assert out["logits"].shape == (4, k)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert ((out["p_adv"] >= 0) & (out["p_adv"] <= 1)).all()
    threshold = (manifest.get("router") or {}).get("threshold", 0.5)
    assert (out["adversarial"] == (out["p_adv"] >= threshold)).all()
    if manifest["kind"] == "static":
        assert (out["p_adv"] == 0).all()
    else:
        np.testing.assert_allclose(out["mix"], out["p_adv"], rtol=1e-6)
    forced = post_tensors(client, SHIPPED_MODEL, images, np.array([0, 1, 0, 1], np.float32))
    if manifest["kind"] != "static":
        np.testing.assert_allclose(forced["mix"], [0, 1, 0, 1])


def test_shipped_model_v1_classify(client, manifest):
    png = to_png(smooth_image(_shape(manifest)))
    for mode in ("auto", "clean", "robust"):
        r = client.post(f"/v1/models/{SHIPPED_MODEL}/classify", params={"mode": mode},
                        files={"file": ("x.png", png, "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["class"] in manifest["class_names"] and body["mode"] == mode


def test_shipped_model_tritonclient(shipped_repository, manifest):
    """tritonclient speaks HTTP over a socket: a real uvicorn server."""
    import tritonclient.http as httpclient

    with start_server(shipped_repository) as srv:
        client = httpclient.InferenceServerClient(srv.target)
        assert client.is_model_ready(SHIPPED_MODEL)
        images = np.stack([smooth_image(_shape(manifest), seed=i) for i in range(2)])
        inp = httpclient.InferInput("image", list(images.shape), "FP32")
        inp.set_data_from_numpy(images)
        result = client.infer(SHIPPED_MODEL, [inp])
        assert result.as_numpy("logits").shape == (2, len(manifest["class_names"]))
        client.close()


@pytest.mark.slow
def test_defaults_serve_the_shipped_model(shipped_repository):
    """``python -m service`` with no settings but the port serves the shipped model."""
    with start_process(None) as srv:
        r = httpx.get(f"{srv.url}/v2/models/{SHIPPED_MODEL}/ready")
        assert r.status_code == 200
