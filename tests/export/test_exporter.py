"""Export (training/export): ONNX parity for every backbone, static export of an AW-Net,
the router threshold's calibration, and the service's artifact loader (without torch)
catching broken exported artifacts. The shipped model: test_shipped_model.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from artifact_contract import sha256_file
from tests.support.checkpoints import fake_checkpoint, quick_export
from tests.support.paths import ROOT
from training.checkpoint import load_model
from training.export.calibrate import rates, threshold_for_fpr
from training.export.parity import ort_session

BACKBONES = [
    ("smallcnn", {}),
    ("resnet18", {}),
    ("wrn", {"depths": (1, 1, 1), "widths": (1, 2, 1)}),
]


@pytest.mark.slow
@pytest.mark.parametrize("awnet", [True, False], ids=["awnet", "static"])
@pytest.mark.parametrize("name,kw", BACKBONES, ids=[b[0] for b in BACKBONES])
def test_export_every_backbone_passes_parity(tmp_path, make_checkpoint, name, kw, awnet) -> None:
    full = ("awnet_" if awnet else "") + name
    ckpt = make_checkpoint(full, **kw)
    out = tmp_path / "repo" / full.replace("_", "-") / "1"
    res = quick_export(ckpt, out, parity_samples=10, eval_max_samples=64, eval_steps=3)
    m = res.manifest
    assert m["kind"] == ("awnet" if awnet else "static")
    assert {r.mode for r in res.parity} == {"router", "forced_clean", "forced_adv", "per_sample"}
    assert {r.inputs for r in res.parity} == {"clean", "pgd"}
    assert max(r.logits_max_abs for r in res.parity) < 1e-3
    assert m["onnx"]["sha256"] == sha256_file(out / "model.onnx")
    assert m["onnx"]["inputs"]["image"] == [-1, 1, 28, 28]
    if awnet:
        assert 0 <= m["router"]["threshold"] <= 1 and m["router"]["target_fpr"] == 0.01
        # forced branches differ in the exported graph
        sess = ort_session(out / "model.onnx")
        x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
        clean = sess.run(None, {"image": x, "mix_override": np.zeros(4, np.float32)})[0]
        adv = sess.run(None, {"image": x, "mix_override": np.ones(4, np.float32)})[0]
        assert np.abs(clean - adv).max() > 1e-3
    else:
        assert m["router"] is None


def test_static_export_of_awnet_is_its_clean_branch(tmp_path, make_checkpoint) -> None:
    ckpt = make_checkpoint("awnet_smallcnn")
    out = tmp_path / "repo" / "static" / "1"
    res = quick_export(ckpt, out, static=True)
    assert res.manifest["kind"] == "static" and res.manifest["router"] is None
    model, _ = load_model(ckpt)
    x = torch.rand(3, 1, 28, 28)
    logits, p_adv, mix = ort_session(out / "model.onnx").run(
        None, {"image": x.numpy(), "mix_override": -np.ones(3, np.float32)}
    )
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(x, mix="clean").numpy(), atol=1e-4)
    assert not p_adv.any() and not mix.any()


def test_threshold_calibration() -> None:
    clean = np.linspace(0, 1, 1000, endpoint=False)
    thr = threshold_for_fpr(clean, 0.01)
    fpr, tpr = rates(clean, np.array([0.995, 0.5]), thr)
    assert fpr <= 0.01 and fpr > 0.005
    assert tpr == 0.5
    assert threshold_for_fpr(np.zeros(10), 0.0) > 0  # nothing clean may be flagged


# ---- the artifact loader in service/ (no torch) -----------------------------------------

LOADER = r"""
import sys, json
from pathlib import Path
from service.artifact import ArtifactError, load_artifact
from service.runtime import OnnxModel, RuntimeOptions
try:
    art = load_artifact(Path(sys.argv[1]))
    OnnxModel(art, RuntimeOptions(providers=["CPUExecutionProvider"]))
    print(json.dumps({"ok": True}))
