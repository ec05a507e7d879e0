"""Load and validate one model version folder: ``manifest.json`` + ``model.onnx``.

Checks, in order (the first failure raises ``ArtifactError`` naming the file and the problem):

1. ``manifest.json`` exists, is JSON, and has the keys the service needs (docs/contracts.md)
   with valid values; its ``name``/``version`` match the folder.
2. ``onnx.file`` exists next to it and its sha256 equals ``onnx.sha256``.
3. (``check_graph``, given the graph's inputs/outputs as ONNX Runtime reports them) the
   inputs are exactly ``image`` float32 [N, C, H, W] and ``mix_override`` float32 [N], and the
   outputs include ``logits`` float32 [N, K], ``p_adv`` float32 [N], ``mix`` float32 [N], with
   C, H, W from ``input.shape`` and K = ``len(class_names)`` wherever the graph fixes them.

No torch and no project training code: the folder is the only input.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MANIFEST_FILE = "manifest.json"
SUPPORTED_SCHEMA_VERSIONS = (1,)
KINDS = ("awnet", "static")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
VERSION_RE = re.compile(r"^[1-9][0-9]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

INPUT_IMAGE = "image"
INPUT_MIX = "mix_override"
OUTPUT_LOGITS = "logits"
OUTPUT_P_ADV = "p_adv"
OUTPUT_MIX = "mix"
MODEL_INPUTS = (INPUT_IMAGE, INPUT_MIX)
MODEL_OUTPUTS = (OUTPUT_LOGITS, OUTPUT_P_ADV, OUTPUT_MIX)
DEFAULT_THRESHOLD = 0.5


class ArtifactError(Exception):
    """A model version that must not be served; the message says which file and why."""


class NodeArgLike(Protocol):
    """What ONNX Runtime's ``NodeArg`` offers (name, type string, shape)."""

    name: str
    type: str
    shape: Sequence[int | str | None]


@dataclass(frozen=True)
class Artifact:
    """A validated model version folder."""

    name: str
    version: str
    path: Path
    onnx_path: Path
    sha256: str
    manifest: dict[str, Any]
    kind: str
    method: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]  # C, H, W
    input_range: tuple[float, float]
    manifest_threshold: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _require(manifest: dict[str, Any], dotted: str, where: Path) -> Any:
    node: Any = manifest
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ArtifactError(f"{where}: required key '{dotted}' is missing")
        node = node[part]
    return node


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: must be a JSON object")
    return manifest


def load_artifact(version_dir: Path, *, verify_sha256: bool = True) -> Artifact:
    """Validate ``version_dir`` (``<repository>/<name>/<version>``) and return its ``Artifact``."""
    version_dir = Path(version_dir)
    where = version_dir / MANIFEST_FILE
    manifest = read_manifest(version_dir)

    schema = _require(manifest, "schema_version", where)
    if schema not in SUPPORTED_SCHEMA_VERSIONS:
        raise ArtifactError(
            f"{where}: schema_version {schema!r} is not supported (supported: "
            f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})"
        )
    name = _require(manifest, "name", where)
    version = _require(manifest, "version", where)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ArtifactError(f"{where}: name {name!r} must match [a-z0-9][a-z0-9._-]*")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ArtifactError(f"{where}: version {version!r} must be a positive integer string")
    if name != version_dir.parent.name or version != version_dir.name:
        raise ArtifactError(
            f"{where}: manifest says {name}/{version} but the folder is "
            f"{version_dir.parent.name}/{version_dir.name}"
        )

    kind = _require(manifest, "kind", where)
    if kind not in KINDS:
        raise ArtifactError(f"{where}: kind {kind!r} must be one of {', '.join(KINDS)}")
    method = manifest.get("method") if isinstance(manifest.get("method"), str) else kind

    class_names = _require(manifest, "class_names", where)
    if (
        not isinstance(class_names, list)
        or not class_names
        or not all(isinstance(c, str) for c in class_names)
    ):
        raise ArtifactError(f"{where}: class_names must be a non-empty list of strings")

    shape = _require(manifest, "input.shape", where)
    if not (isinstance(shape, list) and len(shape) == 3 and all(_positive_int(d) for d in shape)):
        raise ArtifactError(f"{where}: input.shape must be [C, H, W] positive integers, got {shape!r}")
    rng = _require(manifest, "input.range", where)
    if not (
        isinstance(rng, list) and len(rng) == 2 and all(_number(v) for v in rng) and rng[0] < rng[1]
    ):
        raise ArtifactError(f"{where}: input.range must be [low, high] with low < high, got {rng!r}")

    router = _require(manifest, "router", where)
    threshold: float | None = None
    if router is not None:
        if not isinstance(router, dict):
            raise ArtifactError(f"{where}: router must be an object or null")
        threshold = router.get("threshold")
        if not _number(threshold) or not 0.0 <= float(threshold) <= 1.0:
            raise ArtifactError(f"{where}: router.threshold must be a number in [0, 1], got {threshold!r}")
        threshold = float(threshold)

    onnx_file = _require(manifest, "onnx.file", where)
    if not isinstance(onnx_file, str) or not onnx_file or Path(onnx_file).name != onnx_file:
        raise ArtifactError(f"{where}: onnx.file must be a file name in the same folder, got {onnx_file!r}")
    sha = _require(manifest, "onnx.sha256", where)
    if not isinstance(sha, str) or not SHA256_RE.match(sha.lower()):
        raise ArtifactError(f"{where}: onnx.sha256 must be 64 hex digits")
    sha = sha.lower()

    onnx_path = version_dir / onnx_file
    if not onnx_path.is_file():
        raise ArtifactError(f"{onnx_path}: file not found (named by onnx.file in {where})")
    if verify_sha256:
        actual = sha256_file(onnx_path)
        if actual != sha:
            raise ArtifactError(
                f"{onnx_path}: sha256 mismatch: the file has {actual}, {where} says {sha} "
                "(file corrupted, truncated or replaced)"
            )

    return Artifact(
        name=name,
        version=version,
        path=version_dir,
        onnx_path=onnx_path,
        sha256=sha,
        manifest=manifest,
        kind=kind,
        method=method,
        class_names=tuple(class_names),
        input_shape=(shape[0], shape[1], shape[2]),
        input_range=(float(rng[0]), float(rng[1])),
        manifest_threshold=threshold,
    )


