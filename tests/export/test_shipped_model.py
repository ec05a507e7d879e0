"""The shipped default model (models/repository/awnet-mnist/3, `make model`): its manifest
matches its file, and its forced branches differ and match PyTorch's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from artifact_contract import sha256_file
from tests.support.paths import SHIPPED_CHECKPOINT as SHIPPED_CKPT
from tests.support.paths import SHIPPED_VERSION, shipped_model_available
from tests.support.paths import SHIPPED_VERSION_DIR as SHIPPED
from training.checkpoint import load_model
from training.export.parity import ort_session

needs_shipped = pytest.mark.skipif(
    not shipped_model_available(), reason="shipped model not built yet (make model)"
)


@needs_shipped
def test_shipped_manifest_matches_file() -> None:
    m = json.loads((SHIPPED / "manifest.json").read_text())
    assert m["onnx"]["sha256"] == sha256_file(SHIPPED / "model.onnx")
    assert m["name"] == "awnet-mnist" and m["version"] == SHIPPED_VERSION and m["kind"] == "awnet"
    assert m["class_names"] == [str(i) for i in range(10)]
    assert m["router"]["target_fpr"] == 0.01 and m["router"]["calibration_split"] == "val"
    assert {"clean_acc", "pgd20_acc"} <= m["evaluation"]["test"].keys()
    assert m["training"]["method"] == "awnet" and m["attack"]["eps"] == 0.3
    assert (SHIPPED / "model.onnx").stat().st_size < 5_000_000


@needs_shipped
def test_shipped_forced_branches_differ_and_match_pytorch() -> None:
    from training.data import build_dataset
    from training.export.graph import ExportWrapper

    model, _ = load_model(SHIPPED_CKPT)
    wrapper = ExportWrapper(model).eval()
    sess = ort_session(SHIPPED / "model.onnx")
    x, _ = build_dataset("mnist5k", "test").tensors()
    x = x[:64]
    outs = {}
    for name, v in {"clean": 0.0, "adv": 1.0, "router": -1.0}.items():
        o = torch.full((64,), v)
        got = sess.run(None, {"image": x.numpy(), "mix_override": o.numpy()})
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(x, o)]
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r, atol=1e-3)
        outs[name] = got[0]
    assert np.abs(outs["clean"] - outs["adv"]).max() > 0.1
