"""Load one model version folder and check its graph against its manifest.

``load_artifact`` reads ``manifest.json`` through the artifact contract
(``artifact_contract.Manifest``: required keys, values, ``name``/``version`` against the
folder, ``onnx.file`` present, its sha256 equal to ``onnx.sha256``); the first failure raises
``ArtifactError`` naming the file and the problem.

What stays here is the service's own check, ``check_graph``: given the graph's inputs and
outputs as ONNX Runtime reports them, the inputs are exactly ``image`` float32 [N, C, H, W] and
``mix_override`` float32 [N], and the outputs include ``logits`` float32 [N, K], ``p_adv``
float32 [N], ``mix`` float32 [N], with C, H, W from ``input.shape`` and K =
``len(class_names)`` wherever the graph fixes them.

No torch and no project training code: the folder is the only input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from artifact_contract import (
    INPUT_IMAGE,
    INPUT_MIX,
    MANIFEST_FILE,
    MODEL_INPUTS,
    MODEL_OUTPUTS,
    OUTPUT_LOGITS,
    OUTPUT_MIX,
    OUTPUT_P_ADV,
    ArtifactError,
    Manifest,
    Robustness,
    read_json,
)

DEFAULT_THRESHOLD = 0.5  # the service's router threshold when the manifest's router is null


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
    robustness: Robustness | None = None  # the evaluation card's summary, when exported with one
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_artifact(version_dir: Path, *, verify_sha256: bool = True) -> Artifact:
    """Validate ``version_dir`` (``<repository>/<name>/<version>``) and return its ``Artifact``."""
    version_dir = Path(version_dir)
    where = version_dir / MANIFEST_FILE
    raw = read_json(where)
    manifest = Manifest.from_dict(raw, where=where)
    onnx_path = manifest.verify_folder(version_dir, verify_sha256=verify_sha256)
    shape, rng = manifest.input.shape, manifest.input.range
    return Artifact(
        name=manifest.name,
        version=manifest.version,
        path=version_dir,
        onnx_path=onnx_path,
        sha256=manifest.onnx.sha256.lower(),
        manifest=raw,
        kind=manifest.kind,
        method=manifest.method if isinstance(manifest.method, str) else manifest.kind,
        class_names=tuple(manifest.class_names),
        input_shape=(shape[0], shape[1], shape[2]),
        input_range=(float(rng[0]), float(rng[1])),
        manifest_threshold=manifest.threshold,
        robustness=manifest.robustness(where),
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