def _describe(arg: NodeArgLike) -> str:
    dims = ["?" if d is None else str(d) for d in arg.shape]
    return f"{arg.name} {arg.type} [{', '.join(dims)}]"


def _check_tensor(
    where: str, arg: NodeArgLike, rank: int, fixed: dict[int, int], first_dynamic: bool = True
) -> None:
    if arg.type != "tensor(float)":
        raise ArtifactError(f"{where}: {arg.name!r} must be float32, the graph has {_describe(arg)}")
    shape = list(arg.shape)
    if len(shape) != rank:
        raise ArtifactError(f"{where}: {arg.name!r} must have rank {rank}, the graph has {_describe(arg)}")
    if first_dynamic and isinstance(shape[0], int) and shape[0] > 0:
        raise ArtifactError(
            f"{where}: {arg.name!r} must have a dynamic batch dimension N, the graph has {_describe(arg)}"
        )
    for axis, expected in fixed.items():
        got = shape[axis]
        if isinstance(got, int) and got > 0 and got != expected:
            raise ArtifactError(
                f"{where}: {arg.name!r} dimension {axis} is {got}, expected {expected} "
                f"(from the manifest); the graph has {_describe(arg)}"
            )


def check_graph(
    artifact: Artifact, inputs: Sequence[NodeArgLike], outputs: Sequence[NodeArgLike]
) -> None:
    """Check the graph's inputs and outputs against the contract and the manifest."""
    where = str(artifact.onnx_path)
    in_names = [a.name for a in inputs]
    if sorted(in_names) != sorted(MODEL_INPUTS):
        raise ArtifactError(
            f"{where}: graph inputs are {in_names}, the contract needs exactly {list(MODEL_INPUTS)}"
        )
    out_by_name = {a.name: a for a in outputs}
    missing = [n for n in MODEL_OUTPUTS if n not in out_by_name]
    if missing:
        raise ArtifactError(
            f"{where}: graph outputs are {list(out_by_name)}, missing {missing} "
            f"(the contract needs {list(MODEL_OUTPUTS)})"
        )
    in_by_name = {a.name: a for a in inputs}
    c, h, w = artifact.input_shape
    _check_tensor(where, in_by_name[INPUT_IMAGE], 4, {1: c, 2: h, 3: w})
    _check_tensor(where, in_by_name[INPUT_MIX], 1, {})
    _check_tensor(where, out_by_name[OUTPUT_LOGITS], 2, {1: artifact.num_classes})
    _check_tensor(where, out_by_name[OUTPUT_P_ADV], 1, {})
    _check_tensor(where, out_by_name[OUTPUT_MIX], 1, {})