except ArtifactError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
print(json.dumps({"torch_loaded": "torch" in sys.modules}))
"""


def _load_in_service(version_dir: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(version_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stdout.strip().splitlines()[-2:]
    assert json.loads(second) == {"torch_loaded": False}
    return json.loads(first)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("artifact")
    ckpt = fake_checkpoint(tmp, "awnet_smallcnn")
    out = tmp / "repo" / "awnet-test" / "1"
    quick_export(ckpt, out)
    return out


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / "repo" / "awnet-test" / "1"
    shutil.copytree(src, dst)
    return dst


def _rehash(d: Path) -> None:
    m = json.loads((d / "manifest.json").read_text())
    m["onnx"]["sha256"] = sha256_file(d / "model.onnx")
    (d / "manifest.json").write_text(json.dumps(m))


def test_exported_awnet_graph_is_folded_and_matches_the_unfolded_forward(exported) -> None:
    """The shipped graph is the folded forward: no backbone BN node left (each MixBN is one Mul
    and one Add on its feature map; the router's plain BNs stay, ONNX Runtime fuses them into
    their convs on load), and the exporter's parity held it to the unfolded one."""
    import onnx

    nodes = onnx.load(str(exported / "model.onnx")).graph.node
    bns = [n for n in nodes if n.op_type == "BatchNormalization"]
    assert not [n for n in bns if any("backbone" in i for i in n.input)]
    assert all(any("router" in i for i in n.input) for n in bns)
    rows = json.loads((exported / "manifest.json").read_text())["parity"]["rows"]
    assert {r["mode"] for r in rows} == {"router", "forced_clean", "forced_adv", "per_sample"}
    assert max(r["logits_max_abs"] for r in rows) < 1e-3


def test_loader_accepts_good_artifact(exported) -> None:
    assert _load_in_service(exported) == {"ok": True}


def test_loader_detects_corrupted_onnx(exported, tmp_path) -> None:
    d = _copy(exported, tmp_path)
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))
    res = _load_in_service(d)
    assert not res["ok"] and "model.onnx" in res["error"] and "sha256" in res["error"]


def test_loader_detects_truncated_onnx(exported, tmp_path) -> None:
    d = _copy(exported, tmp_path)
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 3])
    res = _load_in_service(d)
    assert not res["ok"] and "model.onnx" in res["error"]
    _rehash(d)  # even with a matching hash, a truncated graph is refused with a clear reason
    res = _load_in_service(d)
    assert not res["ok"] and "model.onnx" in res["error"] and "cannot load" in res["error"]


def test_loader_detects_manifest_not_matching_file(exported, tmp_path) -> None:
    d = _copy(exported, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["input"]["shape"] = [3, 32, 32]  # the graph takes 1x28x28
    (d / "manifest.json").write_text(json.dumps(m))
    res = _load_in_service(d)
    assert not res["ok"] and "model.onnx" in res["error"]
    d2 = _copy(exported, tmp_path / "b")
    m = json.loads((d2 / "manifest.json").read_text())
    m["onnx"]["sha256"] = "0" * 64
    (d2 / "manifest.json").write_text(json.dumps(m))
    res = _load_in_service(d2)
    assert not res["ok"] and "sha256" in res["error"]


def test_folded_export_is_rebuilt_for_evaluate(exported, tmp_path) -> None:
    """The fold renames the BN weights; the sidecar carries them, so `evaluate FOLDER`
    rebuilds the torch model and it matches ONNX Runtime. A tampered sidecar is refused."""
    from artifact_contract import ArtifactError
    from training.evaluation.target import load_target
    from training.export.state import TORCH_STATE_FILE

    block = json.loads((exported / "manifest.json").read_text())["torch_state"]
    assert block["file"] == TORCH_STATE_FILE and block["keys"] > 0
    assert block["sha256"] == sha256_file(exported / TORCH_STATE_FILE)
    target = load_target(exported)
    assert target.source == "onnx" and target.parity_max_abs < 1e-3
    d = _copy(exported, tmp_path)
    with np.load(d / TORCH_STATE_FILE) as data:
        arrays = {k: data[k] for k in data.files}
    key = next(k for k in arrays if k.endswith("running_var"))
    arrays[key] = arrays[key] * 4.0
    np.savez(d / TORCH_STATE_FILE, **arrays)
    with pytest.raises(ArtifactError, match="sha256"):
        load_target(d)


def test_unfolded_export_carries_its_batchnorms_by_name(tmp_path) -> None:
    """Without the fold the BN weights keep their names (the sidecar, if any, holds none)."""
    from training.evaluation.target import load_target

    ckpt = fake_checkpoint(tmp_path, "awnet_smallcnn")
    out = tmp_path / "repo" / "awnet-unfolded" / "1"
    res = quick_export(ckpt, out, fold=False, probe_samples=0)
    if "torch_state" in res.manifest:
        with np.load(out / res.manifest["torch_state"]["file"]) as data:
            assert not [k for k in data.files if ".bn" in k], data.files
    assert load_target(out).parity_max_abs < 1e-3
