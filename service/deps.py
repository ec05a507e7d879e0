"""What routes share: the app state, API-key check, model lookup, bounded body reading."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from fastapi import Request

from service.dataplane import DataPlane
from service.errors import ServiceError, TooLarge, Unauthorized
from service.metrics import Metrics
from service.repository import ModelRepository, ModelVersion
from service.settings import Settings

SERVER_NAME = "awnet-serve"


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    repository: ModelRepository
    dataplane: DataPlane
    version: str = "0"
    draining: bool = False
    extensions: list[str] = field(
        default_factory=lambda: ["binary_tensor_data", "classification", "model_repository",
                                 "parameters"]
    )

    def begin_drain(self) -> None:
        """Readiness goes false; requests are still served until the server stops."""
        self.draining = True

    @property
    def ready(self) -> bool:
        return (not self.draining and self.repository.all_loaded
                and self.repository.any_ready())

    def not_ready_reason(self) -> str:
        if self.draining:
            return "server is shutting down"
        if not self.repository.all_loaded:
            return "models are loading"
        if not self.repository.all_versions():
            return f"no model versions found in {self.repository.root}"
        return "no model version is ready: " + "; ".join(
            f"{mv.key}: {mv.reason or mv.state}" for mv in self.repository.all_versions()
        )


def get_state(request: Request) -> AppState:
    return request.app.state.awnet


def require_api_key(request: Request) -> None:
    """Dependency of inference endpoints: ``Authorization: Bearer <AWNET_API_KEY>``."""
    key = get_state(request).settings.api_key_value()
    if key is None:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        _label_if_known(request)
        raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    if not hmac.compare_digest(token.strip().encode(), key.encode()):
        _label_if_known(request)
        raise Unauthorized("invalid API key")


def _label_if_known(request: Request) -> None:
    """Label a refused request with its model when the path names a served one (metrics only)."""
    repo = get_state(request).repository
    name = request.path_params.get("name")
    try:
        mv = repo.find(name, request.path_params.get("version")) if name else None
    except ServiceError:
        return
    info = request.scope.get("awnet")
    if mv is not None and info is not None:
        info.model, info.version = mv.name, mv.version


def lookup_model(request: Request, name: str, version: str | None, *, ready: bool) -> ModelVersion:
    """Find the model (404 if unknown), label the request with it, and check readiness (503)."""
    state = get_state(request)
    mv = state.repository.find(name, version)
    info = request.scope.get("awnet")
    if info is not None:
        info.model, info.version = mv.name, mv.version
    if ready:
        mv = state.repository.find_ready(mv.name, mv.version)
    return mv


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) at once when it is, or grows, above ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            size = -1
        if size > limit:
            raise TooLarge(
                f"request body is {size} bytes, above the limit of {limit} bytes "
                "(AWNET_MAX_BODY_BYTES)"
            )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLarge(
                f"request body is above the limit of {limit} bytes (AWNET_MAX_BODY_BYTES)"
            )
        chunks.append(chunk)
    return b"".join(chunks)
