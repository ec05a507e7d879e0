"""``python -m experiments``: each study and the question it answers (imports no study)."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def studies() -> dict[str, str]:
    """Subpackage name -> the first paragraph of its docstring (its question)."""
    found = {}
    for init in sorted(HERE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        found[init.parent.name] = " ".join(doc.split("\n\n")[0].split())
    return found


def main() -> int:
    for name, question in studies().items():
        print(f"python -m experiments.{name}\n    {question}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
