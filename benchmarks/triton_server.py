"""PyTriton serving the same ONNX model, side by side with the service (run in its own venv).

``python -m benchmarks.triton_server --model-dir DIR --http-port N ...``, started by
``benchmarks.servers`` with the Python of ``.venv-triton`` (``pip install -e ".[triton]"``
there: nvidia-pytriton pins numpy<2, which the project's venv does not have).

The same session as the service (``benchmarks.sessions``: the service's options) runs in
Triton's Python backend behind Triton's dynamic batcher (``--max-batch`` 32, ``--delay-us``
2000: issue 9's configuration, the service's former defaults ``AWNET_MAX_BATCH_SIZE=32`` and
``AWNET_MAX_QUEUE_DELAY_MS=2``; the service now batches adaptively, delay 0),
and answers the same five outputs the service computes per batch: logits, p_adv, mix,
softmax probabilities and the router verdict at the manifest's threshold (with the service's
own code, ``service/postprocess.py``: numpy only). Triton needs at
least one dimension per sample, so the per-sample scalars come back as ``[N, 1]``.

Triton's server binary loads ``libpython`` for the Python backend stub: LD_LIBRARY_PATH gets
this interpreter's library folder first. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import sysconfig
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from artifact_contract import (
    INPUT_IMAGE,
    INPUT_MIX,
    MODEL_OUTPUTS,
    OUTPUT_LOGITS,
    OUTPUT_MIX,
    OUTPUT_P_ADV,
    Manifest,
)
from benchmarks.sessions import make_session
from service.postprocess import OUTPUT_ADVERSARIAL, OUTPUT_PROBABILITIES, derive

READY_LINE = "TRITON_READY"


def python_libdir() -> str:
    return str(sysconfig.get_config_var("LIBDIR") or Path(sys.base_prefix) / "lib")


def with_libpython(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this Python's lib folder first in LD_LIBRARY_PATH."""
    parts = [python_libdir(), *[p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]]
    return {**env, "LD_LIBRARY_PATH": os.pathsep.join(dict.fromkeys(parts))}


def make_infer(sess: object, threshold: float):  # noqa: ANN201 - pytriton's decorated callable
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        image = inputs[INPUT_IMAGE]
        n = image.shape[0]
        mix = inputs.get(INPUT_MIX)
        mix = np.full(n, -1.0, np.float32) if mix is None else mix.reshape(n).astype(np.float32)
        out = dict(zip(MODEL_OUTPUTS, sess.run(list(MODEL_OUTPUTS),
                                               {INPUT_IMAGE: image, INPUT_MIX: mix}), strict=True))
        out = derive(out, threshold)
        return {
            OUTPUT_LOGITS: out[OUTPUT_LOGITS],
            OUTPUT_P_ADV: out[OUTPUT_P_ADV].reshape(n, 1),
            OUTPUT_MIX: out[OUTPUT_MIX].reshape(n, 1),
            OUTPUT_PROBABILITIES: out[OUTPUT_PROBABILITIES],
            OUTPUT_ADVERSARIAL: out[OUTPUT_ADVERSARIAL].reshape(n, 1),
        }

    return infer


def serve(a: argparse.Namespace) -> int:
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    manifest = Manifest.load(a.model_dir)
    onnx_path = manifest.verify_folder(a.model_dir, check_names=False)
    sess = make_session(onnx_path, a.threads, a.device, a.cuda_device)
    k = len(manifest.class_names)
    threshold = manifest.threshold if manifest.threshold is not None else 0.5
    c, h, w = manifest.input.shape
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=a.http_port,
        grpc_address="127.0.0.1",
        grpc_port=a.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=a.metrics_port,
        log_verbose=0,
        exit_timeout_secs=5,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Triton(config=config) as triton:
        triton.bind(
            model_name=manifest.name,
            infer_func=make_infer(sess, threshold),
            inputs=[
                Tensor(name=INPUT_IMAGE, dtype=np.float32, shape=(c, h, w)),
                Tensor(name=INPUT_MIX, dtype=np.float32, shape=(1,), optional=True),
            ],
            outputs=[
                Tensor(name=OUTPUT_LOGITS, dtype=np.float32, shape=(k,)),
                Tensor(name=OUTPUT_P_ADV, dtype=np.float32, shape=(1,)),
                Tensor(name=OUTPUT_MIX, dtype=np.float32, shape=(1,)),
                Tensor(name=OUTPUT_PROBABILITIES, dtype=np.float32, shape=(k,)),
                Tensor(name=OUTPUT_ADVERSARIAL, dtype=np.bool_, shape=(1,)),
            ],
            config=ModelConfig(
                max_batch_size=a.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=a.delay_us),
            ),
            strict=False,
        )
        triton.run()
        print(READY_LINE, flush=True)
        stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.triton_server", description=__doc__.splitlines()[0]
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--delay-us", type=int, default=2000)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="ORT intra-op threads (0 = the cores but one, as the service)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--cuda-device", type=int, default=0)
    a = p.parse_args(argv)
    # The Triton binary and its Python backend stub are started by pytriton with this
    # process's environment: libpython must be on their loader path.
    os.environ["LD_LIBRARY_PATH"] = with_libpython(dict(os.environ))["LD_LIBRARY_PATH"]
    return serve(a)


if __name__ == "__main__":
    sys.exit(main())
