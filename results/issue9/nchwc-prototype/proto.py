"""Can a per-sample, per-channel affine after each conv stay in ONNX Runtime's NCHWc layout
with standard ONNX ops only? Four 3x3 convs (64 channels, 32x32) each followed by

* plain: ReLU (what a static backbone is);
* bcast: Mul and Add by N x C x 1 x 1 tensors, then ReLU (the folded AW-Net graph);
* nchwc: the same, with the scale made an NCHWc tensor (a static identity 1x1 Conv) and
  upsampled to N x C x H x W by a nearest Resize (ORT's NCHWc Upsample), the shift made an
  NCHWc tensor the same way (ORT broadcasts an NCHWc Add itself).

Prints the parity of nchwc against bcast, the op counts of ORT's optimized graphs and the
latency of each (one thread, interleaved). Usage: proto.py [BATCH] [ROUNDS] [static]; with
"static" the batch dimension is fixed in the graph (not servable: dynamic batching needs it
symbolic), which lets ORT prove the shapes equal and keep the whole stack in NCHWc."""
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

OUT = tempfile.mkdtemp(prefix="nchwc-")

N, C, H, W, L = int(sys.argv[1]) if len(sys.argv) > 1 else 32, 64, 32, 32, 4
BATCH = N if len(sys.argv) > 3 and sys.argv[3] == "static" else "N"
rng = np.random.default_rng(0)
Ws = [rng.normal(0, 0.05, (C, C, 3, 3)).astype(np.float32) for _ in range(L)]
EYE = np.eye(C, dtype=np.float32).reshape(C, C, 1, 1)

def build(kind):
    nodes, inits = [], [nh.from_array(w, f"W{i}") for i, w in enumerate(Ws)]
    inits += [nh.from_array(np.array([0, C, 1, 1], np.int64), "shp"), nh.from_array(EYE, "I"),
              nh.from_array(np.array([1, 1, H, W], np.float32), "scales"), nh.from_array(np.array([], np.float32), "roi")]
    nodes += [h.make_node("Reshape", ["S", "shp"], ["S4"]), h.make_node("Reshape", ["T", "shp"], ["T4"])]
    if kind == "nchwc":
        nodes += [h.make_node("Conv", ["S4", "I"], ["Sc"]), h.make_node("Conv", ["T4", "I"], ["Tc"]),
                  h.make_node("Resize", ["Sc", "roi", "scales"], ["Su"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")]
    x = "X"
    for i in range(L):
        nodes.append(h.make_node("Conv", [x, f"W{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        if kind == "plain":
            nodes.append(h.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        elif kind == "bcast":
            nodes += [h.make_node("Mul", [f"c{i}", "S4"], [f"m{i}"]), h.make_node("Add", [f"m{i}", "T4"], [f"a{i}"]),
                      h.make_node("Relu", [f"a{i}"], [f"r{i}"])]
        else:
            nodes += [h.make_node("Mul", [f"c{i}", "Su"], [f"m{i}"]), h.make_node("Add", [f"m{i}", "Tc"], [f"a{i}"]),
                      h.make_node("Relu", [f"a{i}"], [f"r{i}"])]
        x = f"r{i}"
    g = h.make_graph(nodes, kind, [h.make_tensor_value_info("X", TP.FLOAT, [BATCH, C, H, W]),
                                   h.make_tensor_value_info("S", TP.FLOAT, [BATCH, C]),
                                   h.make_tensor_value_info("T", TP.FLOAT, [BATCH, C])],
                     [h.make_tensor_value_info(x, TP.FLOAT, [BATCH, C, H, W])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()

X = rng.random((N, C, H, W), dtype=np.float32)
S = rng.random((N, C), dtype=np.float32) + 0.5
T = rng.normal(0, 0.1, (N, C)).astype(np.float32)
sess = {}
for k in ("plain", "bcast", "nchwc"):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3  # not the notes on unused initializers and the saved graph
    so.optimized_model_filepath = f"{OUT}/{k}-opt.onnx"
    sess[k] = ort.InferenceSession(build(k), so, providers=["CPUExecutionProvider"])
ref = sess["bcast"].run(None, {"X": X, "S": S, "T": T})[0]
out = sess["nchwc"].run(None, {"X": X, "S": S, "T": T})[0]
print("max |nchwc - bcast|", float(np.abs(out - ref).max()))
for k in sess:
    ops = [n.op_type for n in onnx.load(f"{OUT}/{k}-opt.onnx").graph.node]
    print(k, {o: ops.count(o) for o in sorted(set(ops))})
inferred = onnx.shape_inference.infer_shapes(onnx.load_from_string(build("nchwc")))
for v in inferred.graph.value_info:
    if v.name in ("c0", "Su"):
        print("ONNX shape of", v.name, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
feeds = {"X": X, "S": S, "T": T}
t = {k: [] for k in sess}
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 20):
    for k, s in sess.items():
        s.run(None, feeds)
        t0 = time.perf_counter()
        s.run(None, feeds)
        t[k].append(time.perf_counter() - t0)
for k in t:
    print(f"{k:6s} p50 {np.median(t[k])*1000:8.2f} ms  vs plain {np.median(t[k])/np.median(t['plain']):.3f}x")
