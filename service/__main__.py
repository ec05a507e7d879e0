"""``python -m service``: one uvicorn process serving the model repository.

Settings come from ``AWNET_*`` environment variables (docs/service.md); an invalid value stops
the start with a message naming the variable (exit code 2).

SIGTERM / SIGINT: readiness goes false at once; after ``AWNET_SHUTDOWN_DELAY_S`` the server
stops accepting connections, finishes every in-flight and queued request (at most
``AWNET_SHUTDOWN_TIMEOUT_S``), drains the batchers and exits with status 0. A second SIGINT
forces the exit.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from pydantic import ValidationError

from service.settings import Settings, format_validation_error, unknown_env_vars

log = logging.getLogger("service")


class GracefulServer(uvicorn.Server):
    """uvicorn, with readiness off before the stop and exit status 0 after a clean drain."""

    def __init__(
        self, config: uvicorn.Config, on_drain: Callable[[], None], delay_s: float
    ) -> None:
        super().__init__(config)
        self._on_drain = on_drain
        self._delay_s = delay_s
        self._exit_at: float | None = None

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
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"awnet-serve: {format_validation_error(exc)}", file=sys.stderr)
        return 2

    from service.app import create_app
    from service.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    for name in unknown_env_vars():
        log.warning("ignoring unknown setting %s (see docs/service.md for the list)", name)

    app = create_app(settings)
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
        lifespan="on",
    )
    server = GracefulServer(config, app.state.awnet.begin_drain, settings.shutdown_delay_s)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
