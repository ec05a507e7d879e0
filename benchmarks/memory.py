"""Memory: peak RSS of a fresh process per model, and a server's RSS over N requests.

* ``measure_memory``: each model in its own fresh process (``python -m benchmarks.memory``)
  that imports the runtime, loads the session and runs the largest batch 3 times; its peak
  RSS is ``VmHWM`` (getrusage elsewhere). A process that only imports the runtime gives the
  interpreter's share, subtracted in the "minus interpreter" row.
* ``rss_over_requests``: the resident set of a running server (its whole process tree),
  sampled after each chunk of requests; growth is measured from the sample after the
  warm-up chunk, so first-call allocations (arena, caches) do not count as a leak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.baselines import ModelFiles
from benchmarks.common import ROOT, peak_rss_bytes, proc_status_bytes, ratio, tree_rss_bytes
from benchmarks.sessions import feeds, make_session, random_images


# --- fresh process per model ----------------------------------------------------------------------
def probe_main(argv: Sequence[str] | None = None) -> int:
    """Subprocess: import the runtime, load one model, run the largest batch, report VmHWM."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    p.add_argument("--runtime", choices=("ort", "torch"), default="ort")
    p.add_argument(
        "--model",
        default=None,
        help="model.onnx (ort) or checkpoint (torch); none = interpreter only",
    )
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--shape", type=int, nargs="+", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--calls", type=int, default=3)
    a = p.parse_args(argv)
    image = random_images(a.batch, a.shape)
    if a.runtime == "ort":
        import onnxruntime  # noqa: F401 - the interpreter baseline includes the runtime
    else:
        import torch

        from training.checkpoint import load_model

        torch.set_num_threads(a.threads)
    after_import = peak_rss_bytes()
    if a.model:
        if a.runtime == "ort":
            sess = make_session(Path(a.model), a.threads)
            for _ in range(a.calls):
                sess.run(None, feeds(image))
        else:
            model, _ = load_model(a.model, "cpu")
            x, mix = torch.from_numpy(image), torch.full((a.batch,), -1.0)
            with torch.inference_mode():
                for _ in range(a.calls):
                    model.forward_all(x, mix)
    print(
        json.dumps(
            {
                "peak_rss_bytes": peak_rss_bytes(),
                "peak_rss_after_import_bytes": after_import,
                "rss_bytes": proc_status_bytes("VmRSS"),
            }
        )
    )
    return 0


def probe(
    runtime: str, model: Path | None, batch: int, shape: Sequence[int], threads: int
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--runtime",
        runtime,
        "--batch",
        str(batch),
        "--shape",
        *map(str, shape),
        "--threads",
        str(threads),
    ]
    if model is not None:
        cmd += ["--model", str(model)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"error: memory probe failed: {' '.join(cmd)}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure_memory(
    models: dict[str, ModelFiles], batch: int, threads: int, eager_ckpt: Path | None
) -> dict[str, Any]:
    """Peak RSS of a fresh process per model, and of one that only imports the runtime: the
    difference is what the model (weights, session, arena for the batch) costs."""
    shape = models["awnet"].input_shape
    jobs: list[tuple[str, str, Path | None]] = [("interpreter+onnxruntime", "ort", None)]
    jobs += [(k, "ort", m.onnx_path) for k, m in models.items()]
    if eager_ckpt is not None:
        jobs += [("interpreter+torch", "torch", None), ("torch-eager", "torch", eager_ckpt)]
    out: dict[str, Any] = {
        "batch": batch,
        "method": "VmHWM of a fresh subprocess: load, then 3 calls at this batch",
    }
    for name, runtime, model in jobs:
        out[name] = probe(runtime, model, batch, shape, threads)
    for name, _, model in jobs:
        if model is None:
            continue
        base = out["interpreter+torch" if name == "torch-eager" else "interpreter+onnxruntime"][
            "peak_rss_bytes"
        ]
        out[name]["model_rss_bytes"] = out[name]["peak_rss_bytes"] - base
    for other in ("static", "plain"):
        if other in out:
            out[f"ratio_awnet_{other}_peak_rss"] = ratio(
                out["awnet"]["peak_rss_bytes"], out[other]["peak_rss_bytes"]
            )
            out[f"ratio_awnet_{other}_model_rss"] = ratio(
                out["awnet"]["model_rss_bytes"], out[other]["model_rss_bytes"]
            )
    return out


# --- a running server over N requests -------------------------------------------------------------
def rss_over_requests(
    pid: int, send: Callable[[int], dict[str, Any]], total: int, chunks: int, warmup: int
) -> dict[str, Any]:
    """Send ``warmup`` requests, then ``total`` in ``chunks`` equal parts (``send(n)`` sends
    about n and returns wrk's summary), sampling the server tree's RSS after each."""
    chunks = max(1, min(chunks, total))
    per = max(1, total // chunks)
    first = send(warmup) if warmup else None
    samples = [{"requests": 0, "rss_bytes": tree_rss_bytes(pid)}]
    done, errors = 0, (first or {}).get("errors_total", 0)
    for _ in range(chunks):
        res = send(per)
        done += res.get("ok", 0)
        errors += res.get("errors_total", 0)
        samples.append({"requests": done, "rss_bytes": tree_rss_bytes(pid)})
    start, end = samples[0]["rss_bytes"], samples[-1]["rss_bytes"]
    peak = max(s["rss_bytes"] for s in samples)
    return {
        "warmup_requests": warmup,
        "requests": done,
        "errors": errors,
        "samples": samples,
        "start_rss_bytes": start,
        "end_rss_bytes": end,
        "peak_rss_bytes": peak,
        "growth": ratio(end - start, start),
        "peak_growth": ratio(peak - start, start),
    }


if __name__ == "__main__":
    sys.exit(probe_main())
