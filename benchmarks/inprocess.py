"""In-process timing: per-call latency and throughput of each session at each batch size.

Cells are (model, mode, batch): the AW-Net graph in three modes (``router``: mix_override
-1, forced ``clean``: 0, forced ``adv``: 1) and each baseline once, on random pixels of the
manifest's input shape. ``--warmup`` untimed calls per cell, then ``--rounds`` interleaved
passes over all cells, each giving every cell 1/rounds of its budget (``--seconds`` or
``--iterations``): a busy moment slows every model alike. Each pass of a cell starts with
``--settle-ms`` of untimed calls: right after a switch the previous session's intra-op
threads still spin-wait (ONNX Runtime's default) and steal a core, which measured ~40 %
slower calls for ~20 ms on 2 cores. Garbage collection is off while timing.

On CUDA every AW-Net cell is timed twice: ``session.run`` with host arrays (what the
service does) and with IO binding (the graph alone), mode ``router+iob``.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.baselines import ModelFiles
from benchmarks.sessions import HostRunner, IoBoundRunner, feeds, make_session, random_images

AWNET_MODES = {"router": -1.0, "clean": 0.0, "adv": 1.0}  # mode -> mix_override value


@dataclass
class Cell:
    """One (model, mode, batch) measurement: per-call latencies in seconds."""

    model: str
    mode: str
    batch: int
    run: Callable[[], Any]
    times: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        t = np.asarray(self.times) * 1e3
        return {
            "model": self.model,
            "mode": self.mode,
            "batch": self.batch,
            "calls": len(t),
            "p50_ms": float(np.percentile(t, 50)),
            "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)),
            "mean_ms": float(t.mean()),
            "min_ms": float(t.min()),
            "images_per_s": float(self.batch * len(t) / (t.sum() / 1e3)),
        }


def _bar(total: int, desc: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the bench and train extras; the bar is a nicety

        class _NoBar:
            def __enter__(self) -> _NoBar:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def update(self, n: int = 1) -> None:
                return None

        return _NoBar()
    return tqdm(total=total, desc=desc, unit="cell", leave=False, file=sys.stderr)


def measure(
    cells: Sequence[Cell],
    *,
    seconds: float,
    iterations: int | None,
    warmup: int,
    rounds: int,
    settle_s: float,
    desc: str,
) -> None:
    """Time each cell, interleaved (see the module docstring)."""
    for cell in cells:
        for _ in range(warmup):
            cell.run()
    per_round_s = seconds / rounds
    per_round_n = math.ceil(iterations / rounds) if iterations else None
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with _bar(rounds * len(cells), desc) as bar:
            for _ in range(rounds):
                for cell in cells:
                    settle_end = time.perf_counter() + settle_s
                    cell.run()
                    while time.perf_counter() < settle_end:
                        cell.run()
                    n = 0
                    start = time.perf_counter()
                    while True:
                        t0 = time.perf_counter()
                        cell.run()
                        t1 = time.perf_counter()
                        cell.times.append(t1 - t0)
                        n += 1
                        if per_round_n is not None:
                            if n >= per_round_n:
                                break
                        elif t1 - start >= per_round_s and n >= 2:
                            break
                    bar.update()
    finally:
        if gc_was:
            gc.enable()


def ort_cells(
    models: dict[str, ModelFiles],
    batches: Sequence[int],
    threads: int,
    device: str = "cpu",
    device_id: int = 0,
) -> tuple[list[Cell], dict[str, str]]:
    """The cells of every model x mode x batch; also the provider each session really uses."""
    sessions = {k: make_session(m.onnx_path, threads, device, device_id) for k, m in models.items()}
    providers = {k: s.get_providers()[0] for k, s in sessions.items()}
    shape = models["awnet"].input_shape
    cells: list[Cell] = []
    for b in batches:
        image = random_images(b, shape)
        for key, sess in sessions.items():
            modes = AWNET_MODES if key == "awnet" else {"-": -1.0}
            for mode, value in modes.items():
                cells.append(Cell(key, mode, b, HostRunner(sess, feeds(image, value))))
            if device == "cuda" and key == "awnet":
                cells.append(
                    Cell(key, "router+iob", b, IoBoundRunner(sess, feeds(image), device_id))
                )
    return cells, providers


def eager_cells(
    checkpoint: Path, batches: Sequence[int], threads: int, shape: Sequence[int]
) -> tuple[list[Cell], str]:
    """PyTorch eager AW-Net forward (``forward_all`` with a per-sample ``mix_override``);
    timed after the ONNX Runtime cells, so torch's thread pool never disturbs them."""
    import torch

    from training.checkpoint import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(checkpoint, "cpu")
    cells = []
    for b in batches:
        x = torch.from_numpy(random_images(b, shape))
        for mode, value in AWNET_MODES.items():
            mix = torch.full((b,), value)

            def run(x: torch.Tensor = x, mix: torch.Tensor = mix) -> Any:
                with torch.inference_mode():
                    return model.forward_all(x, mix).logits

            cells.append(Cell("torch-eager", mode, b, run))
    return cells, torch.__version__


def model_call_ms(latency: list[dict[str, Any]], batch: int = 1) -> float | None:
    """p50 of one AW-Net router-mode call at ``batch`` (the target's 'model call')."""
    for r in latency:
        if r["model"] == "awnet" and r["mode"] == "router" and r["batch"] == batch:
            return r["p50_ms"]
    return None


def throughput(latency: list[dict[str, Any]], batch: int, model: str = "awnet") -> float | None:
    for r in latency:
        if r["model"] == model and r["mode"] in ("router", "-") and r["batch"] == batch:
            return r["images_per_s"]
    return None
