"""The simple API for people: classify one image, list models.

``POST /v1/models/{name}[/versions/{version}]/classify`` takes, by ``Content-Type``:

* ``multipart/form-data``: the image in the field ``file`` (or ``image``); optional fields
  ``mode`` and ``top_k``;
* ``image/png``, ``image/jpeg``, ``image/webp``, ``image/bmp`` or
  ``application/octet-stream``: the image file as the raw body;
* ``application/json``: ``{"image_b64": "<base64 image file>"}`` or
  ``{"pixels": [[...]]}`` (``[H, W]`` for one-channel models, ``[C, H, W]`` or
  ``[1, C, H, W]``, values in the model's input range), plus optional ``mode``, ``top_k``.

``mode`` (form field, JSON key or query parameter): ``auto`` (the router decides, default),
``clean`` (force the clean branch, mix 0) or ``robust`` (force the robust branch, mix 1).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from service.dataplane import parse_mode
from service.deps import get_state, lookup_model, read_body, require_api_key
from service.errors import BadInput, UnsupportedMediaType
from service.images import CONTENT_TYPES, check_pixels, decode_image, pixels_to_array
from service.repository import ModelVersion

router = APIRouter(prefix="/v1", tags=["v1: simple API"])

OFFLOAD_BYTES = 64 * 1024  # decode bodies larger than this in a worker thread


class ClassifyJSON(BaseModel):
    """JSON body of /classify: exactly one of ``image_b64`` and ``pixels``."""

    model_config = ConfigDict(extra="forbid")

    image_b64: str | None = Field(None, description="An image file (PNG/JPEG/WebP/BMP), base64.")
    pixels: list[Any] | None = Field(
        None, description="Pixel values in [0, 1]: [H, W], [C, H, W] or [1, C, H, W]."
    )
    mode: Literal["auto", "clean", "robust"] | None = Field(None, description="Routing mode.")
    top_k: int | None = Field(None, ge=1, description="How many classes to return.")


class ClassEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias="class")
    index: int
    probability: float


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    model: str
    version: str
    class_: str = Field(alias="class", description="Most probable class name.")
    class_index: int
    probability: float
    top_k: list[ClassEntry]
    p_adv: float = Field(description="Router's adversarial probability.")
    mix: float = Field(description="Mix actually used (0 clean branch .. 1 robust branch).")
    mode: Literal["auto", "clean", "robust"]
    verdict: Literal["clean", "adversarial"] = Field(description="adversarial when p_adv >= threshold")
    threshold: float


class ErrorBody(BaseModel):
    error: str


ERRORS = {
    400: {"model": ErrorBody, "description": "Malformed input"},
    401: {"model": ErrorBody, "description": "Missing or wrong API key"},
    404: {"model": ErrorBody, "description": "Unknown model or version"},
    413: {"model": ErrorBody, "description": "Body, image or batch too large"},
    415: {"model": ErrorBody, "description": "Unsupported content type or image format"},
    503: {"model": ErrorBody, "description": "Not ready, or queue full (Retry-After)"},
    504: {"model": ErrorBody, "description": "Request timeout"},
}

CLASSIFY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "mode": {"type": "string", "enum": ["auto", "clean", "robust"]},
                    "top_k": {"type": "integer", "minimum": 1},
                },
                "required": ["file"],
            }},
            "application/json": {"schema": ClassifyJSON.model_json_schema()},
            **{ct: {"schema": {"type": "string", "format": "binary"}}
               for ct in ("image/png", "image/jpeg", "image/webp", "image/bmp",
                          "application/octet-stream")},
        },
    }
}


def model_entry(mv: ModelVersion) -> dict[str, Any]:
    art = mv.artifact
    return {
        "name": mv.name,
        "version": mv.version,
        "state": mv.state,
        "reason": mv.reason or None,
        "provider": mv.provider,
        "providers": mv.model.providers if mv.model is not None else None,
        "threshold": mv.threshold if art is not None else None,
        "threshold_source": mv.threshold_source if art is not None else None,
        "input_shape": list(art.input_shape) if art is not None else None,
        "class_names": list(art.class_names) if art is not None else None,
        "manifest": art.manifest if art is not None else None,
    }


@router.get("/models", summary="List model versions with their state and manifest")
async def list_models(request: Request) -> dict[str, Any]:
    repo = get_state(request).repository
    return {"models": [model_entry(mv) for mv in sorted(
        repo.all_versions(), key=lambda m: (m.name, int(m.version)))]}


@router.get("/models/{name}", summary="One model: its versions", responses=ERRORS)
async def get_model(request: Request, name: str) -> dict[str, Any]:
    repo = get_state(request).repository
    repo.find(name)
    versions = sorted(repo.versions[name].values(), key=lambda m: int(m.version))
    return {"name": name, "versions": [model_entry(mv) for mv in versions]}


def _decode_pixels(data: Any, shape: tuple[int, int, int], value_range: tuple[float, float]) -> np.ndarray:
    arr = pixels_to_array(data, "pixels")
    c, h, w = shape
    if arr.ndim == 2 and c == 1:
        arr = arr[None]
    elif arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if tuple(arr.shape) != (c, h, w):
        hint = f"[{h}, {w}], " if c == 1 else ""
        raise BadInput(
            f"pixels have shape {list(arr.shape)}, the model takes {hint}[{c}, {h}, {w}] or "
            f"[1, {c}, {h}, {w}] (pixel arrays are not resized)"
        )
    return check_pixels(arr, value_range, "pixels")


async def _read_classify_body(
    request: Request, mv: ModelVersion
) -> tuple[np.ndarray, str | None, int | None]:
    """(pixels [C, H, W], mode, top_k) from any of the accepted body kinds."""
    state = get_state(request)
    s = state.settings
    art = mv.artifact
    assert art is not None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request, s.max_body_bytes)
    if not body:
        raise BadInput("empty body: send an image (multipart field 'file', or raw) or JSON")

    async def image(data: bytes) -> np.ndarray:
        # Always off the event loop: a small file can hold a large image.
        return await asyncio.to_thread(
            decode_image, data, art.input_shape,
            max_pixels=s.max_image_pixels, resize_tolerance=s.resize_tolerance,
        )

    async def run(fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args) if len(body) > OFFLOAD_BYTES else fn(*args)

    mode: str | None = None
    top_k: int | None = None
    if content_type == "multipart/form-data":
        async def stream():  # the body is already read (and bounded)
            yield body

        parser = MultiPartParser(request.headers, stream(), max_files=1, max_fields=10,
                                 max_part_size=s.max_body_bytes)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadInput(f"malformed multipart body: {exc.message}") from None
        try:
            upload = form.get("file") or form.get("image")
            if not isinstance(upload, UploadFile):
                raise BadInput("multipart body needs the image in a file field named 'file'")
            data = await upload.read()
            raw_mode = form.get("mode")
            mode = raw_mode if isinstance(raw_mode, str) else None
            raw_k = form.get("top_k")
            if isinstance(raw_k, str) and raw_k.strip():
                try:
                    top_k = int(raw_k)
                except ValueError:
                    raise BadInput(f"top_k must be an integer, got {raw_k!r}") from None
        finally:
            await form.close()
        return await image(data), mode, top_k
    if content_type == "application/json":
        try:
            payload = await run(json.loads, body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInput(f"body is not valid JSON: {exc}") from None
        try:
            req = ClassifyJSON.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first.get("loc", ())) or "body"
            raise BadInput(f"invalid JSON body: {loc}: {first.get('msg')}") from None
        if (req.image_b64 is None) == (req.pixels is None):
            raise BadInput("JSON body needs exactly one of 'image_b64' and 'pixels'")
        if req.image_b64 is not None:
            text = req.image_b64
            if text.startswith("data:") and "," in text:
                text = text.split(",", 1)[1]
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise BadInput("image_b64 is not valid base64") from None
            pixels = await image(data)
        else:
            pixels = await run(_decode_pixels, req.pixels, art.input_shape, art.input_range)
        return pixels, req.mode, req.top_k
    if content_type in CONTENT_TYPES or content_type in ("application/octet-stream", ""):
        return await image(body), None, None
    raise UnsupportedMediaType(
        f"Content-Type {content_type!r} not supported: use multipart/form-data, "
        "application/json, image/png, image/jpeg, image/webp, image/bmp or application/octet-stream"
    )


async def _classify(
    request: Request, name: str, version: str | None, mode: str | None, top_k: int | None
) -> JSONResponse:
    state = get_state(request)
    mv = lookup_model(request, name, version, ready=True)
    with state.metrics.inflight.labels(mv.name, mv.version).track_inprogress():
        pixels, body_mode, body_k = await _read_classify_body(request, mv)
        chosen_mode = parse_mode(body_mode if body_mode is not None else mode)
        k = body_k if body_k is not None else top_k
        result = await state.dataplane.classify(mv, pixels, mode=chosen_mode, top_k=k)
    return JSONResponse(result)


QUERY_MODE = Query(None, description="auto (router), clean or robust; a body field wins.")
QUERY_TOP_K = Query(None, ge=1, description="Number of classes returned; a body field wins.")


@router.post(
    "/models/{name}/classify",
    summary="Classify one image through the adversarial router",
    response_model=ClassifyResponse,
    responses=ERRORS,
    openapi_extra=CLASSIFY_BODY,
    dependencies=[Depends(require_api_key)],
)
async def classify(
    request: Request, name: str, mode: str | None = QUERY_MODE, top_k: int | None = QUERY_TOP_K
) -> JSONResponse:
    return await _classify(request, name, None, mode, top_k)


@router.post(
    "/models/{name}/versions/{version}/classify",
    summary="Classify one image with a given model version",
    response_model=ClassifyResponse,
    responses=ERRORS,
    openapi_extra=CLASSIFY_BODY,
    dependencies=[Depends(require_api_key)],
)
async def classify_version(
    request: Request, name: str, version: str, mode: str | None = QUERY_MODE,
    top_k: int | None = QUERY_TOP_K,
) -> JSONResponse:
    return await _classify(request, name, version, mode, top_k)
