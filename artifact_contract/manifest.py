"""``manifest.json`` as a typed object: load, validate, write, and check a version folder.

``Manifest.from_dict`` / ``Manifest.load`` read and validate; ``Manifest(...)`` builds one in
code (the exporter, the benchmark, the test fixtures) and ``write`` validates it before it
touches the disk, so every manifest anywhere passes the same checks the service applies.
Every failure is an ``ArtifactError`` whose message starts with the file and names the field.

Required (docs/contracts.md): ``schema_version``, ``name``, ``version``, ``kind``,
``class_names``, ``input.shape``, ``input.range``, ``router`` (object or null),
``onnx.file``, ``onnx.sha256``. Optional and checked when present: ``probes`` (the probe
set beside the graph, ``artifact_contract.probes``), ``torch_state`` (the weights a folded
graph renamed, for ``evaluate FOLDER`` only: the service never reads it),
``version_policy`` (Triton's shape, ``artifact_contract.policy``) and
``evaluation.robustness`` (the evaluation card's summary, ``artifact_contract.robustness``).
The other blocks are informative and kept as written (free-form ones as dicts; unknown
top-level keys in ``extra``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from artifact_contract import names
from artifact_contract.blocks import Block
from artifact_contract.errors import ArtifactError
from artifact_contract.fields import is_number, is_positive_int, require, validate_file_block
from artifact_contract.policy import VersionPolicy
from artifact_contract.probes import validate_block as validate_probes_block
from artifact_contract.robustness import Robustness, robustness_of

REQUIRED_KEYS = (
    "schema_version", "name", "version", "kind", "class_names", "input.shape", "input.range",
    "router", "onnx.file", "onnx.sha256",
)  # fmt: skip


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``, or an ``ArtifactError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: must be a JSON object")
    return data


@dataclass(kw_only=True)
class InputSpec(Block):
    """``input``: what the graph's ``image`` takes."""

    shape: list[int]  # [C, H, W]
    range: list[float]  # [low, high] of the raw pixels
    layout: str | None = "NCHW"
    dtype: str | None = "float32"
    mean: list[float] | None = None
    std: list[float] | None = None
    normalization: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        known, extra = cls._split(data)
        return cls(**known, extra=extra)

    def validate(self, where: Any) -> None:
        shape, rng = self.shape, self.range
        if not (isinstance(shape, list | tuple) and len(shape) == 3 and all(is_positive_int(d) for d in shape)):
            raise ArtifactError(f"{where}: input.shape must be [C, H, W] positive integers, got {shape!r}")
        if not (isinstance(rng, list | tuple) and len(rng) == 2 and all(is_number(v) for v in rng)
                and rng[0] < rng[1]):  # fmt: skip
            raise ArtifactError(f"{where}: input.range must be [low, high] with low < high, got {rng!r}")


def io_shapes(shape: tuple[int, int, int] | list[int], num_classes: int) -> dict[str, dict[str, list[int]]]:
    """``onnx.inputs`` / ``onnx.outputs`` of a contract graph (-1: the dynamic batch N)."""
    c, h, w = shape
    return {
        "inputs": {names.INPUT_IMAGE: [-1, c, h, w], names.INPUT_MIX: [-1]},
        "outputs": {names.OUTPUT_LOGITS: [-1, num_classes], names.OUTPUT_P_ADV: [-1], names.OUTPUT_MIX: [-1]},
    }


@dataclass(kw_only=True)
class OnnxSpec(Block):
    """``onnx``: the graph file beside the manifest and what it is."""

    file: str = names.ONNX_FILE
    sha256: str
    size_bytes: int | None = None
    opset: int | None = None
    inputs: dict[str, list[int]] | None = None
    outputs: dict[str, list[int]] | None = None
    exporter: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnnxSpec:
        known, extra = cls._split(data)
        if isinstance(known.get("sha256"), str):
            known["sha256"] = known["sha256"].lower()
        return cls(**known, extra=extra)

    @classmethod
    def of_bytes(cls, data: bytes, *, shapes: dict[str, dict[str, list[int]]] | None = None,
                 file: str = names.ONNX_FILE, **kw: Any) -> OnnxSpec:  # fmt: skip
        """The block for graph bytes (hash and size computed); ``shapes`` as from ``io_shapes``."""
        shapes = shapes or {}
        return cls(file=file, sha256=names.sha256_bytes(data), size_bytes=len(data),
                   inputs=shapes.get("inputs"), outputs=shapes.get("outputs"), **kw)  # fmt: skip

    @classmethod
    def of_file(cls, path: str | Path, *, shapes: dict[str, dict[str, list[int]]] | None = None,
                file: str = names.ONNX_FILE, **kw: Any) -> OnnxSpec:  # fmt: skip
        """The block for a graph file (hash and size computed from it)."""
        path = Path(path)
        shapes = shapes or {}
        return cls(file=file, sha256=names.sha256_file(path), size_bytes=path.stat().st_size,
                   inputs=shapes.get("inputs"), outputs=shapes.get("outputs"), **kw)  # fmt: skip

    def validate(self, where: Any) -> None:
        validate_file_block({"file": self.file, "sha256": self.sha256}, "onnx", where)


