"""A contract-conforming AW-Net-like ONNX model built with onnx.helper (no torch).

Graph (docs/contracts.md): inputs ``image`` float32 [N, C, H, W] and ``mix_override``
float32 [N]; outputs ``logits`` [N, K], ``p_adv`` [N], ``mix`` [N].

* ``p_adv = sigmoid(SHARPNESS * (mad - MAD_CENTER))`` where ``mad`` is the mean absolute
  deviation of the image from its 3x3 box-blurred version: smooth images score low, noisy
  (e.g. uniform noise) images score high.
* ``mix = Where(mix_override >= 0, mix_override, p_adv)``.
* ``logits = (1 - mix) * (flat @ W_clean) + mix * (flat @ W_robust) + b``.
* ``slow_layers > 0`` adds a chain of 512x512 MatMul+Tanh that depends on the input and is
  multiplied by 0, so each call takes a while whatever the batch size (overload tests).

Also writes the manifest (``artifact_contract.Manifest``, with the real sha256) into a model
repository folder: ``write_model_version(repo)`` is the one fake artifact of every test folder
(service tests, the deployment tests' live service, ...).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from artifact_contract import (
    MODEL_INPUTS,
    MODEL_OUTPUTS,
    ROBUSTNESS_KEY,
    InputSpec,
    Manifest,
    OnnxSpec,
    Robustness,
    io_shapes,
)

FAKE_MODEL = "awnet-fake"
# The evaluation card summary the fake versions carry (a version with a router also has its shares).
FAKE_ROBUSTNESS = Robustness(
    card_format="awnet-serve-evaluation/1", split="test", samples=500, eps=0.3, budget="reproduce",
    clean_acc=0.1, worst_case_acc=0.05, worst_case_wra=0.075, attacks={"pgd20": 0.1, "autoattack": 0.05},
    sanity_passed=True, missed=0.2, detected_share=0.4, clean_fpr=0.01,
)  # fmt: skip
SHARPNESS = 60.0
MAD_CENTER = 0.1
SLOW_SIZE = 512
OPSET = 17


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name=name)


def build_model(
    shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    *,
    slow_layers: int = 0,
    seed: int = 0,
    input_names: tuple[str, ...] = MODEL_INPUTS,
    output_names: tuple[str, ...] = MODEL_OUTPUTS,
    static_batch: bool = False,
) -> onnx.ModelProto:
    c, h, w = shape
    d = c * h * w
    rng = np.random.default_rng(seed)
    w_clean = (rng.standard_normal((d, num_classes)) / np.sqrt(d)).astype(np.float32)
    w_robust = (rng.standard_normal((d, num_classes)) / np.sqrt(d)).astype(np.float32)
    bias = (rng.standard_normal(num_classes) * 0.1).astype(np.float32)
    image_name, mix_name = input_names
    logits_name, p_adv_name, mix_out_name = output_names
    batch: Any = 1 if static_batch else "N"

    init = [
        _const("W_clean", w_clean),
        _const("W_robust", w_robust),
        _const("bias", bias),
        _const("flat_shape", np.array([0, -1], dtype=np.int64)),
        _const("zero", np.array(0.0, dtype=np.float32)),
        _const("one", np.array(1.0, dtype=np.float32)),
        _const("sharpness", np.array(SHARPNESS, dtype=np.float32)),
        _const("center", np.array(MAD_CENTER, dtype=np.float32)),
        _const("axis1", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        # router score from the image's roughness
        helper.make_node(
            "AveragePool",
            [image_name],
            ["smooth"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            count_include_pad=0,
        ),
        helper.make_node("Sub", [image_name, "smooth"], ["dev"]),
        helper.make_node("Abs", ["dev"], ["absdev"]),
        helper.make_node("ReduceMean", ["absdev"], ["mad"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["mad", "center"], ["centered"]),
        helper.make_node("Mul", ["centered", "sharpness"], ["score"]),
        helper.make_node("Sigmoid", ["score"], [p_adv_name]),
        # mix: the override where it is >= 0, else the router's p_adv
        helper.make_node("GreaterOrEqual", [mix_name, "zero"], ["use_override"]),
        helper.make_node("Where", ["use_override", mix_name, p_adv_name], [mix_out_name]),
        # two linear branches mixed per sample
        helper.make_node("Reshape", [image_name, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W_clean"], ["lc"]),
        helper.make_node("MatMul", ["flat", "W_robust"], ["lr"]),
        helper.make_node("Unsqueeze", [mix_out_name, "axis1"], ["mix_col"]),
        helper.make_node("Sub", ["one", "mix_col"], ["one_minus"]),
        helper.make_node("Mul", ["lc", "one_minus"], ["lc_w"]),
        helper.make_node("Mul", ["lr", "mix_col"], ["lr_w"]),
        helper.make_node("Add", ["lc_w", "lr_w"], ["mixed"]),
    ]
    last = "mixed"
    if slow_layers > 0:
        mat = (rng.standard_normal((SLOW_SIZE, SLOW_SIZE)) / np.sqrt(SLOW_SIZE)).astype(np.float32)
        init += [
            _const("slow_w", mat),
            _const("slow_seed", np.ones((SLOW_SIZE, SLOW_SIZE), np.float32)),
        ]
        nodes += [
            helper.make_node("ReduceMean", [image_name], ["img_mean"], keepdims=0),
            helper.make_node("Mul", ["slow_seed", "img_mean"], ["s0"]),
        ]
        prev = "s0"
        for i in range(slow_layers):
            nodes += [
                helper.make_node("MatMul", [prev, "slow_w"], [f"sm{i}"]),
                helper.make_node("Tanh", [f"sm{i}"], [f"st{i}"]),
            ]
            prev = f"st{i}"
        nodes += [
            helper.make_node("ReduceMean", [prev], ["slow_mean"], keepdims=0),
            helper.make_node("Mul", ["slow_mean", "zero"], ["slow_zero"]),
            helper.make_node("Add", ["mixed", "slow_zero"], ["mixed_slow"]),
        ]
        last = "mixed_slow"
    nodes.append(helper.make_node("Add", [last, "bias"], [logits_name]))

    graph = helper.make_graph(
        nodes,
        "fake_awnet",
        [
            helper.make_tensor_value_info(image_name, TensorProto.FLOAT, [batch, c, h, w]),
            helper.make_tensor_value_info(mix_name, TensorProto.FLOAT, [batch]),
        ],
        [
            helper.make_tensor_value_info(logits_name, TensorProto.FLOAT, [batch, num_classes]),
            helper.make_tensor_value_info(p_adv_name, TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info(mix_out_name, TensorProto.FLOAT, [batch]),
        ],
        init,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tests.support.fake_model",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def model_bytes(model: onnx.ModelProto) -> bytes:
    buf = io.BytesIO()
    onnx.save(model, buf)
    return buf.getvalue()


def make_manifest(
    name: str,
    version: str,
    data: bytes,
    *,
    shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    threshold: float | None = 0.5,
    kind: str = "awnet",
) -> Manifest:
    c = shape[0]
    return Manifest(
        name=name, version=version, created_at="2026-11-24T08:00:00Z", arch="fake_linear", kind=kind,
        method="fake", class_names=[str(i) for i in range(num_classes)],
        input=InputSpec(shape=list(shape), range=[0.0, 1.0], mean=[0.0] * c, std=[1.0] * c),
        attack={"norm": "Linf", "eps": 0.3},
        router=None if threshold is None else {
            "threshold": threshold, "target_fpr": 0.01, "calibration_split": "val",
            "val_fpr": 0.01, "val_tpr": 0.97},
        evaluation={"test": {"clean_acc": 0.1, "pgd_acc": 0.1}, ROBUSTNESS_KEY: (
            FAKE_ROBUSTNESS if threshold is not None
            else dataclasses.replace(FAKE_ROBUSTNESS, missed=None, detected_share=None, clean_fpr=None)
        ).to_dict()}, training={},
        onnx=OnnxSpec.of_bytes(data, opset=OPSET, shapes=io_shapes(shape, num_classes)),
        code_revision="unknown",
    )  # fmt: skip


def write_model_version(
    repository: Path,
    name: str = FAKE_MODEL,
    version: str = "1",
    *,
    shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    threshold: float | None = 0.5,
    slow_layers: int = 0,
    model: onnx.ModelProto | None = None,
    data: bytes | None = None,
    manifest_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write ``<repository>/<name>/<version>/{model.onnx,manifest.json}``; returns the folder."""
    folder = Path(repository) / name / version
    folder.mkdir(parents=True, exist_ok=True)
    if data is None:
        model = model or build_model(shape, num_classes, slow_layers=slow_layers)
        data = model_bytes(model)
    (folder / "model.onnx").write_bytes(data)
    manifest = make_manifest(
        name, version, data, shape=shape, num_classes=num_classes, threshold=threshold
    )
    dataclasses.replace(manifest, **(manifest_overrides or {})).write(folder)
    return folder


# --- slow models (overload, timeout and loading tests) ------------------------------------------
def slow_layer_seconds() -> float:
    """Measured time of one slow-chain layer (single ORT thread), to size slow models."""
    import time

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        model_bytes(build_model(slow_layers=8)), so, providers=["CPUExecutionProvider"]
    )
    feeds = {
        "image": np.zeros((1, 1, 28, 28), np.float32),
        "mix_override": np.full((1,), -1.0, np.float32),
    }
    sess.run(None, feeds)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t0)
    return max(best / 8, 1e-4)


def slow_layers_for(seconds: float, per_layer: float) -> int:
    """Slow-chain layers for a model call of about ``seconds``."""
    return max(1, round(seconds / per_layer))
