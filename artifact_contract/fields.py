"""Checks of single manifest fields, shared by every block's ``validate``.

A leaf (it imports only ``names`` and ``errors``): the manifest, the probes block and the
robustness block all check numbers and file references the same way without importing
one another. Each check either answers a bool or raises ``ArtifactError`` naming
``where`` (the file) and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artifact_contract.errors import ArtifactError
from artifact_contract.names import SHA256_RE


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (JSON's true is not 1 here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_positive_int(value: Any) -> bool:
    """An int above zero, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def require(data: dict[str, Any], dotted: str, where: Any) -> Any:
    """The value at ``dotted`` (``"input.shape"``), or an ``ArtifactError`` naming the key."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ArtifactError(f"{where}: required key '{dotted}' is missing")
        node = node[part]
    return node


def validate_file_block(block: Any, key: str, where: Any) -> None:
    """A block that names a file beside the manifest by name and SHA-256."""
    f = block.get("file") if isinstance(block, dict) else None
    if not isinstance(f, str) or not f or Path(f).name != f:
        raise ArtifactError(f"{where}: {key}.file must be a file name in the same folder, got {f!r}")
    sha = block.get("sha256")
    if not isinstance(sha, str) or not SHA256_RE.match(sha.lower()):
        raise ArtifactError(f"{where}: {key}.sha256 must be 64 hex digits")
