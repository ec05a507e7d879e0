"""Figures the docs copy from a source are checked against that source.

The sources: the evaluation cards (``evaluation.json`` beside each shipped version, the
report's generated tables in docs/results.md), the benchmark's generated tables in
docs/benchmark.md, and the tables a sentence sums up. And the docs name only files and
model versions that exist, unless the sentence dates itself (a history, not a claim about
now). Example *answers* are scripts/docs_examples.py's (test_docs_examples.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.paths import ROOT, SHIPPED_REPOSITORY

DOCS = ROOT / "docs"
#: Pages that are histories (dated accounts and decisions): they may name what is gone.
HISTORIES = {"results.md", "journal.md", "decisions.md"}
GENERATED = re.compile(r"<!-- ([a-z-]+):begin.*?<!-- \1:end -->", re.DOTALL)
EXAMPLE_BLOCK = re.compile(r"<!-- example:([a-z0-9-]+):begin.*?<!-- example:\1:end -->", re.DOTALL)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in DOCS.glob("*.md") if p.name not in HISTORIES)]


def _between(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name}:begin.*?-->(.*?)<!-- {name}:end -->", text, re.DOTALL)
    assert m, f"no generated block {name!r}"
    return m.group(1)


def _card(model: str, version: str) -> dict:
    return json.loads((SHIPPED_REPOSITORY / model / version / "evaluation.json").read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


# ---- the benchmark's tables ------------------------------------------------------------------


def _table(block: str, heading: str) -> list[dict[str, str]]:
    """Rows of the fixed-width ``|`` table under ``heading`` in a generated benchmark block."""
    part = block.split(heading, 1)[1].split("```", 2)[1].strip("\n").split("\n\n")[0]  # its first table
    lines = [line for line in part.splitlines() if "|" in line and not set(line) <= set("-+ ")]
    head = [c.strip() for c in lines[0].split("|")]
    return [dict(zip(head, (c.strip() for c in line.split("|")), strict=True)) for line in lines[1:]]


def _benchmark() -> tuple[int, dict[str, str], float]:
    """(saturation req/s: the best 1-image rate of one worker, the paced row, peak RSS MiB)."""
    block = _between((DOCS / "benchmark.md").read_text(), "benchmark")
    http = _table(block, "#### HTTP, wrk")
    single = [r for r in http if r["server"] == "service" and r["scenario"] == "single"]
    saturation = max(int(r["req/s"].replace(",", "")) for r in single)
    paced = next(r for r in http if r["server"] == "service" and r["scenario"] == "paced")
    size = _table(block, "#### Size and memory")
    rss = float(next(r for r in size if r["metric"].startswith("peak RSS"))["awnet"])
    return saturation, paced, rss


def test_the_serving_figures_quoted_are_the_benchmarks():
    saturation, paced, rss = _benchmark()
    quoted = f"{saturation:,} req/s"
    kubernetes = (DOCS / "kubernetes.md").read_text()
    cpu_row = next(line for line in kubernetes.splitlines() if line.startswith("| CPU request / limit"))
    assert quoted in cpu_row and f"{paced['req/s']} req/s paced" in cpu_row and paced["errors"] == "0"
    hpa_row = next(line for line in kubernetes.splitlines() if line.startswith("| HPA request-rate target"))
    assert quoted in hpa_row
    memory_row = next(line for line in kubernetes.splitlines() if line.startswith("| memory limit"))
    assert f"peak RSS {rss} MiB" in memory_row
    assert quoted in (DOCS / "reliability.md").read_text()
    # the HPA target itself: about 70 % of that saturation (the rule its comment states)
    hpa = (ROOT / "docker" / "kubernetes" / "base" / "hpa.yaml").read_text()
    target = int(re.search(r'name: awnet_requests_per_second\s+target:\s+type: AverageValue\s+averageValue: "(\d+)"', hpa).group(1))
    assert 0.60 <= target / saturation <= 0.75, (target, saturation)
    assert f"| {target} req/s per pod |" in hpa_row and f"| {target} per pod |" in kubernetes


# ---- the cards -------------------------------------------------------------------------------


def test_the_goals_table_is_the_reports_and_the_cards():
    """docs/results.md, "Where the evaluation issue's goals stand": each paired interval is the
    one the report wrote into the generated tables, each shipped-model figure its card's."""
    text = (DOCS / "results.md").read_text()
    generated = _between(text, "reproduce")
    section = text.split("## Where the evaluation issue's goals stand", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "goal (issue 8)" not in line]
    pairs = [p for row in rows for p in re.findall(r"([-+]\d+\.\d+)(?: points)?(?:, 95 % t-interval)? (\[[^\]]+\])", row)]
    assert len(pairs) >= 4, pairs
    for value, interval in pairs:
        assert f"{value} points {interval}" in generated, (value, interval)
    for model, version, flagged, fpr in re.findall(r"shipped `([a-z0-9-]+)/(\d+)`: ([\d.]+) % flagged, FPR ([\d.]+) %", section):
        card = _card(model, version)
        assert (flagged, fpr) == (_pct(card["worst_case"]["detected_share"]), _pct(card["clean"]["router_fpr"]))
    worst = re.findall(r"shipped `([a-z0-9-]+)/(\d+)`: ([\d.]+) %", section)
    assert worst
    for model, version, figure in worst:
        card = _card(model, version)
        assert figure in (_pct(card["worst_case"]["acc"]), _pct(card["worst_case"]["detected_share"]))


