"""Artifact validation (manifest, sha256, graph contract) and the runtime's provider fallback."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from artifact_contract import Manifest
from service.artifact import ArtifactError, load_artifact
from service.runtime import OnnxModel, RuntimeOptions
from tests.support.fake_model import build_model, model_bytes, write_model_version
from tests.support.paths import ROOT, SHIPPED_VERSION_DIR


def _write(tmp_path: Path, name="m", version="1", **kw) -> Path:
    return write_model_version(tmp_path, name, version, **kw)


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_valid_artifact(tmp_path):
    art = load_artifact(_write(tmp_path))
    assert art.name == "m" and art.version == "1"
    assert art.input_shape == (1, 28, 28) and art.num_classes == 10
    assert art.manifest_threshold == 0.5 and art.kind == "awnet"


@pytest.mark.parametrize("edit,fragment", [
    (lambda m: m.pop("class_names"), "required key 'class_names' is missing"),
    (lambda m: m["input"].pop("shape"), "required key 'input.shape' is missing"),
    (lambda m: m.pop("router"), "required key 'router' is missing"),
    (lambda m: m["onnx"].pop("sha256"), "required key 'onnx.sha256' is missing"),
    (lambda m: m.update(schema_version=2), "schema_version 2 is not supported"),
    (lambda m: m.update(kind="huge"), "kind 'huge' must be one of awnet, static"),
    (lambda m: m.update(name="other"), "manifest says other/1 but the folder is m/1"),
    (lambda m: m.update(version="01"), "version '01' must be a positive integer string"),
    (lambda m: m["input"].update(shape=[1, 28]), "input.shape must be [C, H, W]"),
    (lambda m: m["input"].update(range=[1, 0]), "input.range must be [low, high]"),
    (lambda m: m["router"].update(threshold=1.5), "router.threshold must be a number in [0, 1]"),
    (lambda m: m.update(class_names=[]), "class_names must be a non-empty list"),
    (lambda m: m["onnx"].update(file="../x.onnx"), "onnx.file must be a file name"),
    (lambda m: m["onnx"].update(file="missing.onnx"), "missing.onnx: file not found"),
    (lambda m: m["onnx"].update(sha256="0" * 64), "sha256 mismatch"),
    (lambda m: m["onnx"].update(sha256="xyz"), "onnx.sha256 must be 64 hex digits"),
    (lambda m: m["evaluation"]["robustness"].update(missed=14.0), "evaluation.robustness.missed must be a number in [0, 1]"),
    (lambda m: m["evaluation"]["robustness"].pop("worst_case_acc"), "evaluation.robustness: "),
    (lambda m: m["evaluation"].update(robustness=[]), "evaluation.robustness must be an object"),
    (lambda m: m.update(evaluation="good"), "evaluation must be an object"),
])
def test_manifest_errors_name_the_file_and_problem(tmp_path, edit, fragment):
    folder = _write(tmp_path)
    _edit_manifest(folder, edit)
    with pytest.raises(ArtifactError) as info:
        load_artifact(folder)
    assert fragment in str(info.value)
    assert str(folder) in str(info.value)


def test_manifest_not_json_and_missing(tmp_path):
    folder = _write(tmp_path)
    (folder / "manifest.json").write_text("{oops")
    with pytest.raises(ArtifactError, match="manifest.json: not valid JSON"):
        load_artifact(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json: file not found"):
        load_artifact(folder)


def test_null_router_is_allowed(tmp_path):
    art = load_artifact(_write(tmp_path, threshold=None))
    assert art.manifest_threshold is None


def _load(folder: Path) -> OnnxModel:
    return OnnxModel(load_artifact(folder), RuntimeOptions(providers=("CPUExecutionProvider",)))


@pytest.mark.parametrize("kwargs,fragment", [
    ({"input_names": ("input", "mix_override")},
     "graph inputs are ['input', 'mix_override'], the contract needs exactly ['image', 'mix_override']"),
    ({"output_names": ("scores", "p_adv", "mix")}, "missing ['logits']"),
    ({"static_batch": True}, "'image' must have a dynamic batch dimension N"),
    ({"num_classes": 5}, "'logits' dimension 1 is 5, expected 10"),
    ({"shape": (1, 32, 32)}, "'image' dimension 2 is 32, expected 28"),
])
def test_graph_contract_errors(tmp_path, kwargs, fragment):
    model = build_model(**kwargs)
    folder = _write(tmp_path, model=model)
    with pytest.raises(ArtifactError) as info:
        _load(folder)
    assert fragment in str(info.value)


def test_corrupt_onnx_with_matching_sha_is_refused(tmp_path):
    folder = _write(tmp_path, data=b"this is not an onnx file" * 10)
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load the model"):
        _load(folder)


def test_runtime_runs_and_splits_large_batches(tmp_path):
    model = _load(_write(tmp_path))
    calls = []
    image = np.zeros((5, 1, 28, 28), np.float32)
    out = model.run(image, np.full((5,), -1.0, np.float32), max_batch_size=2,
                    on_call=lambda n, s: calls.append(n))
    assert calls == [2, 2, 1]
    assert out["logits"].shape == (5, 10) and out["p_adv"].shape == (5,)
    model.warmup(1, (1, 4))


def test_cuda_fallback_is_one_clear_warning_without_ort_error_noise(tmp_path):
    """onnxruntime-gpu on a machine without CUDA: one warning, no ORT error trace."""
    folder = _write(tmp_path)
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from service.artifact import load_artifact\n"
        "from service.runtime import OnnxModel, RuntimeOptions\n"
        "import onnxruntime as ort\n"
        f"art = load_artifact(r'{folder}')\n"
        "opts = RuntimeOptions(providers=('CUDAExecutionProvider', 'CPUExecutionProvider'))\n"
        "models = [OnnxModel(art, opts) for _ in range(2)]\n"
        "print('PROVIDERS', models[0].providers, 'CUDA' in str(ort.get_available_providers()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    actual = proc.stdout.split("PROVIDERS", 1)[1]
    if "CUDAExecutionProvider" in actual.split("]")[0]:
        pytest.skip("this machine really has CUDA")
    assert "['CPUExecutionProvider']" in actual
    assert proc.stderr.count("CUDA not available, running on CPU") == 1
    assert "[E:onnxruntime" not in proc.stderr and "Failed to load library" not in proc.stderr
    assert "[W:onnxruntime" not in proc.stderr


def test_model_bytes_roundtrip_is_deterministic():
    assert model_bytes(build_model()) == model_bytes(build_model())


# --- the artifact contract (artifact_contract): one Manifest for every reader and writer --------
def test_shipped_manifest_round_trips_through_the_typed_manifest():
    folder = SHIPPED_VERSION_DIR
    manifest = Manifest.load(folder)
    assert manifest.to_dict() == json.loads((folder / "manifest.json").read_text())
    assert manifest.verify_folder(folder) == folder / "model.onnx"


def test_fixture_manifest_round_trips_and_keeps_unknown_keys(tmp_path):
    folder = _write(tmp_path)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["note"] = "kept"
    manifest = Manifest.from_dict(raw, where=folder / "manifest.json")
    assert manifest.extra == {"note": "kept"} and manifest.to_dict() == raw
    assert manifest.threshold == 0.5 and manifest.input.shape == [1, 28, 28]


def test_write_refuses_a_manifest_that_breaks_the_contract(tmp_path):
    manifest = Manifest.load(_write(tmp_path))
    bad = dataclasses.replace(manifest, kind="huge")
    with pytest.raises(ArtifactError, match=r"other\.json: kind 'huge' must be one of awnet, static"):
        bad.write(tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists()
    bad = dataclasses.replace(manifest, onnx=dataclasses.replace(manifest.onnx, file="a/b.onnx"))
    with pytest.raises(ArtifactError, match="onnx.file must be a file name"):
        bad.validate()
