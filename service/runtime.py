"""ONNX Runtime session wrapper: numpy arrays in, numpy arrays out; no HTTP here.

Provider selection: the requested providers (``AWNET_PROVIDERS``, default CUDA then CPU) are
filtered by what this onnxruntime build offers, the session is created, and then the
providers the session *actually* uses are read back: onnxruntime-gpu lists CUDA as available
even on machines without a GPU or CUDA libraries, and then silently runs on CPU after
printing a long error. That error is muted during session creation and replaced by one
warning (``CUDA not available, running on CPU``), logged once per process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artifact_contract import (
    INPUT_IMAGE,
    INPUT_MIX,
    MODEL_OUTPUTS,
    OUTPUT_LOGITS,
    OUTPUT_MIX,
    OUTPUT_P_ADV,
    ArtifactError,
)
from service.artifact import Artifact, check_graph

log = logging.getLogger("service.runtime")

CPU = "CPUExecutionProvider"
_session_lock = threading.Lock()  # the ORT default-logger severity is process-wide
_fallback_warned = False


@dataclass(frozen=True)
class RuntimeOptions:
    providers: Sequence[str] = ("CUDAExecutionProvider", CPU)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    log_severity: int = 3


def select_providers(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(providers to ask for, requested providers this onnxruntime build does not have)."""
    available = set(ort.get_available_providers())
    chosen = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available]
    if CPU not in chosen:
        chosen.append(CPU)  # ORT always falls back to CPU; make it explicit
    return chosen, missing


def _warn_fallback_once(requested: Sequence[str], actual: Sequence[str], detail: str) -> None:
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    wanted = [p for p in requested if p != CPU]
    if any("CUDA" in p or "Tensorrt" in p for p in wanted):
        log.warning(
            "CUDA not available, running on CPU",
            extra={"requested_providers": list(requested), "providers": list(actual),
                   "detail": detail},
        )
    else:
        log.warning(
            "execution providers %s not available, running on CPU", wanted,
            extra={"requested_providers": list(requested), "providers": list(actual),
                   "detail": detail},
        )


class OnnxModel:
    """One ONNX Runtime session for one model version."""

    def __init__(self, artifact: Artifact, options: RuntimeOptions) -> None:
        self.artifact = artifact
        self.options = options
        self.session = self._create_session(artifact.onnx_path, options)
        self.providers: list[str] = list(self.session.get_providers())
        self.provider: str = self.providers[0] if self.providers else CPU
        try:
            check_graph(artifact, self.session.get_inputs(), self.session.get_outputs())
        except ArtifactError:
            self.session = None  # type: ignore[assignment]
            raise

    @staticmethod
    def _create_session(path: Path, options: RuntimeOptions) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.log_severity_level = options.log_severity
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if options.intra_op_threads:
            so.intra_op_num_threads = options.intra_op_threads
        if options.inter_op_threads:
            so.inter_op_num_threads = options.inter_op_threads

        providers, missing = select_providers(options.providers)
        wants_accelerator = any(p != CPU for p in providers)
        with _session_lock:
            if wants_accelerator:
                # A failing CUDA/TensorRT load is printed by ORT's default logger at ERROR
                # level, whatever the session's severity: mute it, then check the result.
                ort.set_default_logger_severity(4)
            try:
                session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises several private types
                raise ArtifactError(f"{path}: ONNX Runtime cannot load the model: {exc}") from exc
            finally:
                ort.set_default_logger_severity(options.log_severity)

        actual = session.get_providers()
        requested_accel = [p for p in options.providers if p != CPU]
        if requested_accel and not any(p in actual for p in requested_accel):
            detail = (
                f"{', '.join(missing)} not in this onnxruntime build" if missing and
                set(missing) >= set(requested_accel)
                else "the provider failed to load (no GPU or CUDA/cuDNN libraries)"
            )
            _warn_fallback_once(options.providers, actual, detail)
        return session

    # ---------------------------------------------------------------------------------------
    def run(
        self,
        image: np.ndarray,
        mix_override: np.ndarray,
        *,
        max_batch_size: int | None = None,
        on_call: Callable[[int, float], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the graph; batches above ``max_batch_size`` are split into several calls.

        ``on_call(batch_size, seconds)`` is called after each ONNX Runtime call (metrics).
        """
        n = int(image.shape[0])
        step = max_batch_size or n or 1
        parts: list[list[np.ndarray]] = []
        for start in range(0, max(n, 1), step):
            feeds = {
                INPUT_IMAGE: np.ascontiguousarray(image[start:start + step], dtype=np.float32),
                INPUT_MIX: np.ascontiguousarray(mix_override[start:start + step], dtype=np.float32),
            }
            t0 = time.perf_counter()
            out = self.session.run(list(MODEL_OUTPUTS), feeds)
            if on_call is not None:
                on_call(int(feeds[INPUT_IMAGE].shape[0]), time.perf_counter() - t0)
            parts.append(out)
        if len(parts) == 1:
            result = dict(zip(MODEL_OUTPUTS, parts[0], strict=True))
        else:
            result = {
                name: np.concatenate([p[i] for p in parts], axis=0)
                for i, name in enumerate(MODEL_OUTPUTS)
            }
        self._check_outputs(result, n)
        return result

    def _check_outputs(self, out: dict[str, np.ndarray], n: int) -> None:
        k = self.artifact.num_classes
        expected = {OUTPUT_LOGITS: (n, k), OUTPUT_P_ADV: (n,), OUTPUT_MIX: (n,)}
        for name, shape in expected.items():
            if tuple(out[name].shape) != shape:
                raise RuntimeError(
                    f"output {name!r} has shape {list(out[name].shape)}, expected {list(shape)}"
                )

    def warmup(self, runs: int, batch_sizes: Sequence[int]) -> None:
        """Run the graph on zeros for each batch size; raises if outputs are wrong or NaN."""
        c, h, w = self.artifact.input_shape
        for bs in sorted(set(batch_sizes)):
            image = np.zeros((bs, c, h, w), dtype=np.float32)
            mix = np.full((bs,), -1.0, dtype=np.float32)
            for _ in range(runs):
                out = self.run(image, mix)
                for name, arr in out.items():
                    if not np.all(np.isfinite(arr)):
                        raise RuntimeError(f"warm-up output {name!r} is not finite")
