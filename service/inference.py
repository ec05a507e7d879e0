"""What the data plane takes and gives, whatever the protocol: a codec (REST v2 today,
gRPC next) turns its wire format into an ``InferRequest`` and an ``InferResult`` back into
its wire format; the v1 image API gets a ``Classification``. No HTTP and no encoding here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from artifact_contract import OUTPUT_LOGITS, OUTPUT_MIX, OUTPUT_P_ADV
from service.errors import BadInput
from service.postprocess import OUTPUT_ADVERSARIAL, OUTPUT_PROBABILITIES

# Per-request routing choice: the mix_override value sent to the graph.
MODES = {"auto": -1.0, "clean": 0.0, "robust": 1.0}

# Outputs of the tensor API: the graph's three, plus two the service derives (service/postprocess.py).
OUTPUTS = (OUTPUT_LOGITS, OUTPUT_P_ADV, OUTPUT_MIX, OUTPUT_PROBABILITIES, OUTPUT_ADVERSARIAL)


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: as the request's binary_output says
    classification: int = 0  # Triton's classification extension: top-k strings when > 0


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    outputs: list[RequestedOutput] | None
    binary_output: bool
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray  # for BYTES: an object array of bytes


@dataclass
class InferResult:
    model_name: str
    model_version: str
    request_id: str | None
    outputs: list[tuple[OutputTensor, bool]]  # each tensor with "send it binary"
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class TopClass:
    name: str
    index: int
    probability: float


@dataclass
class Classification:
    """One image's answer (the v1 API)."""

    model: str
    version: str
    top_k: list[TopClass]  # best first
    p_adv: float
    mix: float
    mode: str
    adversarial: bool
    threshold: float


def parse_mode(mode: object) -> str:
    """``auto`` when not given; else exactly one of the names in ``MODES`` (as the schema)."""
    if mode is None:
        return "auto"
    if not isinstance(mode, str) or mode not in MODES:
        raise BadInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def classify_strings(values: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """Triton classification: ``[N, K]`` -> BYTES ``[N, min(k, K)]`` of "value:index[:label]"."""
    if values.ndim != 2:
        raise BadInput("classification is only available for [N, K] outputs")
    k = min(k, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    out = np.empty((values.shape[0], k), dtype=object)
    for row in range(values.shape[0]):
        for j, idx in enumerate(order[row]):
            label = f":{labels[idx]}" if labels is not None else ""
            out[row, j] = f"{values[row, idx]:f}:{idx}{label}".encode()
    return out
