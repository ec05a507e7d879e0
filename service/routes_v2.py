"""Open Inference Protocol (KServe v2) REST API, plus Triton's repository index.

Standard clients (tritonclient[http], KServe clients) work unchanged. Errors have the
protocol's ``{"error": "..."}`` shape; malformed input answers 400.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from service.codec_v2 import HEADER_LENGTH, decompress, encode_infer_response, parse_infer_request
from service.deps import (
    OFFLOAD_BYTES,
    SERVER_NAME,
    DirectRoute,
    get_state,
    lookup_model,
    read_body,
    require_api_key,
)
from service.errors import BadInput, error_response
from service.schemas import (
    InferenceResponse,
    Liveness,
    ModelConfig,
    ModelMetadata,
    ModelReadiness,
    Readiness,
    ServerMetadata,
    errors,
)
from service.served_model import ServedModel

router = APIRouter(prefix="/v2", tags=["v2: Open Inference Protocol"])

INFER_ERRORS = errors(400, 401, 404, 408, 413, 415, 500, 503, 504)


def ok(model: type, description: str = "OK") -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": description}}



# --- server ----------------------------------------------------------------------------------
@router.get("", summary="Server metadata", response_model=None, responses=ok(ServerMetadata))
async def server_metadata(request: Request) -> dict[str, Any]:
    state = get_state(request)
    return {"name": SERVER_NAME, "version": state.version, "extensions": state.extensions}


@router.get("/health/live", summary="Liveness", response_model=None, responses=ok(Liveness))
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="Readiness (503 while loading, failed or shutting down)",
            response_model=None, responses={**ok(Readiness), **errors(503)})
async def ready(request: Request) -> Response:
    state = get_state(request)
    if not state.ready:
        return error_response(503, f"not ready: {state.not_ready_reason()}")
    return JSONResponse({"ready": True})


# --- models ----------------------------------------------------------------------------------
@router.get("/models/{name}", summary="Model metadata (latest ready version)",
            response_model=None, responses={**ok(ModelMetadata), **errors(404)})
async def metadata(request: Request, name: str) -> dict[str, Any]:
    state = get_state(request)
    return state.dataplane.metadata(lookup_model(request, name, None, ready=False), state.repository)


@router.get("/models/{name}/versions/{version}", summary="Model version metadata",
            response_model=None, responses={**ok(ModelMetadata), **errors(404)})
async def metadata_version(request: Request, name: str, version: str) -> dict[str, Any]:
    state = get_state(request)
    return state.dataplane.metadata(lookup_model(request, name, version, ready=False), state.repository)


def _ready_answer(request: Request, mv: ServedModel) -> Response:
    if mv.serving and not get_state(request).draining:
        return JSONResponse({"name": mv.name, "version": mv.version, "ready": True})
    why = mv.reason or mv.state.lower()
    if mv.serving:
        why = "server is shutting down"
    return error_response(503, f"model {mv.name} version {mv.version} is not ready: {why}")


@router.get("/models/{name}/ready", summary="Model readiness", response_model=None,
            responses={**ok(ModelReadiness), **errors(404, 503)})
async def model_ready(request: Request, name: str) -> Response:
    return _ready_answer(request, lookup_model(request, name, None, ready=False))


@router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness",
            response_model=None, responses={**ok(ModelReadiness), **errors(404, 503)})
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return _ready_answer(request, lookup_model(request, name, version, ready=False))


@router.get("/models/{name}/config", summary="Triton-style model configuration",
            response_model=None, responses={**ok(ModelConfig), **errors(404)})
async def config(request: Request, name: str) -> dict[str, Any]:
    return get_state(request).dataplane.config(lookup_model(request, name, None, ready=False))


@router.get("/models/{name}/versions/{version}/config", summary="Triton-style model configuration",
            response_model=None, responses={**ok(ModelConfig), **errors(404)})
async def config_version(request: Request, name: str, version: str) -> dict[str, Any]:
    return get_state(request).dataplane.config(lookup_model(request, name, version, ready=False))


# --- inference ---------------------------------------------------------------------------------
async def _infer(request: Request, name: str, version: str | None) -> Response:
    state = get_state(request)
    s = state.settings
    mv = lookup_model(request, name, version, ready=True)
    with mv.hold(state.metrics):
        body = await read_body(request, s.max_body_bytes)
        body = decompress(body, request.headers.get("content-encoding"), s.max_body_bytes)
        if not body:
            raise BadInput("empty body: send a v2 inference request")
        header = request.headers.get(HEADER_LENGTH.lower())
        if len(body) > OFFLOAD_BYTES:
            req = await asyncio.to_thread(parse_infer_request, body, header)
        else:
            req = parse_infer_request(body, header)
        content, headers = encode_infer_response(await state.dataplane.infer(mv, req))
    return Response(content=content, headers=headers, media_type=headers["Content-Type"])


async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


# The hot path: DirectRoute (service/deps.py) calls require_api_key, then the endpoint.
for _path, _endpoint, _summary in (
    ("/models/{name}/infer", infer, "Inference (latest ready version)"),
    ("/models/{name}/versions/{version}/infer", infer_version, "Inference"),
):
    router.add_api_route(_path, _endpoint, methods=["POST"], summary=_summary,
                         response_class=Response,
                         responses={**ok(InferenceResponse), **INFER_ERRORS},
                         dependencies=[Depends(require_api_key)],
                         route_class_override=DirectRoute)


# The repository extension (index, load, unload): service/routes_repository.py
