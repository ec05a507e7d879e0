"""The lifecycle of a served version: its state, why it is in it, and the drain.

States are Triton's: ``LOADING`` -> ``READY`` or ``UNAVAILABLE``, and ``UNLOADING`` while a
version drains. ``Why`` says which kind of reason a version carries, so that the repository
decides on the kind (was this a failed load, or a version the policy dropped?) and the
text stays free for people (the index and the logs show it).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class State(enum.StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADING = "UNLOADING"


class Why(enum.Enum):
    """The kind of a version's reason (the text is ``Status.reason``)."""

    NONE = "none"
    FAILED = "failed"  # a check failed at load: retried only when its files change
    NOT_SELECTED = "not_selected"  # the version policy does not select it
    UNLOADED = "unloaded"  # drained and released
    DRAINING = "draining"  # unloading: answers only the requests that already hold it
    KEPT_SERVING = "kept_serving"  # not selected, but no selected version is ready yet
    STALE_FILES = "stale_files"  # new files of a serving version failed; the old ones serve on
    SHUTTING_DOWN = "shutting_down"


@dataclass
class Status:
    state: State = State.LOADING
    why: Why = Why.NONE
    reason: str = ""

    def set(self, state: State, why: Why = Why.NONE, reason: str = "") -> None:
        self.state, self.why, self.reason = state, why, reason

    def note(self, why: Why, reason: str) -> None:
        """A reason on a version whose state does not change (serving, with a remark)."""
        self.why, self.reason = why, reason

    @property
    def retryable(self) -> bool:
        """UNAVAILABLE for a reason a reload would not cure unless its files change."""
        return not (self.state == State.UNAVAILABLE and self.why == Why.FAILED)


async def drain(
    holders: Callable[[], int], deadline_s: float, finish: Callable[[], Awaitable[None]]
) -> float:
    """Wait until no request holds the version (or ``deadline_s``), then ``finish`` it (close
    its batcher, which answers what is still queued); the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    while holders() > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await finish()
    return time.monotonic() - t0
