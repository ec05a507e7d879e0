"""The prototype: four 3x3 convs (64 channels, 32x32), each followed by

* plain: ReLU (what a static backbone is);
* bcast: Mul and Add by N x C x 1 x 1 tensors, then ReLU (the folded AW-Net graph);
* nchwc: the same, with the scale made an NCHWc tensor (a static identity 1x1 Conv) and
  upsampled to N x C x H x W by a nearest Resize (ORT's NCHWc Upsample), the shift made an
  NCHWc tensor the same way (ORT broadcasts an NCHWc Add itself).

Prints the parity of nchwc against bcast, the op counts of ORT's optimized graphs and the
latency of each (one thread, interleaved). Usage: python -m experiments.nchwc_affine
[BATCH] [ROUNDS] [static]; with "static" the batch dimension is fixed in the graph (not
servable: dynamic batching needs it symbolic), which lets ORT prove the shapes equal and
keep the whole stack in NCHWc. Recorded run: results/issue9/nchwc-prototype/output.txt."""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

C, H, W, L = 64, 32, 32, 4
GRAPHS = ("plain", "bcast", "nchwc")


def build(kind: str, weights: list[np.ndarray], batch: int | str) -> bytes:
    """The serialized graph of ``kind``; ``batch`` an int (static) or a symbol."""
    eye = np.eye(C, dtype=np.float32).reshape(C, C, 1, 1)
    nodes, inits = [], [nh.from_array(w, f"W{i}") for i, w in enumerate(weights)]
    inits += [nh.from_array(np.array([0, C, 1, 1], np.int64), "shp"), nh.from_array(eye, "I"),
              nh.from_array(np.array([1, 1, H, W], np.float32), "scales"), nh.from_array(np.array([], np.float32), "roi")]  # fmt: skip
    nodes += [h.make_node("Reshape", ["S", "shp"], ["S4"]), h.make_node("Reshape", ["T", "shp"], ["T4"])]  # fmt: skip
    if kind == "nchwc":
        nodes += [h.make_node("Conv", ["S4", "I"], ["Sc"]), h.make_node("Conv", ["T4", "I"], ["Tc"]),
                  h.make_node("Resize", ["Sc", "roi", "scales"], ["Su"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]  # fmt: skip
    x = "X"
    scale, shift = ("Su", "Tc") if kind == "nchwc" else ("S4", "T4")
    for i in range(L):
        nodes.append(h.make_node("Conv", [x, f"W{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        if kind == "plain":
            nodes.append(h.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        else:
            nodes += [h.make_node("Mul", [f"c{i}", scale], [f"m{i}"]), h.make_node("Add", [f"m{i}", shift], [f"a{i}"]),
                      h.make_node("Relu", [f"a{i}"], [f"r{i}"])]  # fmt: skip
        x = f"r{i}"
    g = h.make_graph(nodes, kind, [h.make_tensor_value_info("X", TP.FLOAT, [batch, C, H, W]),
                                   h.make_tensor_value_info("S", TP.FLOAT, [batch, C]),
                                   h.make_tensor_value_info("T", TP.FLOAT, [batch, C])],
                     [h.make_tensor_value_info(x, TP.FLOAT, [batch, C, H, W])], inits)  # fmt: skip
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 32
    rounds = int(argv[1]) if len(argv) > 1 else 20
    batch: int | str = n if len(argv) > 2 and argv[2] == "static" else "N"
    out_dir = tempfile.mkdtemp(prefix="nchwc-")
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.05, (C, C, 3, 3)).astype(np.float32) for _ in range(L)]
    feeds = {"X": rng.random((n, C, H, W), dtype=np.float32),
             "S": rng.random((n, C), dtype=np.float32) + 0.5,
             "T": rng.normal(0, 0.1, (n, C)).astype(np.float32)}  # fmt: skip
    sess = {}
    for k in GRAPHS:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3  # not the notes on unused initializers and the saved graph
        so.optimized_model_filepath = f"{out_dir}/{k}-opt.onnx"
        sess[k] = ort.InferenceSession(build(k, weights, batch), so, providers=["CPUExecutionProvider"])  # fmt: skip
    ref = sess["bcast"].run(None, feeds)[0]
    out = sess["nchwc"].run(None, feeds)[0]
    print("max |nchwc - bcast|", float(np.abs(out - ref).max()))
    for k in sess:
        ops = [node.op_type for node in onnx.load(f"{out_dir}/{k}-opt.onnx").graph.node]
        print(k, {o: ops.count(o) for o in sorted(set(ops))})
    inferred = onnx.shape_inference.infer_shapes(onnx.load_from_string(build("nchwc", weights, batch)))  # fmt: skip
    for v in inferred.graph.value_info:
        if v.name in ("c0", "Su"):
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            print("ONNX shape of", v.name, dims)
    t: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(rounds):
        for k, s in sess.items():
            s.run(None, feeds)
            t0 = time.perf_counter()
            s.run(None, feeds)
            t[k].append(time.perf_counter() - t0)
    for k in t:
        p50 = np.median(t[k])
        print(f"{k:6s} p50 {p50 * 1000:8.2f} ms  vs plain {p50 / np.median(t['plain']):.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
