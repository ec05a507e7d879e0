"""Structured JSON logs and the request-context middleware.

Each log line is one JSON object (``ts``, ``level``, ``logger``, ``message``, ``request_id``
and any ``extra`` fields). The middleware gives every HTTP request an id (the client's
``X-Request-ID`` when it is sane, else a new one), returns it in the ``X-Request-ID`` response
header, writes one access-log line and records the request metrics.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from service.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}

access_log = logging.getLogger("service.access")
log = logging.getLogger("service")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in payload and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        return f"{text} [request_id={request_id}]" if request_id else text


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log (ours, uvicorn's, onnxruntime's Python side) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # Our middleware writes the access log (with request id, model, status, duration).
    logging.getLogger("uvicorn.access").disabled = True


@dataclass
class RequestInfo:
    """Per-request facts shared between the middleware and the routes (``scope["awnet"]``)."""

    request_id: str
    model: str = ""
    version: str = ""


class RequestContextMiddleware:
    """Request id, access log and request metrics (pure ASGI, so it wraps streaming too)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        info = RequestInfo(request_id=request_id)
        scope["awnet"] = info
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            status = 500
            if not started:
                body = json.dumps({"error": "internal server error"}).encode()
                await send_with_id({
                    "type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())],
                })
                await send({"type": "http.response.body", "body": body})
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            self.metrics.observe_request(info.model, info.version, endpoint, status, seconds)
            access_log.info(
                "%s %s %d", scope.get("method", ""), scope.get("path", ""), status,
                extra={
                    "method": scope.get("method", ""), "path": scope.get("path", ""),
                    "status": status, "duration_ms": round(seconds * 1000, 3),
                    "model": info.model, "version": info.version, "endpoint": endpoint,
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            request_id_var.reset(token)
