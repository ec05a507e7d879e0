"""Triton's model repository extension: the index, and explicit load / unload.

* ``POST /v2/repository/index``: every version with its state and reason (``{"ready": true}``:
  the ready ones only), Triton's row shape. (A version's probe status is in its metadata.)
* ``POST /v2/repository/models/{name}/load`` and ``/unload``: with
  ``AWNET_MODEL_CONTROL_MODE=explicit`` (and only then in the OpenAPI document); 200 with an
  empty JSON object when done, 400 ``{"error": ...}`` when a selected version failed (the
  versions that were serving keep serving), as Triton answers, so ``tritonclient``'s
  ``load_model`` / ``unload_model`` work unchanged. Other modes answer 501.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from service import jsonbody
from service.deps import get_state, read_body, require_api_key
from service.errors import BadInput, ModelNotFound, error_response
from service.repository import LoadFailed
from service.schemas import RepositoryIndexEntry, errors
from service.served_model import ServedModel
from service.settings import Settings

TAGS = ["v2: Open Inference Protocol"]


def index_row(mv: ServedModel) -> dict[str, Any]:
    return {"name": mv.name, "version": mv.version, "state": mv.state, "reason": mv.reason}


async def _control_body(request: Request, what: str) -> dict[str, Any]:
    body = await read_body(request, 64 * 1024)
    if not body.strip():
        return {}
    payload = jsonbody.loads(body, "body")
    if not isinstance(payload, dict):
        raise BadInput("body must be a JSON object, e.g. {\"parameters\": {}}")
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadInput("'parameters' must be an object")
    if what == "load" and any(k == "config" or k.startswith("file:") for k in params):
        raise BadInput("loading with an override config or files is not supported: put the "
                       "version folder in the repository, then load")  # fmt: skip
    return params


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=TAGS)
    explicit = settings.model_control_mode == "explicit"

    @router.post("/repository/index", summary="Model repository index (Triton extension)",
                 response_model=None, responses={
                     200: {"model": list[RepositoryIndexEntry], "description": "OK"},
                     **errors(400, 408, 413)})
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        body = await read_body(request, 64 * 1024)
        ready_only = False
        if body.strip():
            payload = jsonbody.loads(body, "body")
            if not isinstance(payload, dict):
                raise BadInput("body must be a JSON object, e.g. {\"ready\": true}")
            ready = payload.get("ready", False)
            if not isinstance(ready, bool):
                raise BadInput("'ready' must be true or false")
            ready_only = ready
        repo = get_state(request).repository
        return [index_row(mv)
                for mv in sorted(repo.all_versions(), key=lambda m: (m.name, int(m.version)))
                if not ready_only or mv.serving]  # fmt: skip

    if not explicit:
        @router.post("/repository/models/{name}/load", include_in_schema=False)
        @router.post("/repository/models/{name}/unload", include_in_schema=False)
        async def repository_control(name: str) -> Response:
            mode = settings.model_control_mode
            return error_response(501, f"explicit model control is off (AWNET_MODEL_CONTROL_MODE="
                                  f"{mode}): set it to 'explicit' to load and unload models "
                                  "through this API")  # fmt: skip
        return router

    @router.post("/repository/models/{name}/load",
                 summary="Load or reload a model (explicit model control)",
                 description="Loads the versions the version policy selects from the repository "
                 "folder, beside the ones serving; they take traffic once warmed up and probed. "
                 "400 names each version that failed and why; serving versions keep serving.",
                 response_model=None, dependencies=[Depends(require_api_key)],
                 responses={200: {"description": "Every selected version is READY"},
                            **errors(400, 401, 408, 413)})
    async def load(request: Request, name: str) -> Response:
        await _control_body(request, "load")
        try:
            await get_state(request).repository.load_model(name)
        except LoadFailed as exc:
            return error_response(400, str(exc))
        return JSONResponse({})

    @router.post("/repository/models/{name}/unload",
                 summary="Unload a model (explicit model control)",
                 description="Every version stops taking new requests at once; the requests "
                 "already holding it (queued ones too) are answered; then its session is released.",
                 response_model=None, dependencies=[Depends(require_api_key)],
                 responses={200: {"description": "Unloaded"}, **errors(400, 401, 408, 413)})
    async def unload(request: Request, name: str) -> Response:
        await _control_body(request, "unload")
        try:
            await get_state(request).repository.unload_model(name)
        except ModelNotFound as exc:
            return error_response(400, str(exc))
        return JSONResponse({})

    return router
