"""What the repository folder holds: ``<name>/<version>/`` folders, their files' fingerprint,
and the version policy that applies to each model."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from artifact_contract import (
    MANIFEST_FILE,
    NAME_RE,
    VERSION_RE,
    ArtifactError,
    VersionPolicy,
    read_json,
)
from service.errors import scrub
from service.served_model import Fingerprint

log = logging.getLogger("service.repository")


def fingerprint(folder: Path) -> Fingerprint:
    """(name, size, mtime) of the files of a version folder: changes when any file does."""
    out = []
    with contextlib.suppress(OSError):
        for p in sorted(folder.iterdir()):
            with contextlib.suppress(OSError):
                st = p.stat()
                out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def model_dirs(root: Path) -> list[Path]:
    """The model folders (valid names only; others are logged and ignored)."""
    if not root.is_dir():
        log.error("model repository %s is not a directory", root)
        return []
    out = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if model_dir.name.startswith("."):
            continue
        if not NAME_RE.match(model_dir.name):
            log.warning("ignoring %s: model names must match [a-z0-9][a-z0-9._-]*", model_dir)
            continue
        out.append(model_dir)
    return out


def version_dirs(root: Path, name: str) -> dict[str, Path]:
    """The version folders of model ``name`` (positive integers), by version."""
    model_dir = root / name
    found: dict[str, Path] = {}
    if not NAME_RE.match(name) or not model_dir.is_dir():
        return found
    for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        if not VERSION_RE.match(version_dir.name):
            if not version_dir.name.startswith("."):
                log.warning("ignoring %s: versions are positive integers", version_dir)
            continue
        found[version_dir.name] = version_dir
    return found


def policy_for(name: str, folders: dict[str, Path], default: VersionPolicy) -> tuple[VersionPolicy, str]:
    """``default`` (the setting), unless the highest version's manifest sets ``version_policy``."""
    for v in sorted(folders, key=int, reverse=True):
        try:
            raw = read_json(folders[v] / MANIFEST_FILE)
            if raw.get("version_policy") is not None:
                where = f"{name}/{v}/{MANIFEST_FILE}"
                return VersionPolicy.from_dict(raw["version_policy"], where), f"manifest of version {v}"
        except ArtifactError as exc:
            log.warning("version policy of %s: %s", name, scrub(str(exc)))
        break  # only the highest version's manifest counts
    return default, "setting AWNET_VERSION_POLICY"
