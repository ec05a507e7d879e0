"""The HTTP server of one service process: uvicorn with readiness-first graceful shutdown,
the slowloris head timeout on both HTTP parsers, and one write per small response.

``python -m service`` runs one of these (``AWNET_WORKERS=1``) or one per worker process
(``service/workers.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import Settings

log = logging.getLogger("service")


class GracefulServer(uvicorn.Server):
    """uvicorn, with readiness off before the stop and exit status 0 after a clean drain."""

    def __init__(
        self, config: uvicorn.Config, on_drain: Callable[[], None], delay_s: float,
        parent_pid: int | None = None, on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._on_drain = on_drain
        self._delay_s = delay_s
        self._exit_at: float | None = None
        # A worker process drains by itself when its supervisor is gone (killed with
        # SIGKILL, say): it sits in its own process group and would otherwise serve on.
        self._parent_pid = parent_pid

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in self._captured_signals: uvicorn would re-raise it after the
        # shutdown and the process would die of the signal instead of exiting 0.
        if self._exit_at is not None:
            if sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            return
        log.info("received %s: readiness off, draining", signal.Signals(sig).name,
                 extra={"shutdown_delay_s": self._delay_s})
        self._on_drain()
        self._exit_at = time.monotonic() + self._delay_s
        if self._delay_s <= 0:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._on_started is not None and self.started:  # models loaded, socket listening
            self._on_started()
            self._on_started = None
        if (self._parent_pid is not None and self._exit_at is None
                and os.getppid() != self._parent_pid):
            log.warning("the supervisor process is gone: draining")
            self.handle_exit(signal.SIGTERM, None)
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


class _HeadTimeout:
    """Mixin for uvicorn's HTTP protocols: close a connection whose request head (request
    line and headers) has not arrived ``head_timeout_s`` after the connection opened or its
    previous answer (slowloris: uvicorn itself waits for a head forever)."""

    head_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]  # the protocol class after the mixin

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection that sent no complete request head within "
                     "%g s", self.head_timeout_s, extra={"client": (self.client or ("", 0))[0]})
            self.transport.close()


def header_timeout_protocol(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the head timeout (``_HeadTimeout``). The size of a head is
    bounded by h11 while it arrives (16 KiB incomplete: 400) and by RequestContextMiddleware
    once parsed (AWNET_MAX_HEADERS, AWNET_MAX_HEADER_BYTES: 431)."""

    class HeaderTimeoutProtocol(_HeadTimeout, H11Protocol):
        head_timeout_s = timeout_s

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a new request head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's head gets the same deadline

    return HeaderTimeoutProtocol


def httptools_protocol(timeout_s: float, max_head_bytes: int) -> type:
    """uvicorn's httptools protocol (llhttp, C) with the head timeout, and a bound on a head
    that arrives in pieces (llhttp has none): still incomplete beyond ``max_head_bytes`` after the read it began in, it is
    answered 431 and the connection closed. A complete head is bounded by
    RequestContextMiddleware (AWNET_MAX_HEADERS, AWNET_MAX_HEADER_BYTES: 431)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    refusal = json.dumps({"error": f"request head above {max_head_bytes} bytes "
                                   "(AWNET_MAX_HEADER_BYTES)"}).encode()

    class HttpToolsHeadProtocol(_HeadTimeout, HttpToolsProtocol):
        head_timeout_s = timeout_s
        _in_head = True
        _head_bytes = 0

        def _await_head(self) -> None:
            """Arm the head deadline. Bytes count as head only once the parser begins the next
            message: an early answer (a 400 before the whole body arrived) must not count the
            rest of that body as the next head."""
            self._in_head = False
            self._head_bytes = 0
            self._arm()

        def on_message_begin(self) -> None:
            self._in_head = True
            self._head_bytes = 0
            super().on_message_begin()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()

        def data_received(self, data: bytes) -> None:
            in_head = self._in_head
            super().data_received(data)
            if in_head and self._in_head and not self.transport.is_closing():
                self._head_bytes += len(data)  # all of it was head, and the head goes on
                if self._head_bytes > max_head_bytes:
                    log.info("request refused: a request head above %d bytes", max_head_bytes,
                             extra={"status": 431, "client": (self.client or ("", 0))[0]})
                    self.transport.write(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                        b"content-type: application/json\r\n"
                        b"content-length: " + str(len(refusal)).encode() + b"\r\n"
                        b"connection: close\r\n\r\n" + refusal)
                    self.transport.close()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            cycle = self.cycle
            super().on_headers_complete()
            if self.cycle is not cycle and self.cycle is not None:
                self.cycle.transport = _OneWriteTransport(self.transport)  # type: ignore[assignment]

        def on_response_complete(self) -> None:
            transport = getattr(self.cycle, "transport", None)
            if isinstance(transport, _OneWriteTransport):
                transport.flush()  # a response without body writes (HEAD)
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()  # the next request's head gets the same deadline

    return HttpToolsHeadProtocol


class _OneWriteTransport:
    """The transport as a response cycle sees it: the response head is held back and sent
    with the first body write, one system call per small response instead of two. Interim
    ``1xx`` answers (100 Continue) go out at once."""

    __slots__ = ("_transport", "_head")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
            self._transport.write(data)
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 1"):
            self._head = data
        else:
            self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            data, self._head = self._head, None
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


def http_protocol(settings: Settings) -> tuple[type, str]:
    """The HTTP protocol class uvicorn runs (``AWNET_HTTP``), falling back to h11."""
    if settings.http == "httptools":
        try:
            import httptools  # noqa: F401
        except ImportError:
            log.warning("AWNET_HTTP=httptools but httptools is not installed: using h11 "
                        "(pip install 'awnet-serve[serve]')")
        else:
            return httptools_protocol(settings.header_timeout_s,
                                      4 * settings.max_header_bytes), "httptools"
    return header_timeout_protocol(settings.header_timeout_s), "h11"


def event_loop(settings: Settings) -> str:
    """The event loop uvicorn runs (``AWNET_LOOP``), falling back to asyncio's."""
    if settings.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            log.warning("AWNET_LOOP=uvloop but uvloop is not installed: using asyncio "
                        "(pip install 'awnet-serve[serve]')")
        else:
            return "uvloop"
    return "asyncio"




def build_server(
    settings: Settings, parent_pid: int | None = None,
    on_started: Callable[[], None] | None = None, listen_when_loaded: bool = False,
) -> GracefulServer:
    """The app (``create_app``) in a uvicorn server configured from the settings."""
    from service.app import create_app

    app = create_app(settings, listen_when_loaded=listen_when_loaded)
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    protocol, http_name = http_protocol(settings)
    loop_name = event_loop(settings)
    log.info("HTTP server: uvicorn, %s parser, %s event loop, GIL switch interval %g ms",
             http_name, loop_name, sys.getswitchinterval() * 1000,
             extra={"http": http_name, "loop": loop_name,
                    "gil_switch_interval_ms": sys.getswitchinterval() * 1000,
                    "proxy_headers": settings.forwarded_allow_ips is not None})
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=int(max(1, round(settings.shutdown_timeout_s))),
        server_header=False,
        # X-Forwarded-* only from the proxies named in AWNET_FORWARDED_ALLOW_IPS (uvicorn's own
        # default trusts 127.0.0.1 and costs a middleware layer on every request)
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        lifespan="on",
        http=protocol,
        loop=loop_name,
    )
    server = GracefulServer(config, app.state.awnet.begin_drain, settings.shutdown_delay_s,
                            parent_pid=parent_pid, on_started=on_started)
    app.state.awnet.occupancy.bind(server.server_state)  # a lone request may run inline
    return server
