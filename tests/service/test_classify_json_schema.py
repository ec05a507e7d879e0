"""The classify JSON body's ``image_b64`` schema says what the service enforces (issue 38,
item 6): once the document took any string, so schemathesis' default checks found "" (and other
non-base64 text) schema-valid but answered 400. Now a string the document's schema accepts
reaches the image decoder, and one it refuses is a 400, under both kinds of validator a client
may use (Python's ``re``, where ``$`` also matches before a final newline, and jsonschema-rs)."""

from __future__ import annotations

import base64

import jsonschema
import pytest

from tests.support.fake_model import FAKE_MODEL
from tests.support.images import smooth_image, to_png
from tests.support.servers import app_client

V1 = f"/v1/models/{FAKE_MODEL}/classify"


def _unpadded_png_b64() -> str:
    """A PNG whose base64 has no padding, so that the "=" base64.b64decode ignores can follow it."""
    for seed in range(30):
        png = to_png(smooth_image(seed=seed))
        if len(png) % 3 == 0:
            return base64.b64encode(png).decode()
    raise AssertionError("no PNG of a length divisible by 3")


B64 = base64.b64encode(to_png(smooth_image())).decode()
FULL_QUADS = _unpadded_png_b64()
ACCEPTED = {
    "plain": B64,
    "data-url": "data:image/png;base64," + B64,
    "data-url-bare": "data:," + B64,
    "extra-padding-after-a-full-quad": FULL_QUADS + "==",
}
REFUSED = {
    "empty": "",
    "data-url-no-payload": "data:image/png;base64,",
    "trailing-newline": B64 + "\n",
    "leading-space": " " + B64,
    "space-inside": B64[:8] + " " + B64[8:],
    "cut-short": B64[:-1],
    "url-safe-alphabet": B64.replace("+", "-").replace("/", "_") if any(c in B64 for c in "+/") else "ab-_",
    "not-base64": "not base64!!",
    "data-no-comma": "data:" + B64,
    "padding-too-long": FULL_QUADS[:-1] + "==",
}


@pytest.fixture(scope="module")
def client(repository):
    with app_client(repository) as c:
        yield c


@pytest.fixture(scope="module")
def validators(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ClassifyRequest"]
    found = [jsonschema.Draft202012Validator(schema).is_valid]
    rs = pytest.importorskip("jsonschema_rs")
    found.append(rs.Draft202012Validator(schema).is_valid)
    return found


@pytest.mark.parametrize("value", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_schema_valid_image_b64_is_accepted(value: str, client, validators) -> None:
    body = {"image_b64": value}
    assert all(valid(body) for valid in validators)
    r = client.post(V1, json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_schema_invalid_image_b64_is_refused(value: str, client, validators) -> None:
    body = {"image_b64": value}
    assert not any(valid(body) for valid in validators)
    r = client.post(V1, json=body)
    assert r.status_code == 400, r.text
