"""The exporter's probe set, end to end: an export writes ``probes.npz`` (named and hashed
in the manifest) and the service loads it with its probes passing; a deliberately broken
export (the same weights, the router's head replaced by a constant) with the good export's
probes stays UNAVAILABLE with the failed checks in its reason, while version 1 serves."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from artifact_contract import Manifest, sha256_file
from tests.support.checkpoints import fake_checkpoint, quick_export
from tests.support.servers import app_client

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_exported_probes_pass_and_a_constant_router_fails(tmp_path):
    from training.checkpoint import load_model
    from training.export.graph import ExportWrapper, export_onnx

    ckpt = fake_checkpoint(tmp_path, "awnet_smallcnn")
    repo = tmp_path / "repo"
    v1 = repo / "awnet-test" / "1"
    quick_export(ckpt, v1, probe_samples=16)
    m = Manifest.load(v1)
    assert m.probes["file"] == "probes.npz" and (v1 / "probes.npz").is_file()
    assert m.probes["sha256"] == sha256_file(v1 / "probes.npz")
    assert m.probes["clean"]["count"] == m.probes["adversarial"]["count"] == 16
    assert "router-evasion PGD-2" in m.probes["adversarial"]["attack"]
    assert m.probes["threshold"] == m.router["threshold"]

    # version 2: the router's type head answers a constant ("clean"), the rest unchanged
    v2 = repo / "awnet-test" / "2"
    shutil.copytree(v1, v2)
    model, _ = load_model(ckpt, "cpu")
    head = model.router.type_head
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        last = [mod for mod in head.modules() if isinstance(mod, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([10.0, -10.0]))
    export_onnx(ExportWrapper(model), torch.rand(2, 1, 28, 28), v2 / "model.onnx")
    raw = json.loads((v2 / "manifest.json").read_text())
    raw["version"] = "2"
    raw["onnx"]["sha256"] = sha256_file(v2 / "model.onnx")
    raw["onnx"]["size_bytes"] = (v2 / "model.onnx").stat().st_size
    (v2 / "manifest.json").write_text(json.dumps(raw))

    with app_client(repo, providers="cpu") as c:
        idx = {r["version"]: r for r in c.post("/v2/repository/index").json()}
        assert idx["1"]["state"] == "READY", idx["1"]
        assert c.get("/v2/models/awnet-test/versions/1").json()["probes"] == "passed"
        assert idx["2"]["state"] == "UNAVAILABLE"
        assert idx["2"]["reason"].startswith("probes failed") and "router score parity" in idx["2"]["reason"]
        body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                            "data": np.zeros(784).tolist()}]}
        r = c.post("/v2/models/awnet-test/infer", json=body)
        assert r.status_code == 200 and r.json()["model_version"] == "1"
