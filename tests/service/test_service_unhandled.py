"""A bug in a route (an exception no handler maps) answers 500 with the JSON error body and
the request id, logs its traceback once, and the service goes on serving: on the inference
fast lane and on a route behind FastAPI's own stack alike (service/app.py ``ServiceApp``)."""

from __future__ import annotations

import logging

from service.dataplane import DataPlane
from tests.support.fake_model import FAKE_MODEL
from tests.support.images import smooth_image
from tests.support.servers import app_client

V2 = f"/v2/models/{FAKE_MODEL}/infer"
GOOD = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                    "data": smooth_image().ravel().tolist()}]}


def _boom(*_args, **_kwargs):
    raise RuntimeError("a bug")


def _boom_route() -> None:
    raise RuntimeError("a bug")


def test_unhandled_errors_answer_500_json_once_logged(repository, monkeypatch, caplog):
    with app_client(repository) as c:
        c.app.add_api_route("/boom", _boom_route, methods=["GET"])  # behind FastAPI's stack
        with monkeypatch.context() as m, caplog.at_level(logging.INFO):
            m.setattr(DataPlane, "infer", _boom)  # the fast lane's route
            answers = {"lane": c.post(V2, json=GOOD, headers={"X-Request-ID": "lane-1"}),
                       "framework": c.get("/boom", headers={"X-Request-ID": "fw-1"})}
        after = c.post(V2, json=GOOD)
        text = c.get("/metrics").text
    for name, r in answers.items():
        assert r.status_code == 500, name
        assert r.json() == {"error": "internal server error"}, name
        assert r.headers["x-request-id"] in ("lane-1", "fw-1")
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == 2 and all(r.exc_info for r in logged)  # once per request
    assert after.status_code == 200  # still serving
    assert 'status="500"' in text
