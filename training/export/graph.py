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


# What an AW-Net graph holds, written into its ``metadata_props`` (``awnet.holds``): in a
# folded graph the BN statistics and the stacked signal heads become constants with
# generated names, so a reader of the file (benchmarks.baselines.graph_facts) cannot tell
# the parts from the initializers' names any more.
AWNET_PARTS = ("router.extractor", "router.type_head", "router.signal_heads", "bn_clean", "bn_adv")
CLEAN_BRANCH_PARTS = ("router.extractor", "router.signal_heads", "bn_clean")
FOLD_NOTE = (
    "omega and MixBN folded: one Mul and one Add per feature map, scale and shift per sample "
    "and channel (models/folding.py)"
)


def _notes(parts: tuple[str, ...], fold: bool) -> dict[str, str]:
    return {"awnet.holds": " ".join(parts), "awnet.graph": FOLD_NOTE if fold else "unfolded"}


class ExportWrapper(nn.Module):
    """AW-Net: (image, mix_override) -> (logits, p_adv, mix); one call routes each sample.

    ``fold`` (default): the graph is ``AWNet.forward_folded``, omega and the MixBN blend as
    one per-sample, per-channel multiply and add on each feature map (``models.folding``),
    which is what makes the AW-Net graph cost little more than the plain backbone in ONNX
    Runtime. ``fold=False`` is the layer-by-layer eval forward (``forward_all``: omega's
    multiply, both BNs, the blend): the reference the parity check compares the graph with,
    and the "before" graph of the benchmark's ``--graph-compare``.
    """

    def __init__(self, model: nn.Module, fold: bool = True) -> None:
        super().__init__()
        self.model = model
        self.fold = fold
        self.graph_notes = _notes(AWNET_PARTS, fold)
        if fold:
            model.fold_plan()  # traced now, not inside torch.export's trace

    def forward(
        self, image: torch.Tensor, mix_override: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        forward = self.model.forward_folded if self.fold else self.model.forward_all
        out = forward(image, mix_override)
        return out.logits, out.p_adv, out.mix


class StaticExportWrapper(nn.Module):
    """Static baseline with the same signature: a plain backbone, or an AW-Net's clean
    branch alone (folded like the AW-Net graph unless ``fold=False``, from the clean BN's
    constants only); ``p_adv`` and ``mix`` are zeros."""

    def __init__(self, model: nn.Module, fold: bool = True) -> None:
        super().__init__()
        self.model = model
        self.awnet = is_awnet(model)
        self.fold = fold and self.awnet
        self.graph_notes = _notes(CLEAN_BRANCH_PARTS, self.fold) if self.awnet else {}
        if self.fold:
            model.fold_plan()

    def forward(
        self, image: torch.Tensor, mix_override: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.fold:
            logits = self.model.forward_folded(image, "clean").logits
        else:
            logits = self.model(image, mix="clean") if self.awnet else self.model(image)
        # two tensors, not one twice: each graph output needs its own name (nothing optimises the graph after export)
        return logits, mix_override * 0.0, mix_override * 0.0


def export_onnx(wrapper: nn.Module, sample: torch.Tensor, path: Path, opset: int = 18) -> None:
    """Trace ``wrapper`` to ONNX with a dynamic batch dimension named N; the wrapper's
    ``graph_notes`` (what the graph holds) go into the file's ``metadata_props``."""
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
    notes = getattr(wrapper, "graph_notes", None)
    if notes:
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(
            proto, {**{p.key: p.value for p in proto.metadata_props}, **notes}
        )
        onnx.save(proto, str(path))


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
        return [
            d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim
        ]

    return {
        "inputs": {i.name: dims(i) for i in model.graph.input},
        "outputs": {o.name: dims(o) for o in model.graph.output},
    }
