"""docs/benchmark.md: the run's tables and figures, written between two markers.

Everything between ``BEGIN`` and ``END`` is replaced by the run's section (command, machine,
load averages, every table as text, the figures); the prose around them is left alone. A
document without the markers gets them appended at its end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

BEGIN = "<!-- benchmark:begin (written by python -m benchmarks --write-docs; edits here are overwritten) -->"
END = "<!-- benchmark:end -->"


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    return (
        f"{m['usable_cores']} usable cores of {m['cpu_count']} ({m['processor']}), {m['platform']}; Python "
        f"{m['python']}, ONNX Runtime {m['onnxruntime']} ({m['device']}, intra-op threads "
        f"{m['intra_op_threads'] or 'cores but one'}), numpy {m['numpy']}"
        + (f", torch {m['torch']}" if m.get("torch") else "")
        + (f", wrk {m['wrk']}" if m.get("wrk") else "")
        + (f", PyTriton {m['pytriton']}" if m.get("pytriton") else "")
        + f". Load average before / after: {m['loadavg_before']} / {m['loadavg_after']}."
    )


def section(
    results: dict[str, Any], tables: list[tuple[str, str]], figures: list[Path], doc: Path
) -> str:
    """The markdown between the markers: ``tables`` are (heading, text table) pairs."""
    lines = [
        BEGIN,
        "",
        f"Run of {results['created_at']}:",
        "",
        "```bash",
        results["command_line"],
        "```",
        "",
        machine_line(results),
        "",
    ]
    if results.get("quick"):
        lines += [
            "**`--quick` run: tiny settings, the figures only show that the benchmark works.**",
            "",
        ]
    for heading, text in tables:
        lines += [f"#### {heading}", "", "```", text, "```", ""]
    for fig in figures:
        rel = os.path.relpath(fig, doc.parent)
        lines += [f"![{fig.stem}]({rel})", ""]
    lines.append(END)
    return "\n".join(lines)


def write_between_markers(doc: Path, text: str, begin: str = BEGIN, end: str = END) -> Path:
    """Replace the marked section of ``doc`` with ``text`` (which carries the markers);
    ``--graph-compare`` has markers of its own, so its tables never replace the full run's."""
    old = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        _, tail = rest.split(end, 1)
        new = head + text + tail
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new, encoding="utf-8")
    return doc


def publish(
    results: dict[str, Any],
    tables: list[tuple[str, str]],
    figures: list[Path],
    doc: Path,
    figures_dir: Path,
) -> list[Path]:
    """Copy the figures into ``figures_dir`` and write the section into ``doc``."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in figures:
        target = figures_dir / f"benchmark-{f.name}"
        shutil.copyfile(f, target)
        copied.append(target)
    write_between_markers(doc, section(results, tables, copied, doc))
    return [doc, *copied]
