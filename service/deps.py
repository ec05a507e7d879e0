"""What routes share: the app state, API-key check, model lookup, bounded body reading."""

from __future__ import annotations

import asyncio
import hmac
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.dataplane import DataPlane
from service.errors import RequestTimeout, ServiceError, TooLarge, Unauthorized
from service.metrics import Metrics
from service.occupancy import Occupancy
from service.repository import ModelRepository
from service.served_model import ServedModel
from service.settings import Settings

SERVER_NAME = "awnet-serve"
#: Bodies larger than this are decoded or parsed in a worker thread, not on the event loop.
OFFLOAD_BYTES = 64 * 1024

_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    repository: ModelRepository
    dataplane: DataPlane
    occupancy: Occupancy
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


async def require_api_key(request: Request) -> None:
    """Dependency of inference endpoints: ``Authorization: Bearer <AWNET_API_KEY>``.

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in its thread
    pool, a thread hop per request for a check of a few microseconds."""
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


def lookup_model(request: Request, name: str, version: str | None, *, ready: bool) -> ServedModel:
    """Find the model (404 if unknown), label the request with it, and check readiness (503)."""
    state = get_state(request)
    mv = state.repository.find(name, version)
    info = request.scope.get("awnet")
    if info is not None:
        info.model, info.version = mv.name, mv.version
    if ready:
        mv = state.repository.find_ready(mv.name, mv.version)
    return mv


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The whole body, refusing (413) at once when it is, or grows, above ``limit`` bytes, and
    (408) when it has not all arrived within ``timeout_s`` seconds (a slow or stalled client:
    only its connection waits, no thread or batch slot is held meanwhile)."""
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

    async def read() -> bytes:
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

    if timeout_s is None:
        timeout_s = get_state(request).settings.body_timeout_s
    try:
        if _timeout is not None:  # a timer on this task (wait_for would start another task)
            async with _timeout(timeout_s):
                return await read()
        return await asyncio.wait_for(read(), timeout_s)
    except asyncio.TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s (AWNET_BODY_TIMEOUT_S)"
        ) from None


class DirectRoute(APIRoute):
    """An ``APIRoute`` for the hot path: documented in OpenAPI like any other, but its requests
    skip FastAPI's per-request work (dependency solving, parameter validation, response
    handling: about a quarter of a small request's time on the event loop).

    The endpoint must be ``async def endpoint(request, **path_params) -> Response`` (path
    parameters are strings, as the path matched them) and every dependency of the route an
    ``async def check(request) -> None`` (``require_api_key``): the checks are awaited in
    order, then the endpoint. Errors go through the app's exception handlers as usual."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        endpoint = self.endpoint
        checks = [d.dependency for d in self.dependencies]
        for fn in (endpoint, *checks):
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"DirectRoute {self.path}: {fn!r} must be async def")
        params = list(inspect.signature(endpoint).parameters)
        if params[:1] != ["request"] or set(params[1:]) != set(self.param_convertors):
            raise TypeError(f"DirectRoute {self.path}: the endpoint takes (request, "
                            f"{', '.join(self.param_convertors)}), not ({', '.join(params)})")

        async def handler(request: Request) -> Response:
            for check in checks:
                await check(request)
            return await endpoint(request, **request.path_params)

        return handler


class FastLane:
    """Dispatch of ``DirectRoute`` requests straight from RequestContextMiddleware, past the
    framework's middleware and router (exception middleware, exit stacks, route matching
    over every route: together as much as the route's own work for a small request).

    What the router would do is done here: match the path (the route's own regex), set
    ``scope["route"]`` and ``scope["path_params"]``, run the handler, and on an exception
    answer with the app's handler for it (``app.exception_handlers``, by the exception's MRO,
    as Starlette does); an exception without one, or raised after the response started,
    propagates (RequestContextMiddleware answers 500). Only for apps without middleware
    between RequestContextMiddleware and the router (CORS: then ``None``, see app.py)."""

    def __init__(self, routes: Iterable[DirectRoute]) -> None:
        self.routes = [(r.path_regex, r, r.get_route_handler(), frozenset(r.methods or ()))
                       for r in routes]

    @classmethod
    def of(cls, *routers: APIRouter) -> FastLane:
        return cls(r for router in routers for r in router.routes if isinstance(r, DirectRoute))

    def match(self, scope: Scope) -> tuple[DirectRoute, Callable, dict[str, str]] | None:
        path, method = scope["path"], scope["method"]
        for regex, route, handler, methods in self.routes:
            m = regex.match(path)
            if m is not None:
                # Another method on the path: the router answers it (405), not the lane.
                return (route, handler, m.groupdict()) if method in methods else None
        return None

    async def handle(self, hit: tuple[DirectRoute, Callable, dict[str, str]], scope: Scope,
                     receive: Receive, send: Send) -> None:
        route, handler, params = hit
        scope["route"] = route
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception as exc:
            answer = _exception_handler(scope["app"], exc)
            if answer is None:
                raise
            response = await answer(request, exc)
        await response(scope, receive, send)


def _exception_handler(app: object, exc: Exception) -> Callable | None:
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls is Exception:  # Starlette's rule: that one answers in ServerErrorMiddleware,
            return None  # after which the exception propagates (here: to the middleware)
        if cls in handlers:
            return handlers[cls]
    return None
