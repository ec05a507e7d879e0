"""The service's only input is the model repository: no torch, no training/ or models/ code."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.support.paths import ROOT

SERVICE = ROOT / "service"
FORBIDDEN = ("torch", "training", "models", "experiments", "torchvision", "onnxscript")


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module", "__import__"
        ):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield arg.value


def test_no_forbidden_imports_in_service_sources():
    offenders = []
    files = sorted(SERVICE.rglob("*.py"))
    assert files
    for path in files:
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}: import {name}")
    assert not offenders, offenders


def test_importing_and_creating_the_app_loads_no_forbidden_module(tmp_path):
    code = (
        "import sys\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        "import service.__main__\n"
        f"create_app(Settings(model_repository=r'{tmp_path}'))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FORBIDDEN!r})\n"
        "print('LOADED', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout


CONTRACT = ROOT / "artifact_contract"


def test_the_artifact_contract_needs_only_the_standard_library_and_numpy():
    """Both sides import it: the exporter (with torch) and the service (without)."""
    allowed = set(sys.stdlib_module_names) | {"numpy", "artifact_contract"}
    offenders = []
    files = sorted(CONTRACT.rglob("*.py"))
    assert files
    for path in files:
        for name in _imports(path):
            if name.split(".")[0] not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}: import {name}")
    assert not offenders, offenders
