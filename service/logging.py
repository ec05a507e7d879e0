"""Structured JSON logs and the request-context middleware.

Each log line is one JSON object (``ts``, ``level``, ``logger``, ``message``, ``request_id``
and any ``extra`` fields). The middleware gives every HTTP request an id (the client's
``X-Request-ID`` when it is sane, else a new one), returns it in the ``X-Request-ID`` response
header, writes one access-log line and records the request metrics.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect

from service.errors import CLIENT_CLOSED_REQUEST, HeadersTooLarge, error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from service.deps import FastLane
    from service.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}

access_log = logging.getLogger("service.access")
log = logging.getLogger("service")


# Request ids made here: a random per-process prefix and a counter (32 hex digits like a
# UUID, unique across processes, no system call per request).
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def _new_prefix() -> None:  # a forked worker gets its own
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_ts_cache: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """``2024-01-31T12:00:00.123Z`` (UTC); the part up to the second is formatted once a second."""
    global _ts_cache
    second = int(created)
    if _ts_cache[0] != second:
        _ts_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_ts_cache[1]}.{int((created - second) * 1000):03d}Z"


# One encoder for every line (json.dumps with options builds a new one per call). The stdlib
# encoder, not orjson: it writes `"key": "value"` with the spaces that log readers grep for.
_encoder = json.JSONEncoder(default=str, ensure_ascii=False)
_dumps = _encoder.encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            payload["request_id"] = request_id
        for key in [k for k in record.__dict__ if k not in _STANDARD_ATTRS]:
            if key not in payload and not key.startswith("_"):
                payload[key] = record.__dict__[key]
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return _dumps(payload)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        return f"{text} [request_id={request_id}]" if request_id else text


class LoopStreamHandler(logging.StreamHandler):
    """A stream handler that writes the lines logged during one event-loop iteration in one
    system call, at the end of that iteration (under load, many access-log lines a write
    instead of one each). Records from other threads, or with no running loop, are written
    at once, as by ``logging.StreamHandler``; ``flush()`` (at exit: ``logging.shutdown``)
    writes whatever is pending."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - as logging.StreamHandler does
            self.handleError(record)
            return
        loop = asyncio._get_running_loop()
        with self.lock:  # type: ignore[union-attr]
            if loop is None:
                self._write(line)
                return
            self._pending.append(line)
            if self._scheduled:
                return
            self._scheduled = True
        loop.call_soon(self.flush)

    def _write(self, data: str) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream: as StreamHandler does
            self.handleError(logging.LogRecord("service", logging.ERROR, "", 0, data, None,
                                               None))

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = False
            if self._pending:
                data, self._pending = "".join(self._pending), []
                self._write(data)
            elif self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log (ours, uvicorn's, onnxruntime's Python side) to stderr in one format."""
    handler = LoopStreamHandler(sys.stderr)
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
    # No formatter here shows the caller's file and line, the thread or the process: skip
    # looking them up for every record (the logging HOWTO's "Optimization"; ~5 us a record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


@dataclass
class RequestInfo:
    """Per-request facts shared between the middleware and the routes (``scope["awnet"]``)."""

    request_id: str
    model: str = ""
    version: str = ""


class RequestContextMiddleware:
    """Request id, access log and request metrics (pure ASGI, so it wraps streaming too)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_headers: int = 100,
                 max_header_bytes: int = 16 * 1024, fast_lane: FastLane | None = None,
                 access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log  # AWNET_ACCESS_LOG
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.fast_lane = fast_lane  # the inference routes, dispatched directly (deps.FastLane)

    def _headers_refusal(self, headers: list[tuple[bytes, bytes]]) -> HeadersTooLarge | None:
        """uvicorn bounds only a head that arrives in pieces (16 KiB); this bounds any head."""
        if len(headers) > self.max_headers:
            return HeadersTooLarge(f"{len(headers)} request headers, above the limit of "
                                   f"{self.max_headers} (AWNET_MAX_HEADERS)")
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if size > self.max_header_bytes:
            return HeadersTooLarge(f"request headers are {size} bytes, above the limit of "
                                   f"{self.max_header_bytes} (AWNET_MAX_HEADER_BYTES)")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else new_request_id()
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
            refusal = self._headers_refusal(scope.get("headers", []))
            if refusal is not None:
                self.metrics.refused("", "", "too_large")
                log.info("request refused: %s", refusal.message, extra={"status": refusal.status})
                await error_response(refusal.status, refusal.message)(scope, receive, send_with_id)
            elif self.fast_lane is not None and (hit := self.fast_lane.match(scope)):
                await self.fast_lane.handle(hit, scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:  # normally answered by service.errors; this is the backstop
            status = CLIENT_CLOSED_REQUEST
            log.info("client closed the connection before the request was read")
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
            if self.access_log:
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
