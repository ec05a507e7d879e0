"""``python -m service``: serve the model repository over HTTP.

Settings come from ``AWNET_*`` environment variables (docs/service.md); an invalid value stops
the start with a message naming the variable (exit code 2).

``AWNET_WORKERS=1`` (default): one uvicorn process (``service/server.py``). More: a supervisor
and that many worker processes on the same port (``service/workers.py``).

SIGTERM / SIGINT: readiness goes false at once; after ``AWNET_SHUTDOWN_DELAY_S`` the server
stops accepting connections, finishes every in-flight and queued request (at most
``AWNET_SHUTDOWN_TIMEOUT_S``), drains the batchers and exits with status 0. A second SIGINT
forces the exit.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from service.settings import Settings, format_validation_error, unknown_env_vars

log = logging.getLogger("service")


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"awnet-serve: {format_validation_error(exc)}", file=sys.stderr)
        return 2

    from service.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    for name in unknown_env_vars():
        log.warning("ignoring unknown setting %s (see docs/service.md for the list)", name)

    if settings.workers > 1:
        from service.workers import supervise

        return supervise(settings)

    from service.server import build_server

    server = build_server(settings)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
