"""ONNX Runtime session wrapper: numpy arrays in, numpy arrays out; no HTTP here.

Provider selection: the requested providers (``AWNET_PROVIDERS``, default CUDA then CPU) are
filtered by what this onnxruntime build offers, the session is created, and then the
providers the session *actually* uses are read back: onnxruntime-gpu lists CUDA as available
even on machines without a GPU or CUDA libraries, and then silently runs on CPU after
printing a long error. That error is muted during session creation and replaced by one
warning (``CUDA not available, running on CPU``), logged once per process.

CPU threads (measured on 2 cores, docs/benchmark.md): the event loop (HTTP, parsing,
batching, answers) needs a core of its own under load. So ``AWNET_INTRA_OP_THREADS=0`` means
"the available cores but one, at least 1" (``intra_op_threads_for``; 1 on 2 cores), not ORT's
one per core; and ORT's threads do not spin-wait between calls (ORT's default, which takes
the loop's core for nothing; ``AWNET_ORT_ALLOW_SPINNING``).

GPU (prepared; nothing here changes the CPU path): the CUDA execution provider gets explicit
options (``cuda_provider_options``: device id, arena growth, cuDNN convolution search, copies
on the compute stream) and, when the session really runs on CUDA, each call goes through IO
binding (``run_with_iobinding``: inputs copied to the device once per call, outputs allocated
by ORT on the host, no per-call reallocation of output buffers by the Python binding).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("service.runtime")

CPU = "CPUExecutionProvider"
_session_lock = threading.Lock()  # the ORT default-logger severity is process-wide
_fallback_warned = False


CUDA = "CUDAExecutionProvider"
CUDNN_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
ARENA_STRATEGIES = ("kNextPowerOfTwo", "kSameAsRequested")


@dataclass(frozen=True)
class RuntimeOptions:
    providers: Sequence[str] = (CUDA, CPU)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    workers: int = 1  # processes sharing the CPUs (AWNET_WORKERS): intra-op threads for 0
    log_severity: int = 3
    # CPU: intra-op threads spin-wait between calls unless this is False (ORT's default is
    # True; on 2 cores the spinning thread takes the event loop's core: off by default here).
    allow_spinning: bool = False
    # CUDA execution provider (ignored on CPU).
    cuda_device_id: int = 0
    cuda_arena_extend_strategy: str = "kSameAsRequested"
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    cuda_mem_limit_bytes: int = 0  # 0: no limit
    io_binding: bool = True  # run through IO binding when the session runs on CUDA

    @classmethod
    def from_settings(cls, s: Settings) -> RuntimeOptions:
        """The options of ``service.settings.Settings`` (``AWNET_*``): their one reader."""
        return cls(
            providers=tuple(s.providers),
            intra_op_threads=s.intra_op_threads,
            inter_op_threads=s.inter_op_threads,
            workers=s.workers,
            log_severity=s.ort_log_severity,
            allow_spinning=s.ort_allow_spinning,
            cuda_device_id=s.cuda_device_id,
            cuda_arena_extend_strategy=s.cuda_arena_extend_strategy,
            cudnn_conv_algo_search=s.cudnn_conv_algo_search,
            cuda_mem_limit_bytes=s.cuda_mem_limit_bytes,
            io_binding=s.io_binding,
        )


def cuda_provider_options(options: RuntimeOptions) -> dict[str, str]:
    """Options of the CUDA execution provider (ONNX Runtime takes them as strings)."""
    opts = {
        "device_id": str(options.cuda_device_id),
        "arena_extend_strategy": options.cuda_arena_extend_strategy,
        "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
        "do_copy_in_default_stream": "1",
    }
    if options.cuda_mem_limit_bytes:
        opts["gpu_mem_limit"] = str(options.cuda_mem_limit_bytes)
    return opts


def provider_list(providers: Sequence[str], options: RuntimeOptions) -> list[str | tuple[str, dict]]:
    """What ``InferenceSession(providers=...)`` gets: CUDA with its options, others by name."""
    return [(p, cuda_provider_options(options)) if p == CUDA else p for p in providers]


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (``docker --cpus``), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def intra_op_threads_for(requested: int, cpus: int | None = None, workers: int = 1) -> int:
    """ORT intra-op threads: ``requested``, or for 0 this worker's share of the available CPUs
    but one (left to its event loop), at least 1."""
    if requested > 0:
        return requested
    return max(1, (available_cpus() if cpus is None else cpus) // max(1, workers) - 1)


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
        self.io_binding = options.io_binding and self.provider == CUDA
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
        so.intra_op_num_threads = intra_op_threads_for(options.intra_op_threads,
                                                       workers=options.workers)
        if options.inter_op_threads:
            so.inter_op_num_threads = options.inter_op_threads
        if not options.allow_spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")

        providers, missing = select_providers(options.providers)
        wants_accelerator = any(p != CPU for p in providers)
        with _session_lock:
            if wants_accelerator:
                # A failing CUDA/TensorRT load is printed by ORT's default logger at ERROR
                # level, whatever the session's severity: mute it, then check the result.
                ort.set_default_logger_severity(4)
            try:
                session = ort.InferenceSession(str(path), sess_options=so,
                                               providers=provider_list(providers, options))
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
            out = self._run_bound(feeds) if self.io_binding else self.session.run(
                list(MODEL_OUTPUTS), feeds)
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

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One call through IO binding (CUDA): host inputs copied to the device, outputs
        allocated by ORT on the host (the service answers from host memory anyway)."""
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in MODEL_OUTPUTS:
            binding.bind_output(name, "cpu")
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.copy_outputs_to_cpu()

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
