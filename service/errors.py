"""Domain errors and their HTTP mapping, in one place.

Every error answer has the Open Inference Protocol shape ``{"error": "<message>"}``. Each
error type carries its HTTP status and, for refused requests, the ``reason`` label of
``awnet_refused_requests_total``.

Besides the service's own errors (``ServiceError`` and subclasses):

* a client that closes its connection before its request is read (``ClientDisconnect``) is
  recorded as 499 (nginx's "client closed request"), logged at INFO: it is not a server
  error and never counts in the 5xx share;
* request validation (FastAPI) answers 400 like every other malformed input;
* anything else is a 500 ``{"error": "internal server error"}`` (the request-context
  middleware); no stack trace or file path ever goes into a body, only into the log.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

if TYPE_CHECKING:
    from service.metrics import Metrics

log = logging.getLogger("service.errors")

CLIENT_CLOSED_REQUEST = 499  # nginx's convention: the client went away before the answer


class ServiceError(Exception):
    """Base class: ``status`` is the HTTP status, ``reason`` the refused-requests label."""

    status: int = 500
    reason: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadInput(ServiceError):
    """Malformed or invalid request content (400)."""

    status = 400
    reason = "bad_input"


class UnsupportedMediaType(BadInput):
    """Content type or image format the service does not take (415)."""

    status = 415


class TooLarge(ServiceError):
    """Body, image pixel count or batch above a limit (413)."""

    status = 413
    reason = "too_large"


class RequestTimeout(ServiceError):
    """The client did not send its whole body within the body timeout (408)."""

    status = 408
    reason = "timeout"


class HeadersTooLarge(ServiceError):
    """Too many request headers, or too many bytes of them (431)."""

    status = 431
    reason = "too_large"


class Unauthorized(ServiceError):
    """Missing or wrong API key (401)."""

    status = 401
    reason = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ModelNotFound(ServiceError):
    """Unknown model name or version (404)."""

    status = 404


class NotReady(ServiceError):
    """Model (or server) not ready: loading, failed to load, or shutting down (503)."""

    status = 503


class QueueFull(ServiceError):
    """The batching queue is full: refused at once (503 with Retry-After)."""

    status = 503
    reason = "queue_full"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class InferenceTimeout(ServiceError):
    """The request did not complete within the per-request timeout (504)."""

    status = 504
    reason = "timeout"


class InferenceFailed(ServiceError):
    """ONNX Runtime raised during a call (500)."""

    status = 500


# An absolute path of two or more parts (``/opt/models/x/1/model.onnx``): shown by its last
# part only, so no error body tells a client how the server's disk is laid out.
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+([\w.@+-]+)")


def scrub(message: str) -> str:
    """The message without absolute file paths (their last component stays)."""
    return _ABS_PATH.sub(r"\1", message)


def error_body(message: str) -> dict[str, Any]:
    return {"error": scrub(message)}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Map every error to ``{"error": ...}`` and count refused requests by reason."""

    def info_id(request: Request) -> str:
        info = request.scope.get("awnet")
        return info.request_id if info is not None else ""

    def labels(request: Request) -> tuple[str, str]:
        info = request.scope.get("awnet")
        return (info.model, info.version) if info is not None else ("", "")

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        model, version = labels(request)
        if exc.reason is not None:
            metrics.refused(model, version, exc.reason)
        level = logging.ERROR if exc.status >= 500 and exc.reason is None else logging.INFO
        if isinstance(exc, NotReady):
            level = logging.INFO
        log.log(level, "request refused: %s", exc.message,
                extra={"status": exc.status, "reason": exc.reason or ""})
        message = exc.message
        if exc.status == 500 and info_id(request):  # a server fault: the id finds its log
            message = f"{message} (request id {info_id(request)})"
        return error_response(exc.status, message, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        model, version = labels(request)
        metrics.refused(model, version, "bad_input")
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else err.get("msg", "invalid"))
        return error_response(400, "invalid request: " + "; ".join(parts))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def on_client_disconnect(request: Request, exc: Exception) -> Response:
        # Nobody is there to read it: the status is for the access log and the metrics.
        log.info("client closed the connection before the request was read",
                 extra={"status": CLIENT_CLOSED_REQUEST, "reason": "client_closed"})
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not a refusal: Starlette's ServerErrorMiddleware answers with this and then
        # re-raises, and RequestContextMiddleware logs the traceback once (service/logging.py).
        return error_response(500, "internal server error")

    app.add_exception_handler(Exception, on_unhandled)
    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ClientDisconnect, on_client_disconnect)
