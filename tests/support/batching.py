"""The batcher's unit-test pieces (tests/service): a fake model runner, a request, a started
``DynamicBatcher``.

``Runner`` records the batch sizes it is called with and the thread of each call; ``started`` is set on each call,
``gate`` (set) can be cleared to block calls, ``delay`` slows them and ``fail`` makes them
raise. ``batcher(runner, max_delay_s=...)`` takes the batching delay as a parameter (each test
file has its own default); other ``DynamicBatcher`` options as keywords.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from service.batching import DynamicBatcher


class Runner:
    """A fake model: records batch sizes, can be slowed or blocked or made to fail."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.threads: list[str] = []  # the thread each call ran on
        self.delay = delay
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, image: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
        self.started.set()
        self.gate.wait(10)
        self.calls.append(int(image.shape[0]))
        self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("boom")
        flat = image.reshape(image.shape[0], -1)
        return {"logits": flat[:, :2].copy(), "p_adv": flat[:, 0].copy(), "mix": mix.copy()}


def req(value: float, n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 1x2x2 images filled with ``value`` and no mix override (-1)."""
    return np.full((n, 1, 2, 2), value, np.float32), np.full((n,), -1.0, np.float32)


def batcher(runner: Runner, *, max_delay_s: float, **kw) -> DynamicBatcher:
    """A started ``DynamicBatcher`` over ``runner`` (name t/1, batches of 8, a queue of 64)."""
    opts = {"name": "t/1", "max_batch_size": 8, "max_delay_s": max_delay_s, "max_queue_size": 64}
    opts.update(kw)
    b = DynamicBatcher(runner, **opts)
    b.start()
    return b
