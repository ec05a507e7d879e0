"""The torch weights an exported graph carries by name, and the sidecar for those it does not.

``evaluate FOLDER`` attacks the served model, which needs its torch twin: the architecture
from the manifest, the weights from the ONNX initializers (the exporter names them
``model.<state-dict key>``). Two exports rename weights on the way. ONNX's exporter folds a
BN that follows a plain conv into the conv (the router's convs): :func:`graph_state` undoes
that exactly. Our own fold (``models.folding``: omega and both branches' BNs into one
per-sample scale and shift) is not invertible, so the exporter writes the state-dict entries
the graph lacks into ``torch_state.npz`` beside it, hashed by the manifest's ``torch_state``
block; the service never reads it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from artifact_contract import ArtifactError, sha256_file

ONNX_PREFIX = "model."
TORCH_STATE_FILE = "torch_state.npz"


def graph_state(proto: Any, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state-dict entries of ``model`` that the graph ``proto`` carries (by name, with the
    ONNX exporter's conv+BN folds undone)."""
    from onnx import numpy_helper

    weights = {
        init.name[len(ONNX_PREFIX):]: torch.from_numpy(numpy_helper.to_array(init).copy())
        for init in proto.graph.initializer
        if init.name.startswith(ONNX_PREFIX)
    }
    _unfold_batchnorms(model, weights)
    return weights


def missing_keys(model: nn.Module, carried: dict[str, torch.Tensor], static_view: bool = False) -> list[str]:
    """State-dict keys the rebuilt model needs and ``carried`` lacks (a static export of an
    AW-Net serves the clean branch alone and needs no adversarial BN)."""
    keys = [k for k in model.state_dict() if k not in carried and not k.endswith("num_batches_tracked")]
    return [k for k in keys if ".bn_adv." not in k] if static_view else keys


def write_sidecar(folder: Path, model: nn.Module, keys: list[str]) -> dict[str, Any]:
    """``torch_state.npz`` with ``model``'s entries for ``keys``; returns the manifest block."""
    state = model.state_dict()
    buf = io.BytesIO()
    np.savez(buf, **{k: state[k].detach().cpu().numpy() for k in keys})
    path = Path(folder) / TORCH_STATE_FILE
    path.write_bytes(buf.getvalue())
    return {"file": TORCH_STATE_FILE, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
            "keys": len(keys), "why": "state-dict entries the folded graph does not carry by name (evaluate FOLDER)"}  # fmt: skip


def read_sidecar(folder: Path, block: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The sidecar's entries, after checking its hash against the manifest block."""
    path = Path(folder) / str(block.get("file", TORCH_STATE_FILE))
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found (named by torch_state in {folder}/manifest.json)")
    if sha256_file(path) != str(block.get("sha256", "")).lower():
        raise ArtifactError(f"{path}: sha256 mismatch with the manifest's torch_state block")
    with np.load(path, allow_pickle=False) as data:
        return {k: torch.from_numpy(data[k].copy()) for k in data.files}


def _unfold_batchnorms(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """ONNX export folds a BN that follows a plain conv into it (``X.weight`` scaled,
    ``X.weight_bias`` added: the router's convs). Give each folded conv its folded weight and
    the BN after it the identity map plus the folded bias, in model order; ``weights`` is
    completed in place. Exact up to float rounding (the ONNX parity check bounds it)."""
    folded = [k[: -len(".weight_bias")] for k in weights if k.endswith(".weight_bias")]
    modules = dict(model.named_modules())
    names = list(modules)
    for conv_name in folded:
        after = names[names.index(conv_name) + 1:] if conv_name in modules else []
        bn_name = next((n for n in after if isinstance(modules[n], nn.BatchNorm2d)), None)
        if bn_name is None or f"{bn_name}.running_mean" in weights:
            raise ValueError(f"the graph folds {conv_name} with a BN the model does not have after it")
        bn = modules[bn_name]
        c = bn.num_features
        weights[f"{bn_name}.weight"] = torch.ones(c)
        weights[f"{bn_name}.bias"] = weights.pop(f"{conv_name}.weight_bias")
        weights[f"{bn_name}.running_mean"] = torch.zeros(c)
        weights[f"{bn_name}.running_var"] = torch.full((c,), 1.0 - bn.eps)
