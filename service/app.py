"""The FastAPI application factory.

``create_app(settings)`` wires settings, metrics, model repository, data plane, routes and
middleware. Start-up (lifespan) scans the repository and loads every model version in the
background, so the server answers ``/v2/health/live`` at once and ``/v2/health/ready`` turns
200 only when loading and warm-up are done. Shutdown: readiness goes false, the batchers
finish their queues, then the app stops (uvicorn first waits for in-flight requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import metadata as importlib_metadata

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from service.dataplane import DataPlane
from service.deps import SERVER_NAME, AppState, get_state
from service.errors import install_error_handlers
from service.logging import RequestContextMiddleware
from service.metrics import CONTENT_TYPE, Metrics
from service.repository import ModelRepository
from service.routes_v1 import router as v1_router
from service.routes_v2 import router as v2_router
from service.settings import Settings

log = logging.getLogger("service.app")


def _version() -> str:
    try:
        return importlib_metadata.version("awnet-serve")
    except importlib_metadata.PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    repository = ModelRepository(settings, metrics)
    state = AppState(
        settings=settings,
        metrics=metrics,
        repository=repository,
        dataplane=DataPlane(settings, metrics),
        version=_version(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository.scan()
        loader = asyncio.create_task(repository.load_all(), name="load-models")
        log.info(
            "serving model repository %s", settings.model_repository,
            extra={"providers": settings.providers, "max_batch_size": settings.max_batch_size,
                   "max_queue_delay_ms": settings.max_queue_delay_ms,
                   "max_queue_size": settings.max_queue_size,
                   "auth": settings.api_key is not None},
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

    app = FastAPI(
        title="AW-Net Serve",
        version=state.version,
        summary="Image classification through an adversarial router (AW-Net), "
        "with the Open Inference Protocol (KServe v2) and a simple image API.",
        lifespan=lifespan,
    )
    app.state.awnet = state
    install_error_handlers(app, metrics)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.include_router(v1_router)
    app.include_router(v2_router)

    @app.get("/metrics", summary="Prometheus metrics", tags=["operations"],
             response_class=Response)
    async def prometheus_metrics(request: Request) -> Response:
        data = await asyncio.to_thread(get_state(request).metrics.render)
        return Response(content=data, media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    log.debug("%s %s app created", SERVER_NAME, state.version)
    return app
