"""What a served version declares about itself: its tensors (the v2 metadata) and the
Triton-style configuration, as plain dicts any protocol's codec can send."""

from __future__ import annotations

from typing import Any

from artifact_contract import INPUT_IMAGE, INPUT_MIX, OUTPUT_LOGITS, OUTPUT_MIX, OUTPUT_P_ADV
from service.postprocess import OUTPUT_ADVERSARIAL, OUTPUT_PROBABILITIES
from service.served_model import ServedModel
from service.settings import Settings


def tensor_metadata(mv: ServedModel) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    art = mv.artifact
    if art is None:
        return [], []
    c, h, w = art.input_shape
    k = art.num_classes
    inputs = [
        {"name": INPUT_IMAGE, "datatype": "FP32", "shape": [-1, c, h, w]},
        {"name": INPUT_MIX, "datatype": "FP32", "shape": [-1], "optional": True},
    ]
    outputs = [
        {"name": OUTPUT_LOGITS, "datatype": "FP32", "shape": [-1, k]},
        {"name": OUTPUT_P_ADV, "datatype": "FP32", "shape": [-1]},
        {"name": OUTPUT_MIX, "datatype": "FP32", "shape": [-1]},
        {"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, k]},
        {"name": OUTPUT_ADVERSARIAL, "datatype": "BOOL", "shape": [-1]},
    ]
    return inputs, outputs


def model_metadata(mv: ServedModel, versions: list[str]) -> dict[str, Any]:
    """The v2 model metadata, with this service's extensions."""
    inputs, outputs = tensor_metadata(mv)
    art = mv.artifact
    return {
        "name": mv.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": outputs,
        # Extensions to the protocol's fields (clients ignore what they do not know):
        "version": mv.version,
        "state": mv.state,
        "reason": mv.reason or None,
        "probes": mv.probe_status if art is not None else None,
        "provider": mv.provider,
        "kind": art.kind if art is not None else None,
        "threshold": mv.threshold if art is not None else None,
        "class_names": list(art.class_names) if art is not None else None,
    }


def model_config(mv: ServedModel, s: Settings) -> dict[str, Any]:
    """Triton's model configuration of a version, as its tools read it."""
    inputs, outputs = tensor_metadata(mv)

    def dims(t: dict[str, Any]) -> list[int]:
        return t["shape"][1:] or [1]

    return {
        "name": mv.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": s.max_request_batch,
        "input": [{"name": t["name"], "data_type": "TYPE_" + t["datatype"], "dims": dims(t),
                   **({"optional": True, "reshape": {"shape": []}} if t.get("optional") else {})}
                  for t in inputs],
        "output": [{"name": t["name"], "data_type": "TYPE_" + t["datatype"], "dims": dims(t),
                    **({"reshape": {"shape": []}} if len(t["shape"]) == 1 else {})}
                   for t in outputs],
        "dynamic_batching": {
            "max_queue_delay_microseconds": int(s.max_queue_delay_ms * 1000),
            "preferred_batch_size": [s.max_batch_size],
        },
        "version_policy": {"specific": {"versions": [mv.version]}},
    }
