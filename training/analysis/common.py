"""Helpers shared by the analysis commands: loading a model, tables, strict JSON."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.evaluation.target import Target, load_target


def load(path: str | os.PathLike[str], device: str = "cpu", data_root: str | None = None) -> Target:
    """A checkpoint or an exported model folder, loaded as ``evaluate`` loads it (its
    dataset read from ``data_root`` when given)."""
    target = load_target(path, device)
    if data_root is not None:
        target.data_root = data_root
    return target


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats rounded, NaN/None as '-'."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _clean_json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean_json(x) for x in v]
    return v


def write_json(path: Path, report: dict[str, Any]) -> Path:
    """Strict JSON (NaN written as null) so any consumer can read it."""
    path.write_text(json.dumps(_clean_json(report), indent=2) + "\n")
    return path


def write_report(out_dir: Path, report: dict[str, Any], markdown: str) -> dict[str, Any]:
    """``<kind>.json`` (strict) and ``<kind>.md`` beside the figures in ``out_dir``; returns
    the report with its ``markdown`` and every file written (``files``)."""
    kind = report["kind"]
    write_json(out_dir / f"{kind}.json", report)
    (out_dir / f"{kind}.md").write_text(markdown)
    return {**report, "markdown": markdown, "files": [*report.get("figures", []), f"{kind}.json", f"{kind}.md"]}
