"""The FastAPI application factory.

``create_app(settings)`` wires settings, metrics, model repository, data plane, routes and
middleware. Start-up (lifespan) scans the repository and loads every model version in the
background, so the server answers ``/v2/health/live`` at once and ``/v2/health/ready`` turns
200 only when loading and warm-up are done. With ``AWNET_MODEL_CONTROL_MODE=poll`` the same
task then keeps polling the repository (docs/lifecycle.md); ``AWNET_CANARY_INTERVAL_S`` > 0
starts the probe canary. Shutdown: readiness goes false, the batchers
finish their queues, then the app stops (uvicorn first waits for in-flight requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import metadata as importlib_metadata
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from service.canary import Canary
from service.dataplane import DataPlane
from service.deps import SERVER_NAME, AppState, FastLane, get_state
from service.errors import install_error_handlers
from service.logging import RequestContextMiddleware
from service.metrics import CONTENT_TYPE, Metrics
from service.occupancy import Occupancy
from service.openapi import install_openapi
from service.repository import ModelRepository
from service.routes_repository import build_router as repository_router
from service.routes_v1 import router as v1_router
from service.routes_v2 import router as v2_router
from service.settings import Settings

log = logging.getLogger("service.app")

STATIC_DIR = Path(__file__).with_name("static")  # the page at / (index.html, page.js, page.css)


def _version() -> str:
    try:
        return importlib_metadata.version("awnet-serve")
    except importlib_metadata.PackageNotFoundError:
        return "0.0.0"


class ServiceApp(FastAPI):
    """FastAPI with the request-context middleware (request id, access log, request metrics,
    the inference fast lane) *outside* the framework's own stack: an inference request goes
    straight from uvicorn to ``RequestContextMiddleware`` and ``FastLane``, past FastAPI's and
    Starlette's entry, error, telemetry and body-limit layers (each a coroutine frame that
    every resumption of the request passes through; FastAPI's telemetry layer also reads the
    environment per request). Every other request goes on through the whole stack, so its
    answers and errors are the framework's as before. Lifespan goes to FastAPI directly."""

    context: RequestContextMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.context is not None and scope["type"] == "http":
            scope["app"] = self  # what Starlette sets; the fast lane's error handlers read it
            await self.context(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own stack (what ``context`` hands every request the lane does not take)."""
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, listen_when_loaded: bool = False) -> FastAPI:
    """The app. ``listen_when_loaded``: start-up (the lifespan) returns only once the first
    load is done, so uvicorn listens only then: a worker of ``AWNET_WORKERS`` > 1 takes no
    connection while it loads, the others take them (a lone server listens at once and
    answers 503 "loading" meanwhile, so that its probes can tell loading from dead)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    occupancy = Occupancy()
    repository = ModelRepository(settings, metrics, occupancy)
    state = AppState(
        settings=settings,
        metrics=metrics,
        repository=repository,
        dataplane=DataPlane(settings, metrics),
        occupancy=occupancy,
        version=_version(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository.scan()
        loader = asyncio.create_task(repository.load_all(), name="load-models")
        if settings.canary_interval_s > 0:
            canary = Canary(repository.all_versions, repository.probe_metrics, settings.canary_interval_s)
            repository.start_background(canary.forever(),
                                        "probe-canary")
        if listen_when_loaded:
            await repository.loading_done.wait()  # set after the first load, in every mode
        log.info(
            "serving model repository %s", settings.model_repository,
            extra={"providers": settings.providers, "max_batch_size": settings.max_batch_size,
                   "max_queue_delay_ms": settings.max_queue_delay_ms,
                   "max_queue_size": settings.max_queue_size,
                   "auth": settings.api_key is not None,
                   "model_control_mode": settings.model_control_mode,
                   "version_policy": settings.version_policy},
        )
        try:
            yield
        finally:
            state.begin_drain()
            if not loader.done():
                loader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loader
            await repository.close()
            log.info("shutdown complete: all queued requests answered")

    app = ServiceApp(
        title="AW-Net Serve",
        version=state.version,
        summary="Image classification through an adversarial router (AW-Net), "
        "with the Open Inference Protocol (KServe v2) and a simple image API.",
        lifespan=lifespan,
        docs_url=None,  # served offline by install_openapi
        redoc_url=None,
    )
    app.state.awnet = state
    install_error_handlers(app, metrics)
    if settings.cors_origins:  # off unless configured: no CORS header is sent at all
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Content-Encoding",
                                          "Inference-Header-Content-Length", "X-Request-ID"],
                           expose_headers=["Inference-Header-Content-Length", "X-Request-ID",
                                           "Retry-After"])
    app.context = RequestContextMiddleware(
        app.framework, metrics=metrics, access_log=settings.access_log,
        max_headers=settings.max_headers, max_header_bytes=settings.max_header_bytes,
        # v2 infer straight to its route (CORS would be skipped: then not)
        fast_lane=None if settings.cors_origins else FastLane.of(v2_router))
    app.include_router(v1_router)
    app.include_router(v2_router)
    app.include_router(repository_router(settings))
    install_openapi(app, state)
    # the served versions changed (poll, load, unload): rebuild the OpenAPI document
    repository.listeners.append(lambda: setattr(app, "openapi_schema", None))

    @app.get("/metrics", summary="Prometheus metrics", tags=["operations"],
             response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition format"}})
    async def prometheus_metrics(request: Request) -> Response:
        data = await asyncio.to_thread(get_state(request).metrics.render)
        return Response(content=data, media_type=CONTENT_TYPE)

    # The page at / (docs/service.md "The page at /"): service/static/, the settings it needs
    # filled in once here. Without the folder (a package built without it): / is /docs.
    index = STATIC_DIR / "index.html"
    if index.is_file():
        page = (index.read_text(encoding="utf-8")
                .replace("{{resize_tolerance}}", repr(settings.resize_tolerance))
                .replace("{{api_key}}", "none" if settings.api_key_value() is None else "required"))
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

        @app.get("/", include_in_schema=False)
        async def root() -> HTMLResponse:
            return HTMLResponse(page)
    else:
        log.warning("%s is missing: / redirects to /docs", index)

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/docs")

    log.debug("%s %s app created", SERVER_NAME, state.version)
    return app