@dataclass(kw_only=True)
class Manifest(Block):
    """One model version's ``manifest.json``. Fields are written in this order."""

    always_written: ClassVar[frozenset[str]] = frozenset({"router"})  # null: "no router"
    schema_version: int = names.SCHEMA_VERSION
    name: str
    version: str
    created_at: str | None = None
    arch: str | None = None
    kind: str  # one of names.MODEL_KINDS
    method: str | None = None  # training method; readers fall back to kind
    dataset: str | None = None
    class_names: list[str]
    input: InputSpec
    attack: dict[str, Any] | None = None
    router: dict[str, Any] | None  # {"threshold": p in [0, 1], ...} or None (static models)
    evaluation: dict[str, Any] | None = None
    masking_alarm: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    training_code_revision: str | None = None
    onnx: OnnxSpec
    probes: dict[str, Any] | None = None  # optional: the probe set beside the graph (probes.py)
    torch_state: dict[str, Any] | None = None  # optional: weights a folded graph renamed (evaluate only)
    version_policy: dict[str, Any] | None = None  # optional: Triton's shape, overrides the setting
    code_revision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level keys, kept as written
    source: Path | None = field(default=None, compare=False, repr=False)  # the file it came from

    # --- reading ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Any = names.MANIFEST_FILE) -> Manifest:
        """Validate a parsed manifest; ``where`` (the file) starts every error message."""
        for key in REQUIRED_KEYS:
            require(data, key, where)
        known, extra = cls._split(data)
        version = known["version"]
        if isinstance(version, int) and not isinstance(version, bool):
            known["version"] = str(version)
        known["input"] = InputSpec.from_dict(known["input"])
        known["onnx"] = OnnxSpec.from_dict(known["onnx"])
        source = Path(where) if isinstance(where, str | Path) else None
        return cls(**known, extra=extra, source=source).validate(where)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and validate ``path`` (a manifest file, or a version folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / names.MANIFEST_FILE
        return cls.from_dict(read_json(path), where=path)

    # --- checking --------------------------------------------------------------------------
    def validate(self, where: Any = None) -> Manifest:
        """Raise ``ArtifactError`` on the first field that breaks the contract; return self."""
        where = where or self.source or names.MANIFEST_FILE
        if self.schema_version not in names.SUPPORTED_SCHEMA_VERSIONS:
            raise ArtifactError(
                f"{where}: schema_version {self.schema_version!r} is not supported (supported: "
                f"{', '.join(map(str, names.SUPPORTED_SCHEMA_VERSIONS))})"
            )
        if not isinstance(self.name, str) or not names.NAME_RE.match(self.name):
            raise ArtifactError(f"{where}: name {self.name!r} must match [a-z0-9][a-z0-9._-]*")
        if not isinstance(self.version, str) or not names.VERSION_RE.match(self.version):
            raise ArtifactError(f"{where}: version {self.version!r} must be a positive integer string")
        if self.kind not in names.MODEL_KINDS:
            raise ArtifactError(f"{where}: kind {self.kind!r} must be one of {', '.join(names.MODEL_KINDS)}")
        classes = self.class_names
        if not isinstance(classes, list | tuple) or not classes or not all(isinstance(c, str) for c in classes):
            raise ArtifactError(f"{where}: class_names must be a non-empty list of strings")
        self.input.validate(where)
        if self.router is not None:
            if not isinstance(self.router, dict):
                raise ArtifactError(f"{where}: router must be an object or null")
            thr = self.router.get("threshold")
            if not is_number(thr) or not 0.0 <= float(thr) <= 1.0:
                raise ArtifactError(f"{where}: router.threshold must be a number in [0, 1], got {thr!r}")
        self.onnx.validate(where)
        if self.probes is not None:
            validate_probes_block(self.probes, where)
        if self.torch_state is not None:
            validate_file_block(self.torch_state, "torch_state", where)
        if self.version_policy is not None:
            VersionPolicy.from_dict(self.version_policy, where)
        if self.evaluation is not None:
            self.robustness(where)
        return self

    def robustness(self, where: Any = None) -> Robustness | None:
        """``evaluation.robustness`` as a validated ``Robustness``, None when absent."""
        if self.evaluation is not None and not isinstance(self.evaluation, dict):
            raise ArtifactError(f"{where or self.source or names.MANIFEST_FILE}: evaluation must be an object")
        return robustness_of(self.evaluation, where or self.source or names.MANIFEST_FILE)

    @property
    def threshold(self) -> float | None:
        """The router's calibrated threshold, None for a model without a router."""
        return None if self.router is None else float(self.router["threshold"])

    def verify_folder(self, version_dir: str | Path, *, verify_sha256: bool = True,
                      check_names: bool = True) -> Path:  # fmt: skip
        """The version folder against this manifest: ``<name>/<version>`` (``check_names``),
        the ONNX file it names and that file's SHA-256. Returns the ONNX file's path."""
        version_dir = Path(version_dir)
        where = version_dir / names.MANIFEST_FILE
        if check_names and (self.name != version_dir.parent.name or self.version != version_dir.name):
            raise ArtifactError(
                f"{where}: manifest says {self.name}/{self.version} but the folder is "
                f"{version_dir.parent.name}/{version_dir.name}"
            )
        onnx_path = version_dir / self.onnx.file
        if not onnx_path.is_file():
            raise ArtifactError(f"{onnx_path}: file not found (named by onnx.file in {where})")
        if verify_sha256:
            expected = self.onnx.sha256.lower()
            actual = names.sha256_file(onnx_path)
            if actual != expected:
                raise ArtifactError(
                    f"{onnx_path}: sha256 mismatch: the file has {actual}, {where} says {expected} "
                    "(file corrupted, truncated or replaced)"
                )
        return onnx_path

    # --- writing ---------------------------------------------------------------------------
    def write(self, path: str | Path) -> Path:
        """Validate, then write to ``path`` (a manifest file, or a version folder); returns the file."""
        path = Path(path)
        if path.is_dir():
            path = path / names.MANIFEST_FILE
        self.validate(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path
