"""A small client of the service's HTTP API: KServe v2 tensors in and out, and /metrics.

Every function takes a ``target``: either a base URL (``http://127.0.0.1:<port>`` of a real
server) or an ``httpx.Client`` with its ``base_url`` set - which includes FastAPI's
``TestClient`` (no socket) and ``Server.client()``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

HEADER_LENGTH = "Inference-Header-Content-Length"
ALL_OUTPUTS = ("logits", "p_adv", "mix", "probabilities", "adversarial")
Target = str | httpx.Client
Samples = dict[tuple[str, frozenset], float]


def request(
    target: Target, method: str, path: str, *, timeout: float = 30.0, **kw: Any
) -> httpx.Response:
    """``method path`` against a base URL or a client (a TestClient takes no timeout)."""
    if isinstance(target, str):
        return httpx.request(method, target + path, timeout=timeout, **kw)
    if getattr(target, "app", None) is None:  # a socket client; TestClient has its .app
        kw["timeout"] = timeout
    return target.request(method, path, **kw)


def infer_path(model: str, version: str | None = None) -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"


def json_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """A v2 input tensor with its values in JSON (``data``)."""
    array = np.asarray(array, dtype=np.float32)
    return {
        "name": name,
        "datatype": "FP32",
        "shape": list(array.shape),
        "data": array.ravel().tolist(),
    }


def infer_json(
    target: Target,
    model: str,
    images: np.ndarray,
    mix_override: np.ndarray | None = None,
    *,
    version: str | None = None,
    timeout: float = 30.0,
) -> httpx.Response:
    """A JSON v2 request (the answer as it comes: status and body are the caller's)."""
    inputs = [json_tensor("image", images)]
    if mix_override is not None:
        inputs.append(json_tensor("mix_override", mix_override))
    return request(
        target, "POST", infer_path(model, version), json={"inputs": inputs}, timeout=timeout
    )


def post_tensors(
    target: Target,
    model: str,
    images: np.ndarray,
    mix_override: np.ndarray | None = None,
    *,
    version: str | None = None,
    binary: bool = True,
    outputs: tuple[str, ...] = ALL_OUTPUTS,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> dict[str, np.ndarray]:
    """Send float32 ``images`` [N, C, H, W] (and optionally ``mix_override`` [N]) to
    ``/v2/models/{model}[/versions/{v}]/infer``; return the outputs as numpy arrays.

    Raises ``httpx.HTTPStatusError`` on a non-200 answer.
    """
    images = np.ascontiguousarray(images, dtype="<f4")
    tensors = [("image", images)]
    if mix_override is not None:
        tensors.append(("mix_override", np.ascontiguousarray(mix_override, dtype="<f4")))
    req: dict[str, Any] = {
        "inputs": [],
        "outputs": [{"name": n, "parameters": {"binary_data": binary}} for n in outputs],
    }
    blobs = []
    for name, arr in tensors:
        entry: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(arr.shape)}
        if binary:
            blob = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.ravel().tolist()
        req["inputs"].append(entry)
    head = json.dumps(req).encode()
    hdrs = dict(headers or {})
    if binary:
        hdrs[HEADER_LENGTH] = str(len(head))
        hdrs["Content-Type"] = "application/octet-stream"
    else:
        hdrs["Content-Type"] = "application/json"
    r = request(
        target,
        "POST",
        infer_path(model, version),
        content=head + b"".join(blobs),
        headers=hdrs,
        timeout=timeout,
    )
    r.raise_for_status()
    return decode_v2_response(r)


def decode_v2_response(r: httpx.Response) -> dict[str, np.ndarray]:
    """A v2 answer (JSON, or JSON header + binary tensors) as {output name: numpy array}."""
    dtypes = {"FP32": "<f4", "BOOL": "?", "INT64": "<i8", "FP64": "<f8"}
    length = r.headers.get(HEADER_LENGTH)
    body = r.content
    head = json.loads(body[: int(length)] if length else body)
    offset = int(length) if length else 0
    result: dict[str, np.ndarray] = {}
    for out in head["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = body[offset : offset + size]
            offset += size
            if out["datatype"] == "BYTES":
                items, i = [], 0
                while i < len(raw):
                    n = int.from_bytes(raw[i : i + 4], "little")
                    items.append(raw[i + 4 : i + 4 + n])
                    i += 4 + n
                arr = np.array(items, dtype=object)
            else:
                arr = np.frombuffer(raw, dtype=dtypes[out["datatype"]])
        else:
            arr = np.array(
                out["data"], dtype=object if out["datatype"] == "BYTES" else dtypes[out["datatype"]]
            )
        result[out["name"]] = arr.reshape(out["shape"])
    return result


# --- /metrics ------------------------------------------------------------------------------------
def metrics_text(target: Target) -> str:
    r = request(target, "GET", "/metrics", timeout=10)
    assert r.status_code == 200, f"/metrics answered {r.status_code}"
    return r.text


def families(target: Target) -> dict[str, Metric]:
    """``/metrics`` as {family name: prometheus_client ``Metric`` (its type and samples)}."""
    return {f.name: f for f in text_string_to_metric_families(metrics_text(target))}


def scrape(target: Target) -> Samples:
    """``/metrics`` as {(sample name, frozenset(labels.items())): value}."""
    samples: Samples = {}
    for family in families(target).values():
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))
