"""The example answers in README.md and docs/ are what the service answers now.

``scripts/docs_examples.py`` writes every example block (docs/api.md says how) by running
its commands against ``python -m service`` on the shipped repository; ``--check`` fails when
a committed block differs from the live answer (timestamps masked, numbers to 1e-3). These
tests run it on the shipped repository, and show that it catches a model that changed: a
copy of the repository with another router threshold fails the check.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import (
    ROOT,
    SHIPPED_MODEL,
    SHIPPED_REPOSITORY,
    SHIPPED_VERSION,
    shipped_model_available,
)

SCRIPT = ROOT / "scripts" / "docs_examples.py"
needs_shipped_model = pytest.mark.skipif(not shipped_model_available(), reason="no shipped model (make model)")


def _script():
    spec = importlib.util.spec_from_file_location("docs_examples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_examples"] = module
    spec.loader.exec_module(module)
    return module


def _check(repository: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(SCRIPT), "--check"]
    if repository is not None:
        args += ["--repository", str(repository)]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=800)


@needs_shipped_model
def test_the_committed_examples_are_what_the_service_answers_now():
    r = _check()
    assert r.returncode == 0, f"stale examples: run `.venv/bin/python scripts/docs_examples.py`\n{r.stdout}{r.stderr}"


@needs_shipped_model
def test_a_changed_threshold_of_a_shipped_model_fails_the_check(tmp_path):
    repository = tmp_path / "models" / "repository"  # the same depth as the real one
    shutil.copytree(SHIPPED_REPOSITORY, repository)
    manifest = repository / SHIPPED_MODEL / SHIPPED_VERSION / "manifest.json"
    doc = json.loads(manifest.read_text())
    # twice the calibrated threshold: a small change, shown in every answer's `threshold`
    doc["router"]["threshold"] = changed = doc["router"]["threshold"] * 2
    manifest.write_text(json.dumps(doc, indent=2) + "\n")
    r = _check(repository)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "README.md, block 'classify'" in r.stderr and "docs/api.md, block 'classify'" in r.stderr
    assert repr(changed) in r.stderr  # the diff shows the served threshold
    assert (SHIPPED_REPOSITORY / SHIPPED_MODEL / SHIPPED_VERSION / "manifest.json").read_text() != manifest.read_text()


@needs_shipped_model
def test_a_changed_card_changes_the_readmes_sentence(tmp_path):
    """The README's "what the shipped models withstand" follows each card, not a retyped copy."""
    docs_examples = _script()
    repository = tmp_path / "models" / "repository"
    shutil.copytree(SHIPPED_REPOSITORY, repository)
    before = docs_examples.shipped_models(repository)
    assert before == docs_examples.shipped_models(SHIPPED_REPOSITORY)
    card_path = repository / SHIPPED_MODEL / SHIPPED_VERSION / "evaluation.json"
    card = json.loads(card_path.read_text())
    card["worst_case"]["acc"] -= 0.1
    card_path.write_text(json.dumps(card))
    after = docs_examples.shipped_models(repository)
    assert f"**{100 * card['worst_case']['acc']:.1f} % worst case**" in after
    assert not docs_examples.same(before, after)
    readme = (ROOT / "README.md").read_text()
    assert before in readme  # the committed sentence is the generated one (the check compares it too)


def test_masking_and_tolerance():
    docs_examples = _script()
    a = '{"created_at": "2026-12-02T02:51:59Z", "p_adv": 2.0453038814594038e-05, "count": 7, "duration_ms": 3.1}'
    b = '{"created_at": "2027-01-01T00:00:00Z", "p_adv": 2.0453041e-05, "count": 7, "duration_ms": 12.9}'
    assert docs_examples.same(a, b)  # timestamps and durations masked, floats within 1e-3
    assert not docs_examples.same(a, b.replace('"count": 7', '"count": 8'))  # integers exact
    assert not docs_examples.same(a, b.replace("2.0453041e-05", "2.1e-05"))
    assert not docs_examples.same('"threshold": 0.0003234420728404075', '"threshold": 0.000646884145680815')
    assert not docs_examples.same('"version": "3"', '"version": "4"')
    assert not docs_examples.same('"verdict": "clean"', '"verdict": "adversarial"')
    metrics = 'awnet_probe_last_run_timestamp_seconds{model="m",version="3"} 1.79e+09\n'
    assert docs_examples.same(metrics, metrics.replace("1.79e+09", "1.81e+09"))


def test_every_example_is_shown_and_every_block_is_known():
    docs_examples = _script()
    names = {m.group("name") for doc in docs_examples.DOCS for m in docs_examples.BLOCK.finditer(doc.read_text())}
    known = {e.name for e in docs_examples.EXAMPLES} | set(docs_examples.FILE_BLOCKS)
    assert names == known, (sorted(names - known), sorted(known - names))
    readme = {m.group("name") for m in docs_examples.BLOCK.finditer((ROOT / "README.md").read_text())}
    assert {"classify", "classify-fields", "shipped-models"} <= readme


def test_the_readme_stays_short():
    """Issue 38: the README is the first screen; references go to docs/ (about 200 lines)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 210, len(lines)
    assert "make serve   #" in "\n".join(lines[:40]) and "make test    #" in "\n".join(lines[:40])
