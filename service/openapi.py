"""The OpenAPI document, told from what the server really accepts, and offline docs.

FastAPI writes the paths, parameters and answer models; this module adds what it cannot
know from the route signatures, because the routes read their bodies themselves:

* the request bodies: the KServe v2 inference request (JSON, and the binary tensor data
  extension as ``application/octet-stream``) and the v1 classify bodies (multipart, JSON,
  raw image files). Tensor shapes, value ranges and the batch limit come from the models
  being served, so the document says e.g. ``shape: [N, 1, 28, 28]`` with ``1 <= N <= 256``
  and values in ``[0, 1]`` - a schema-valid request is accepted, a schema-invalid one is
  refused. Two rules JSON Schema cannot state are in the descriptions: a tensor's value count
  is the product of its shape, and ``mix_override`` has one value per image;
* the error answers: every operation lists the statuses it can give, each with the
  ``{"error": "..."}`` body; FastAPI's 422 (never sent: malformed input is a 400) is removed;
* the bearer-token security scheme, when ``AWNET_API_KEY`` is set.

The document is rebuilt until every model version has loaded, then cached.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from this server
(``/docs-static/``, the files of the ``fastapi-offline`` package), never from a CDN, so they
work on machines without internet access.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from artifact_contract import INPUT_IMAGE, INPUT_MIX
from service.codec_v2 import HEADER_LENGTH
from service.inference import MODES
from service.inference import OUTPUTS as V2_OUTPUTS
from service.served_model import FLOAT32_MAX

if TYPE_CHECKING:
    from service.deps import AppState

log = logging.getLogger("service.openapi")

STATIC_URL = "/docs-static"
REF = "#/components/schemas/"
MEDIA_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")

# Operations whose bodies this module writes: (path, method) -> body builder name.
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
CLASSIFY_PATHS = ("/v1/models/{name}/classify", "/v1/models/{name}/versions/{version}/classify")
INDEX_PATH = "/v2/repository/index"


def _static_dir() -> str | None:
    """The Swagger UI / ReDoc files of the fastapi-offline package (the serve extra)."""
    try:
        folder = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    return str(folder) if folder.is_dir() else None


# --- request schemas ---------------------------------------------------------------------------
def _input_specs(state: AppState) -> list[tuple[int, int, int, float, float]]:
    """Distinct (C, H, W, low, high) of the model versions that have loaded."""
    specs = []
    for mv in state.repository.all_versions():
        art = mv.artifact
        if art is not None:
            spec = (*art.input_shape, *art.input_range)
            if spec not in specs:
                specs.append(spec)
    return specs


def _number(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number"}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def _array(items: Any, n: int | None = None, lo: int | None = None, hi: int | None = None,
           ) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "array", "items": items}
    if n is not None:
        lo = hi = n
    if lo is not None:
        out["minItems"] = lo
    if hi is not None:
        out["maxItems"] = hi
    return out


def _json_tensor_parameters() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Tensor parameters. In a JSON-only request no input may claim binary "
        "data (binary_data_size); shared memory is not supported.",
        "properties": {"binary_data_size": False},
        "patternProperties": {"^shared_memory": False},
    }


def _image_tensor(spec: tuple[int, int, int, float, float], n_max: int) -> dict[str, Any]:
    c, h, w, lo, hi = spec
    d = c * h * w
    value = _number(lo, hi)
    flat = _array(value, lo=d, hi=n_max * d)
    flat["description"] = f"Row-major values: N x {d} numbers (N = shape[0])."
    nested = _array(_array(_array(_array(value, w), h), c), lo=1, hi=n_max)
    nested["description"] = "The same values nested as the shape: [N][C][H][W]."
    return {
        "type": "object",
        "title": f"image [N, {c}, {h}, {w}]",
        "description": f"The images: FP32 [N, {c}, {h}, {w}], values in [{lo:g}, {hi:g}]; "
        f"the number of values is the product of the shape.",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"const": INPUT_IMAGE},
            "datatype": {"const": "FP32"},
            "shape": {
                "type": "array",
                "prefixItems": [
                    {"type": "integer", "minimum": 1, "maximum": n_max,
                     "description": "N, the batch (AWNET_MAX_REQUEST_BATCH at most)"},
                    {"type": "integer", "const": c},
                    {"type": "integer", "const": h},
                    {"type": "integer", "const": w},
                ],
                "items": False,
                "minItems": 4,
                "maxItems": 4,
            },
            "data": {"oneOf": [flat, nested]},
            "parameters": _json_tensor_parameters(),
        },
    }


def _mix_tensor(n_max: int) -> dict[str, Any]:
    return {
        "type": "object",
        "title": "mix_override [N]",
        "description": "Optional per-image branch mix: a value in [0, 1] forces the mix "
        "(0 = clean branch, 1 = robust branch), a negative value lets the router decide. "
        "One value per image (N as in the image's shape).",
        "required": ["name", "datatype", "shape", "data"],
        "properties": {
            "name": {"const": INPUT_MIX},
            "datatype": {"const": "FP32"},
            "shape": {"type": "array", "prefixItems": [
                {"type": "integer", "minimum": 1, "maximum": n_max}], "items": False,
                "minItems": 1, "maxItems": 1},
            "data": _array(_number(-FLOAT32_MAX, 1.0), lo=1, hi=n_max),
            "parameters": _json_tensor_parameters(),
        },
    }


def _request_output() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"enum": list(V2_OUTPUTS)},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data": {"type": "boolean", "description": "Send this output as "
                                    "binary data after the JSON (binary tensor extension)."},
                    "classification": {"type": "integer", "minimum": 0, "description":
                                       "Triton's classification extension: the top k classes "
                                       "as BYTES 'value:index:label' (logits, probabilities)."},
                },
                "patternProperties": {"^shared_memory": False},
            },
        },
        "anyOf": [
            {"properties": {"name": {"enum": ["logits", "probabilities"]}}},
            {"properties": {"parameters": {"properties": {"classification": {"const": 0}}}}},
        ],
    }


def inference_request_schema(state: AppState) -> dict[str, Any]:
    n_max = state.settings.max_request_batch
    specs = _input_specs(state)
    if specs:
        images = [_image_tensor(spec, n_max) for spec in specs]
        image: dict[str, Any] = images[0] if len(images) == 1 else {
            "oneOf": images, "description": "The served models take different image shapes: "
            "use the one of the model named in the path (its metadata lists it)."}
    else:  # nothing loaded (yet): the protocol's general form
        image = {"type": "object", "required": ["name", "datatype", "shape", "data"],
                 "properties": {"name": {"const": INPUT_IMAGE}, "datatype": {"const": "FP32"},
                                "shape": _array({"type": "integer", "minimum": 0}),
                                "data": {"type": "array"}}}
    mix = _mix_tensor(n_max)
    return {
        "type": "object",
        "title": "InferenceRequest",
        "description": "KServe v2 (Open Inference Protocol) inference request. Inputs: 'image' "
        "and, optionally, 'mix_override', in either order. Outputs: all five when 'outputs' is "
        "absent.",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "description": "Echoed in the response."},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data_output": {"type": "boolean", "description": "Send every "
                                           "output as binary data (binary tensor extension)."},
                    "mode": {"enum": list(MODES), "description": "Routing for every image "
                             "when there is no mix_override input: auto (the router), clean "
                             "(mix 0) or robust (mix 1)."},
                },
            },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "maxItems": 2,
                "anyOf": [
                    {"prefixItems": [image], "maxItems": 1},
                    {"prefixItems": [image, mix], "minItems": 2},
                    {"prefixItems": [mix, image], "minItems": 2},
                ],
            },
            "outputs": _array(_request_output()),
        },
    }


BINARY_REQUEST = (
    "The binary tensor data extension: the header "
    f"`{HEADER_LENGTH}: <n>` gives the length of a JSON InferenceRequest at the start of the "
    "body, in which each input has `parameters.binary_data_size` (its byte length) instead of "
    "`data`; the raw little-endian row-major tensors follow it, in the order of the inputs. "
    "Any content type is accepted; this one is the usual."
)
BINARY_RESPONSE = (
    "Sent when an output was asked as binary (`binary_data` / `binary_data_output`): the "
    f"`{HEADER_LENGTH}` response header gives the length of the JSON InferenceResponse at the "
    "start, whose binary outputs carry `parameters.binary_data_size`; their raw bytes follow."
)


_B64 = "[A-Za-z0-9+/]"
#: What the classify route takes as ``image_b64``: an optional ``data:...,`` prefix (cut at the
#: first comma), then non-empty base64 exactly as ``base64.b64decode(validate=True)`` reads it
#: (padded; after a full quad it ignores extra "="). ``(?![\s\S])`` ends the string: ``$`` would
#: also match before a final newline in Python's engines (jsonschema, hypothesis), which the
#: service refuses.
IMAGE_B64_PATTERN = (
    rf"^(?:data:[^,]*,)?(?:{_B64}{{4}})*(?:{_B64}{{4}}=*|{_B64}{{3}}=|{_B64}{{2}}==)(?![\s\S])"
)


def classify_json_schema(state: AppState) -> dict[str, Any]:
    forms: list[dict[str, Any]] = []
    for c, h, w, lo, hi in _input_specs(state) or [(1, 28, 28, 0.0, 1.0)]:
        chw = _array(_array(_array(_number(lo, hi), w), h), c)
        forms += [chw, _array(chw, 1)]
        if c == 1:
            forms.insert(0, _array(_array(_number(lo, hi), w), h))
    pixels = {"oneOf": forms, "description": "Pixel values, not resized: [H][W] (one-channel "
              "models), [C][H][W] or [1][C][H][W]."}
    null = {"type": "null"}
    return {
        "type": "object",
        "title": "ClassifyRequest",
        "description": "Exactly one of image_b64 and pixels.",
        "additionalProperties": False,
        "properties": {
            "image_b64": {"anyOf": [{"type": "string", "contentEncoding": "base64", "minLength": 4,
                                     "pattern": IMAGE_B64_PATTERN,
                                     "description": "An image file (PNG, JPEG, WebP or BMP) in "
                                     "base64 (standard alphabet, padded), optionally as a data: "
                                     "URL; not empty."}, null]},
            "pixels": {"anyOf": [pixels, null]},
            "mode": {"anyOf": [{"enum": list(MODES)}, null], "description": "Routing mode."},
            "top_k": {"anyOf": [{"type": "integer", "minimum": 1}, null],
                      "description": "How many classes to return."},
        },
        "oneOf": [
            {"required": ["image_b64"], "properties": {"image_b64": {"type": "string"},
                                                       "pixels": null}},
            {"required": ["pixels"], "properties": {"pixels": {"type": "array"},
                                                    "image_b64": null}},
        ],
    }


def _classify_body(state: AppState) -> dict[str, Any]:
    image_file = {"type": "string", "format": "binary", "minLength": 1}
    return {
        "required": True,
        "description": "An image file (PNG, JPEG, WebP or BMP; the first frame of an animated "
        "one), raw or in the multipart field 'file', or pixels in JSON. Images whose aspect "
        "ratio is within AWNET_RESIZE_TOLERANCE of the model's are resized to its input size.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": image_file,
                        "mode": {"enum": list(MODES)},
                        "top_k": {"type": "integer", "minimum": 1},
                    },
                },
                "encoding": {"file": {"contentType": ", ".join(MEDIA_IMAGE_TYPES)}},
            },
            "application/json": {"schema": {"$ref": REF + "ClassifyRequest"}},
            **{ct: {"schema": image_file} for ct in (*MEDIA_IMAGE_TYPES,
                                                     "application/octet-stream")},
        },
    }


def _infer_body() -> dict[str, Any]:
    return {
        "required": True,
        "description": "A KServe v2 inference request: JSON, or with the binary tensor data "
        "extension (application/octet-stream). Bodies may be gzip or deflate compressed "
        "(Content-Encoding).",
        "content": {
            "application/json": {"schema": {"$ref": REF + "InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                    "minLength": 1,
                                                    "description": BINARY_REQUEST}},
        },
    }


def _index_body() -> dict[str, Any]:
    return {
        "required": False,
        "content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"ready": {"type": "boolean", "description": "Only ready versions."}},
        }}},
    }


# --- the document -------------------------------------------------------------------------------
def build_openapi(app: FastAPI, state: AppState) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, summary=app.summary,
                      description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["InferenceRequest"] = inference_request_schema(state)
    schemas["ClassifyRequest"] = classify_json_schema(state)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    secured = state.settings.api_key is not None
    if secured:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "AWNET_API_KEY, as 'Authorization: Bearer <key>'."}}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if method == "post" and path in INFER_PATHS:
                op["requestBody"] = _infer_body()
                ok = responses["200"]
                ok["content"]["application/octet-stream"] = {
                    "schema": {"type": "string", "format": "binary",
                               "description": BINARY_RESPONSE}}
                ok["headers"] = {HEADER_LENGTH: {
                    "description": "Only with binary outputs: the JSON part's length.",
                    "schema": {"type": "integer", "minimum": 1}}}
            elif method == "post" and path in CLASSIFY_PATHS:
                op["requestBody"] = _classify_body(state)
            elif method == "post" and path == INDEX_PATH:
                op["requestBody"] = _index_body()
            inference = path in INFER_PATHS or path in CLASSIFY_PATHS
            if inference and secured:
                op["security"] = [{"bearer": []}]
            elif not secured:
                responses.pop("401", None)
            if "503" in responses and inference:
                responses["503"]["headers"] = {"Retry-After": {
                    "description": "With 'queue full': seconds to wait (AWNET_RETRY_AFTER_S).",
                    "schema": {"type": "integer", "minimum": 0}, "required": False}}
    return doc


def install_openapi(app: FastAPI, state: AppState) -> None:
    """``app.openapi()`` from ``build_openapi``; ``/docs`` and ``/redoc`` served offline."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build_openapi(app, state)
        if state.repository.all_loaded:
            app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    static = _static_dir()
    if static is None:
        log.warning("fastapi-offline is not installed: /docs and /redoc are off "
                    "(pip install -e '.[serve]'); /openapi.json is served")
        return
    app.mount(STATIC_URL, StaticFiles(directory=static), name="docs-static")
    oauth_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth_redirect}",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        )

    @app.get(oauth_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png", with_google_fonts=False,
        )
