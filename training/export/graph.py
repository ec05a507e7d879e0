"""The exported graph: the ONNX contract (docs/contracts.md) as a torch module."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from torch import nn

from artifact_contract import INPUT_IMAGE, INPUT_MIX, MODEL_INPUTS, MODEL_OUTPUTS
from models import is_awnet

# Ops that only make sense while training: none may appear in a served graph.
TRAINING_ONLY_OPS = {
    "Dropout", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", "Gradient", "Adagrad", "Adam",
    "Momentum", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
}  # fmt: skip


class ExportWrapper(nn.Module):
    """AW-Net: (image, mix_override) -> (logits, p_adv, mix); one call routes each sample."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, mix_override: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model.forward_all(image, mix_override)
        return out.logits, out.p_adv, out.mix


class StaticExportWrapper(nn.Module):
    """Static baseline with the same signature: a plain backbone, or an AW-Net's clean
    branch alone; ``p_adv`` and ``mix`` are zeros."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.awnet = is_awnet(model)

    def forward(self, image: torch.Tensor, mix_override: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.model(image, mix="clean") if self.awnet else self.model(image)
        zeros = mix_override * 0.0
        return logits, zeros, zeros


def export_onnx(wrapper: nn.Module, sample: torch.Tensor, path: Path, opset: int = 18) -> None:
    """Trace ``wrapper`` to ONNX with a dynamic batch dimension named N."""
    wrapper.eval()
    n = sample.shape[0]
    override = torch.full((n,), -1.0)
    batch = torch.export.Dim("N", min=1, max=65536)
    torch.onnx.export(
        wrapper,
        (sample, override),
        str(path),
        input_names=list(MODEL_INPUTS),
        output_names=list(MODEL_OUTPUTS),
        dynamic_shapes={INPUT_IMAGE: {0: batch}, INPUT_MIX: {0: batch}},
        opset_version=opset,
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def check_graph(path: Path) -> onnx.ModelProto:
    """onnx.checker, the contract's names and ranks, and no training-only nodes."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != list(MODEL_INPUTS) or outputs != list(MODEL_OUTPUTS):
        raise ValueError(f"{path}: graph inputs {inputs} / outputs {outputs} break the contract")
    bad = sorted({n.op_type for n in model.graph.node if n.op_type in TRAINING_ONLY_OPS})
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            for attr in node.attribute:
                if attr.name == "training_mode" and attr.i == 1:
                    bad.append("BatchNormalization(training_mode=1)")
    if bad:
        raise ValueError(f"{path}: training-only nodes in the graph: {bad}")
    return model


def graph_shapes(model: onnx.ModelProto) -> dict[str, dict[str, list[int]]]:
    def dims(vi) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]

    return {
        "inputs": {i.name: dims(i) for i in model.graph.input},
        "outputs": {o.name: dims(o) for o in model.graph.output},
    }

