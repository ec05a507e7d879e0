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
import re
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from service import jsonbody
from service.codec_v1 import classification_body
from service.deps import OFFLOAD_BYTES, get_state, lookup_model, read_body, require_api_key
from service.errors import BadInput, UnsupportedMediaType
from service.images import CONTENT_TYPES, check_pixels, decode_image, json_numbers
from service.inference import parse_mode
from service.schemas import ClassifyResponse, ModelList, ModelVersions, errors
from service.served_model import ServedModel

router = APIRouter(prefix="/v1", tags=["v1: simple API"])



class ClassifyJSON(BaseModel):
    """JSON body of /classify: exactly one of ``image_b64`` and ``pixels`` (its schema, with
    the served models' pixel shapes, is ``ClassifyRequest`` in service.openapi). Strict: no
    type coercion (``"5"`` is not a top_k), as the schema says."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image_b64: str | None = Field(None, description="An image file (PNG/JPEG/WebP/BMP), base64.")
    pixels: list[Any] | None = Field(
        None, description="Pixel values in [0, 1]: [H, W], [C, H, W] or [1, C, H, W]."
    )
    mode: Literal["auto", "clean", "robust"] | None = Field(None, description="Routing mode.")
    top_k: int | float | None = Field(None, ge=1, description="How many classes to return.")

    @field_validator("top_k")
    @classmethod
    def _integral(cls, value: int | float | None) -> int | None:
        if isinstance(value, float):  # 3.0 is an integer in JSON Schema; 3.5 is not
            if not value.is_integer():
                raise ValueError("top_k must be an integer")
            return int(value)
        return value


ERRORS = errors(400, 401, 404, 408, 413, 415, 500, 503, 504)
_DIGITS = re.compile(r"[0-9]+")


def model_entry(mv: ServedModel) -> dict[str, Any]:
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


@router.get("/models", summary="List model versions with their state and manifest",
            response_model=None, responses={200: {"model": ModelList, "description": "OK"}})
async def list_models(request: Request) -> dict[str, Any]:
    repo = get_state(request).repository
    return {"models": [model_entry(mv) for mv in sorted(
        repo.all_versions(), key=lambda m: (m.name, int(m.version)))]}


@router.get("/models/{name}", summary="One model: its versions", response_model=None,
            responses={200: {"model": ModelVersions, "description": "OK"}, **errors(404)})
async def get_model(request: Request, name: str) -> dict[str, Any]:
    repo = get_state(request).repository
    repo.find(name)
    versions = sorted(repo.versions[name].values(), key=lambda m: int(m.version))
    return {"name": name, "versions": [model_entry(mv) for mv in versions]}


def _decode_pixels(data: Any, shape: tuple[int, int, int], value_range: tuple[float, float]) -> np.ndarray:
    arr = json_numbers(data, "pixels")
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
    request: Request, mv: ServedModel
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
            if raw_mode is not None:
                mode = parse_mode(raw_mode if isinstance(raw_mode, str) else "(a file)")
            raw_k = form.get("top_k")
            if raw_k is not None:
                if not isinstance(raw_k, str) or not _DIGITS.fullmatch(raw_k):
                    raise BadInput(f"top_k must be an integer, got {raw_k!r}")
                top_k = int(raw_k) if len(raw_k) <= 18 else 10**18  # any k > K means all K
        finally:
            await form.close()
        return await image(data), mode, top_k
    if content_type == "application/json":
        payload = await run(jsonbody.loads, body, "body")
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
    with mv.hold(state.metrics):
        pixels, body_mode, body_k = await _read_classify_body(request, mv)
        query_mode = parse_mode(mode)  # checked even when the body's mode wins
        chosen_mode = parse_mode(body_mode) if body_mode is not None else query_mode
        k = body_k if body_k is not None else top_k
        result = await state.dataplane.classify(mv, pixels, mode=chosen_mode, top_k=k)
    return JSONResponse(classification_body(result))


# The enum is checked by parse_mode (one message for query, form and JSON).
QUERY_MODE = Query(None, description="auto (router), clean or robust; a body field wins.",
                   json_schema_extra={"enum": ["auto", "clean", "robust"]})
Mode = str
QUERY_TOP_K = Query(None, ge=1, description="Number of classes returned; a body field wins.")


@router.post(
    "/models/{name}/classify",
    summary="Classify one image through the adversarial router",
    response_model=ClassifyResponse,
    responses=ERRORS,
    dependencies=[Depends(require_api_key)],
)
async def classify(
    request: Request, name: str, mode: Mode | None = QUERY_MODE, top_k: int | None = QUERY_TOP_K
) -> JSONResponse:
    return await _classify(request, name, None, mode, top_k)


@router.post(
    "/models/{name}/versions/{version}/classify",
    summary="Classify one image with a given model version",
    response_model=ClassifyResponse,
    responses=ERRORS,
    dependencies=[Depends(require_api_key)],
)
async def classify_version(
    request: Request, name: str, version: str, mode: Mode | None = QUERY_MODE,
    top_k: int | None = QUERY_TOP_K,
) -> JSONResponse:
    return await _classify(request, name, version, mode, top_k)