def test_the_detected_share_on_the_dashboard_page_is_the_cards():
    text = (DOCS / "deployment.md").read_text()
    found = re.findall(r"([\d.]+) % for the shipped `([a-z0-9-]+)/(\d+)`, from its card", text)
    assert found
    for figure, model, version in found:
        assert figure == _pct(_card(model, version)["worst_case"]["detected_share"])


def test_the_retired_models_figures_are_its_cards():
    text = (DOCS / "export.md").read_text()
    card = json.loads((ROOT / "results" / "shipped" / "awnet-mnist-1" / "evaluation.json").read_text())
    clean, worst, wra = _pct(card["clean"]["acc"]), _pct(card["worst_case"]["acc"]), _pct(card["worst_case"]["wra"])
    assert f"reached {clean} % clean, {worst} % worst case and WRA {wra} %" in text


# ---- tables summed up ------------------------------------------------------------------------


def test_make_models_total_is_the_sum_of_its_steps():
    text = (DOCS / "export.md").read_text()
    table = text.split("<!-- make-model-steps", 1)[1].split("\n\n", 2)[1]
    seconds = [int(m.replace(",", "")) for m in re.findall(r"^\| \d\. [^|]+\| ([\d,]+) s \|", table, re.MULTILINE)]
    assert len(seconds) == 5, seconds
    total = sum(seconds)
    assert f"**{total:,} s ({total / 3600:.1f} h) on shared cores**" in text


# ---- names of things that exist --------------------------------------------------------------

PATH = re.compile(r"`((?:service|artifact_contract|training|models|benchmarks|scripts|tests|docker|experiments)/[A-Za-z0-9_./-]+)`")
CHECKED_SUFFIXES = {".py", ".sh", ".md", ".yaml", ".yml", ".json", ".toml", ".lua", ".npz", ".pt", ".onnx", ".png"}


def _paragraphs(page: Path) -> list[str]:
    text = EXAMPLE_BLOCK.sub("", GENERATED.sub("", page.read_text()))  # generated blocks say their own date
    return text.split("\n\n")


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_the_docs_name_files_that_exist(page):
    missing = []
    for para in _paragraphs(page):
        for m in PATH.finditer(para):
            path = m.group(1).split("::")[0].rstrip("/.")
            if any(part.isupper() for part in path.split("/")) or (Path(path).suffix not in CHECKED_SUFFIXES and not path.startswith("models/")):
                continue  # path templates such as NAME/VERSION, and files a run writes (service/service.log)
            if not (ROOT / path).exists():
                missing.append(path)
    assert not missing, f"{page.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_the_docs_name_shipped_versions_or_date_the_sentence(page):
    """A model version or checkpoint older than the shipped one may be named only in a paragraph
    that dates itself or calls it retired or previous: the stale "versions 1 and 2" of issue 38."""
    shipped = {(p.parent.name, p.name) for p in SHIPPED_REPOSITORY.glob("*/*") if (p / "manifest.json").is_file()}
    highest = {name: max(int(v) for n, v in shipped if n == name) for name, _ in shipped}
    stale = []
    for para in _paragraphs(page):
        dated = re.search(r"20\d\d-\d\d-\d\d|retired|previous", para)
        for name, version in re.findall(r"\b(awnet-[a-z0-9]+)[/-](\d+)\b", para):
            if int(version) > highest.get(name, 0):
                continue  # a version to come (a rollout's example)
            if (name, version) not in shipped and not dated:
                stale.append(f"{name}/{version}: {para.strip()[:100]}...")
    assert not stale, "\n".join(stale)


LINK = re.compile(r"\]\(([^)\s]+?)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", page.read_text(), re.MULTILINE)}


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_the_docs_links_resolve(page):
    """Every relative link to a file exists, and every #anchor is a heading of its page (the
    accounts moved from results.md to journal.md keep their links)."""
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"
