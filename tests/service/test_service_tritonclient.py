"""The official Triton client (tritonclient[http] from PyPI) against our /v2 API, unchanged.

tritonclient speaks HTTP over a socket: these tests run a real uvicorn server.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.fake_model import FAKE_MODEL
from tests.support.images import noisy_image, smooth_image
from tests.support.servers import start_server

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def server(repository):
    with start_server(repository) as srv:
        yield srv


@pytest.fixture(scope="module")
def triton(server):
    client = httpclient.InferenceServerClient(server.target)
    yield client
    client.close()


def _inputs(images: np.ndarray, mix: np.ndarray | None = None, binary: bool = True):
    image = httpclient.InferInput("image", list(images.shape), "FP32")
    image.set_data_from_numpy(images.astype(np.float32), binary_data=binary)
    inputs = [image]
    if mix is not None:
        m = httpclient.InferInput("mix_override", list(mix.shape), "FP32")
        m.set_data_from_numpy(mix.astype(np.float32), binary_data=binary)
        inputs.append(m)
    return inputs


def test_health_and_metadata(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(FAKE_MODEL)
    assert triton.is_model_ready(FAKE_MODEL, "1")
    assert not triton.is_model_ready("nope")
    server_meta = triton.get_server_metadata()
    assert server_meta["name"] == "awnet-serve"
    assert "binary_tensor_data" in server_meta["extensions"]
    meta = triton.get_model_metadata(FAKE_MODEL, "1")
    assert meta["name"] == FAKE_MODEL
    assert [i["name"] for i in meta["inputs"]] == ["image", "mix_override"]
    assert meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert "p_adv" in [o["name"] for o in meta["outputs"]]
    config = triton.get_model_config(FAKE_MODEL)
    assert config["name"] == FAKE_MODEL
    index = triton.get_model_repository_index()
    assert {"name": FAKE_MODEL, "version": "1", "state": "READY", "reason": ""} in index


def test_infer_binary_defaults(triton):
    """No outputs listed: tritonclient asks for every output in binary (binary_data_output)."""
    images = np.stack([smooth_image(), noisy_image()])
    result = triton.infer(FAKE_MODEL, _inputs(images))
    logits = result.as_numpy("logits")
    p_adv = result.as_numpy("p_adv")
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    assert p_adv[0] < 0.5 <= p_adv[1]
    np.testing.assert_allclose(result.as_numpy("mix"), p_adv)
    assert result.as_numpy("adversarial").tolist() == [False, True]
    response = result.get_response()
    assert response["model_name"] == FAKE_MODEL and response["model_version"] == "1"


def test_infer_requested_outputs_binary_and_json(triton):
    images = np.stack([noisy_image(seed=i) for i in range(3)])
    mix = np.array([0.0, 1.0, -1.0], np.float32)
    outputs = [
        httpclient.InferRequestedOutput("mix", binary_data=True),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
        httpclient.InferRequestedOutput("logits", binary_data=True, class_count=3),
    ]
    result = triton.infer(FAKE_MODEL, _inputs(images, mix, binary=False), outputs=outputs,
                          model_version="1", request_id="abc")
    assert result.get_response()["id"] == "abc"
    np.testing.assert_allclose(result.as_numpy("mix")[:2], [0.0, 1.0])
    probs = result.as_numpy("probabilities")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    top = result.as_numpy("logits")
    assert top.shape == (3, 3)
    value, index, label = top[0, 0].decode().split(":")
    assert int(index) == int(np.argmax(probs[0])) and label == index


def test_errors_come_back_as_exceptions(triton):
    bad = np.zeros((1, 1, 27, 28), np.float32)
    with pytest.raises(InferenceServerException) as info:
        triton.infer(FAKE_MODEL, _inputs(bad))
    assert info.value.status() == "400"
    assert "the model takes [N, 1, 28, 28]" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        triton.infer("nope", _inputs(np.zeros((1, 1, 28, 28), np.float32)))
    assert info.value.status() == "404"
    # and the service still answers
    assert triton.infer(FAKE_MODEL, _inputs(smooth_image()[None])).as_numpy("p_adv").shape == (1,)


def test_api_key_header_passes_through_tritonclient(repository):
    """With AWNET_API_KEY set, tritonclient's ``headers`` reach the service unchanged."""
    with start_server(repository, api_key="s3cret") as srv:
        triton = httpclient.InferenceServerClient(srv.target)
        inp = httpclient.InferInput("image", [1, 1, 28, 28], "FP32")
        inp.set_data_from_numpy(smooth_image()[None])
        with pytest.raises(InferenceServerException) as info:
            triton.infer(FAKE_MODEL, [inp])
        assert info.value.status() == "401"
        result = triton.infer(FAKE_MODEL, [inp], headers={"Authorization": "Bearer s3cret"})
        assert result.as_numpy("p_adv").shape == (1,)
        triton.close()
