"""Whether a request is alone in this server process: a batcher then runs a lone one-image
request on the event loop (AWNET_INLINE_MAX_MS, service/batching.py).

Alone means no other request in progress (uvicorn's request tasks, one per request whose
head has arrived) and no other open connection. The second condition keeps it to one
sequential client: with many connections at moderate load a request is briefly alone about
1 % of the time, and inlining those raised the tail latency (docs/decisions.md).
"""

from __future__ import annotations

from typing import Any


class Occupancy:
    """Reads uvicorn's server state once the server binds it (service/server.py); an app
    served another way (tests' in-process clients) is never alone."""

    def __init__(self) -> None:
        self._server_state: Any = None

    def bind(self, server_state: Any) -> None:
        """``uvicorn.Server.server_state``: its ``tasks`` and ``connections``."""
        self._server_state = server_state

    def alone(self) -> bool:
        state = self._server_state
        return state is not None and len(state.tasks) <= 1 and len(state.connections) <= 1
