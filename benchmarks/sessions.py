"""ONNX Runtime sessions configured like the service's (service/runtime.py), on CPU or CUDA.

One owner for how every part of the benchmark opens a model: the in-process timing, the
memory probes and the PyTriton backend (which runs in its own venv: numpy and onnxruntime
only here; from ``service`` only the numpy-only ``service/postprocess.py``).

CPU: all graph optimisations, sequential execution, ``threads`` intra-op threads (0 = the
usable cores but one, at least 1, as the service's ``AWNET_INTRA_OP_THREADS=0``: the event
loop keeps a core), one inter-op thread, no spin-waiting between calls (as the service's
``AWNET_ORT_ALLOW_SPINNING=false``; service/runtime.py).

CUDA (``--device cuda``; prepared, not measurable on a machine without a GPU): the CUDA
execution provider with explicit options, then CPU for the nodes CUDA does not take.

* ``device_id``: which GPU (``--cuda-device``);
* ``arena_extend_strategy="kSameAsRequested"``: the arena grows by what is asked, not by
  powers of two, so a batch-128 cell does not pin twice its memory;
* ``cudnn_conv_algo_search="EXHAUSTIVE"``: cuDNN tries every convolution algorithm once
  per input shape (slow first call, fastest steady state; the warm-up pays for it);
* ``do_copy_in_default_stream=True``: host-device copies on the compute stream (ordered).

IO binding (``IoBoundRunner``): inputs are copied to the GPU once, outputs stay there, and
``run_with_iobinding`` times the graph alone, without the per-call host copies that
``session.run`` makes; the benchmark reports both for CUDA.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artifact_contract import INPUT_IMAGE, INPUT_MIX, MODEL_OUTPUTS

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("cpu", "cuda")


class DeviceUnavailable(RuntimeError):
    """The requested execution provider is not what the session ended up using."""


def cuda_provider_options(device_id: int = 0) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "do_copy_in_default_stream": True,
    }


def providers_for(device: str, device_id: int = 0) -> list[Any]:
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        return [(CUDA, cuda_provider_options(device_id)), CPU]
    raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


def intra_op_threads(threads: int) -> int:
    """``threads``, or for 0 the usable cores but one, at least 1 (service/runtime.py's rule,
    repeated here: this module imports nothing from ``service``)."""
    if threads > 0:
        return threads
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def make_session(
    path: str | Path, threads: int = 0, device: str = "cpu", device_id: int = 0
) -> Any:
    """A session like the service's; raises ``DeviceUnavailable`` when CUDA was asked for
    and ONNX Runtime fell back to CPU (onnxruntime-gpu does that silently without a GPU)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = intra_op_threads(threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if device == "cuda":
        ort.set_default_logger_severity(4)  # the failed CUDA load is reported below, once
    try:
        sess = ort.InferenceSession(
            str(path), sess_options=so, providers=providers_for(device, device_id)
        )
    finally:
        ort.set_default_logger_severity(3)
    if device == "cuda" and sess.get_providers()[0] != CUDA:
        raise DeviceUnavailable(
            f"--device cuda: ONNX Runtime {ort.__version__} runs {path} on {sess.get_providers()}; "
            f"no usable GPU here (available providers: {ort.get_available_providers()})"
        )
    return sess


def feeds(images: np.ndarray, mix: float = -1.0) -> dict[str, np.ndarray]:
    """The graph's two inputs (artifact_contract names) for a batch of images."""
    n = int(images.shape[0])
    return {INPUT_IMAGE: images, INPUT_MIX: np.full(n, mix, np.float32)}


def random_images(batch: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Pixels in [0, 1] of shape ``[batch, *shape]``, the same for the same batch size."""
    return np.random.default_rng(seed + batch).random((batch, *shape), dtype=np.float32)


class HostRunner:
    """``session.run`` with host arrays: what the service does (copies in and out per call)."""

    def __init__(self, sess: Any, inputs: dict[str, np.ndarray]) -> None:
        self.sess, self.inputs = sess, inputs

    def __call__(self) -> Any:
        return self.sess.run(list(MODEL_OUTPUTS), self.inputs)


class IoBoundRunner:
    """``run_with_iobinding``: inputs bound once on the device, outputs left there."""

    def __init__(self, sess: Any, inputs: dict[str, np.ndarray], device_id: int = 0) -> None:
        import onnxruntime as ort

        self.sess = sess
        self.binding = sess.io_binding()
        self._values = {
            k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", device_id) for k, v in inputs.items()
        }
        for name, value in self._values.items():
            self.binding.bind_ortvalue_input(name, value)
        for name in MODEL_OUTPUTS:
            self.binding.bind_output(name, "cuda", device_id)

    def __call__(self) -> None:
        self.binding.synchronize_inputs()
        self.sess.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
