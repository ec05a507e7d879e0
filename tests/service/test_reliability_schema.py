"""The OpenAPI document tells the truth: schemathesis against a real ``python -m service``.

``schemathesis run --checks all`` on every operation, the shipped model's name and version
as path parameters, at least 1,000 generated requests, and 0 failures: no 5xx, every answer
valid against the document (status, content type, headers, body), schema-valid requests
accepted, schema-invalid ones refused.

JSON Schema cannot say everything the server needs, and the document says the rest in words;
this file is also the schemathesis hooks module (``SCHEMATHESIS_HOOKS``) that gives the
generator those rules for the requests it means to be valid:

* a tensor's value count is the product of its shape, and ``mix_override`` has one value per
  image (the generated values are kept, the shape and count made to agree);
* a binary-extension body (``application/octet-stream`` on ``infer``) is a JSON header and
  raw tensors; an image is a real PNG, JPEG, WebP or BMP file (``image/bmp`` and
  ``application/octet-stream`` bodies and the multipart ``file`` on ``classify``, whose
  bytes schemathesis cannot know; in ``image_b64`` the document states the base64 itself,
  its length and alphabet, and the hook puts a real file's base64 after any ``data:`` prefix
  the generator drew).

Schema-invalid (negative) requests are never touched.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

IS_HOOKS = __name__ == "_schemathesis_hooks"  # loaded by schemathesis from this file's path
HEADER_LENGTH = "Inference-Header-Content-Length"

if not IS_HOOKS:
    from tests.support.paths import SHIPPED_MODEL, SHIPPED_VERSION
    from tests.support.servers import start_process


def _image_file(fmt: str, size: tuple[int, int] = (28, 28), seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


# --- hooks (only when schemathesis loads this file) ---------------------------------------------
if IS_HOOKS:
    import schemathesis

    D = 28 * 28  # the shipped model's image size (C x H x W); the schema says the same
    IMAGES = [_image_file(fmt, size, seed) for seed, (fmt, size) in enumerate(
        [("PNG", (28, 28)), ("JPEG", (28, 28)), ("BMP", (28, 28)), ("WEBP", (30, 30)),
         ("PNG", (280, 280)), ("BMP", (27, 28))])]

    def _count(shape: list[int]) -> int:
        return int(np.prod(shape)) if shape else 1

    def _fix_tensors(body: dict) -> None:
        """Make shapes and value counts agree (the rule JSON Schema cannot state)."""
        inputs = body.get("inputs") or []
        image = next((t for t in inputs if t.get("name") == "image"), None)
        if image is None:
            return
        data = image["data"]
        if data and isinstance(data[0], list):  # nested [N][C][H][W]
            n = len(data)
        else:
            n = max(1, len(data) // D)
            image["data"] = data[: n * D]
        image["shape"][0] = n
        for t in inputs:
            if t.get("name") == "mix_override":
                values = t["data"] or [-1.0]
                t["data"] = (values * n)[:n]
                t["shape"] = [n]

    def _binary_request(case) -> None:
        rng = np.random.default_rng(len(case.operation.path))
        n = int(rng.integers(1, 4))
        images = rng.uniform(0, 1, size=(n, 1, 28, 28)).astype("<f4")
        mix = rng.uniform(-1, 1, size=(n,)).astype("<f4")
        head = {"inputs": [
            {"name": "image", "datatype": "FP32", "shape": list(images.shape),
             "parameters": {"binary_data_size": images.nbytes}},
            {"name": "mix_override", "datatype": "FP32", "shape": [n],
             "parameters": {"binary_data_size": mix.nbytes}}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                        {"name": "p_adv"}]}
        raw = json.dumps(head).encode()
        case.body = raw + images.tobytes() + mix.tobytes()
        case.headers = {**(case.headers or {}), HEADER_LENGTH: str(len(raw))}

    @schemathesis.hook
    def map_case(context, case):
        meta = case.meta
        if meta is None or not meta.generation.mode.is_positive:
            return case
        path, media = case.operation.path, case.media_type
        if path.endswith("/infer"):
            if media == "application/json" and isinstance(case.body, dict):
                _fix_tensors(case.body)
            elif media == "application/octet-stream":
                _binary_request(case)
        elif path.endswith("/classify"):
            image = IMAGES[len(str(case.query)) % len(IMAGES)]
            if media in ("image/bmp", "application/octet-stream"):
                case.body = image
            elif media == "application/json" and isinstance(case.body, dict) and isinstance(
                    case.body.get("image_b64"), str):
                prefix, comma, _ = case.body["image_b64"].partition(",")
                data_url = prefix + comma if prefix.startswith("data:") and comma else ""
                case.body["image_b64"] = data_url + base64.b64encode(image).decode()
            elif media == "multipart/form-data" and isinstance(case.body, dict):
                case.body["file"] = image  # schemathesis' own samples include a GIF
        return case


# --- the test -----------------------------------------------------------------------------------
MIN_REQUESTS = 1000


@pytest.mark.slow
def test_schemathesis_all_checks_zero_failures(shipped_repository: Path, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'"path.name" = "{SHIPPED_MODEL}"\n'
        f'"path.version" = "{SHIPPED_VERSION}"\n'
    )
    env = {"AWNET_PROVIDERS": "cpu", "AWNET_INTRA_OP_THREADS": "1", "AWNET_INTER_OP_THREADS": "1",
           "AWNET_LOG_LEVEL": "WARNING"}
    with start_process(shipped_repository, env=env) as server:
        cmd = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config),
               "--no-color", "run", f"{server.url}/openapi.json", "--checks", "all",
               "--max-examples", "25", "--workers", "1", "--seed", "1",
               "--suppress-health-check", "all", "--request-timeout", "30",
               "--report", "junit", "--report-dir", str(tmp_path / "report")]
        st_env = {**os.environ, "SCHEMATHESIS_HOOKS": __file__,
                  "SCHEMATHESIS_TELEMETRY": "false", "HYPOTHESIS_STORAGE_DIRECTORY":
                  str(tmp_path / "hypothesis")}
        done = subprocess.run(cmd, cwd=tmp_path, env=st_env, capture_output=True, text=True,
                              timeout=1200)
        out = done.stdout + done.stderr
        server_log = server.logs()
    print(out[-6000:])
    summary = out[out.rfind("SUMMARY"):] if "SUMMARY" in out else out[-3000:]
    generated = re.search(r"(\d+) generated", summary)
    assert done.returncode == 0, f"schemathesis failed:\n{out[-12000:]}"
    assert "Tested: 17" in summary or re.search(r"Selected: (\d+)/\1", summary), summary
    assert generated and int(generated.group(1)) >= MIN_REQUESTS, summary
    assert "ERROR" not in server_log and "Traceback" not in server_log, server_log[-4000:]
