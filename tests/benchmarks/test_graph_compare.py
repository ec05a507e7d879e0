"""``python -m benchmarks --graph-compare``: AW-Net graph vs plain backbone, at tiny settings.

No assertion is about speed: the options, the ratios and verdicts on synthetic figures, the
weights rule (checkpoint only for its own backbone), the docs section beside the full run's,
and one end-to-end run (export, cache, timing, JSON, tables).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cli, docs, graph_compare
from benchmarks.common import DEFAULT_CHECKPOINT
from benchmarks.targets import targets_table

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = DEFAULT_CHECKPOINT


def test_options_default_to_the_targets_batches_and_refuse_awnet_names() -> None:
    args = cli.parse_args(["--graph-compare", "resnet18", "smallcnn"])
    assert args.graph_compare == ["resnet18", "smallcnn"] and args.batch_sizes == [1, 32]
    assert args.graph_unfolded is True
    assert cli.parse_args(["--quick", "--graph-compare", "smallcnn"]).batch_sizes == [1, 2]
    given = cli.parse_args(
        ["--graph-compare", "smallcnn", "--batch-sizes", "4", "--no-graph-unfolded"]
    )
    assert given.batch_sizes == [4] and given.graph_unfolded is False
    with pytest.raises(SystemExit):
        cli.parse_args(["--graph-compare", "awnet_resnet18"])
    assert "--graph-compare" in cli.build_parser().format_help()


def _synthetic() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two backbones; ResNet-18's AW-Net at 0.96x plain throughput (b32) and 1.2x its p50 (b1)."""
    sets = [{"arch": a, "weights": w, "graphs": {g: {} for g in graph_compare.GRAPHS}}
            for a, w in (("resnet18", "random init"), ("smallcnn", "checkpoint x.pt"))]  # fmt: skip
    figures = {  # (p50 ms, images/s) of awnet, awnet-unfolded, plain at batch 1 and 32
        ("resnet18", 1): ((12.0, 80.0), (13.0, 75.0), (10.0, 100.0)),
        ("resnet18", 32): ((300.0, 96.0), (340.0, 85.0), (280.0, 100.0)),
        ("smallcnn", 1): ((0.6, 1500.0), (0.7, 1400.0), (0.4, 2500.0)),
        ("smallcnn", 32): ((12.0, 2600.0), (14.0, 2300.0), (9.0, 3500.0)),
    }
    latency = [{"model": f"{a}:{g}", "batch": b, "p50_ms": f[i][0], "p90_ms": f[i][0] * 1.1,
                "images_per_s": f[i][1], "calls": 10}
               for (a, b), f in figures.items() for i, g in enumerate(graph_compare.GRAPHS)]  # fmt: skip
    return sets, latency


def test_ratios_table_and_verdicts() -> None:
    sets, latency = _synthetic()
    rows = graph_compare.compare(sets, latency, [1, 32])
    r32 = next(r for r in rows if r["arch"] == "resnet18" and r["batch"] == 32)
    assert r32["awnet"]["throughput_ratio"] == pytest.approx(0.96)
    assert r32["awnet-unfolded"]["throughput_ratio"] == pytest.approx(0.85)
    text = graph_compare.table(rows)
    assert "awnet/plain img/s" in text and "0.96x" in text and "random init" in text
    goals = {t["target"]: t for t in graph_compare.targets(rows)}
    assert goals["resnet18: AW-Net / plain throughput at batch 32"]["met"] is True
    latency_goal = goals["resnet18: AW-Net / plain latency (p50) at batch 1"]
    assert latency_goal["met"] is False and "unfolded graph 1.30x" in latency_goal["note"]
    assert "reported" in goals["smallcnn: AW-Net / plain throughput at batch 32"]["note"]
    only_b1 = graph_compare.targets([r for r in rows if r["batch"] == 1])
    assert [t["met"] for t in only_b1 if "batch 32" in t["target"]] == [None, None]
    assert "not measured" in targets_table(only_b1)


def test_its_docs_section_leaves_the_full_runs_section_alone(tmp_path: Path) -> None:
    doc = tmp_path / "benchmark.md"
    doc.write_text(f"# B\n\n{docs.BEGIN}\nfull run\n{docs.END}\n\ntail\n")
    for text in ("first", "second"):
        section = f"{graph_compare.BEGIN}\n{text}\n{graph_compare.END}"
        docs.write_between_markers(doc, section, graph_compare.BEGIN, graph_compare.END)
    out = doc.read_text()
    assert (
        "full run" in out
        and "second" in out
        and "first" not in out
        and out.count(graph_compare.BEGIN) == 1
    )


def test_weights_come_from_the_checkpoint_only_for_its_own_backbone() -> None:
    from benchmarks.build_graphs import awnet_for

    model, _, weights = awnet_for("smallcnn_w4", CHECKPOINT)
    assert weights.startswith("random init") and "timing only" in weights and not model.training
    if CHECKPOINT.is_file():
        assert awnet_for("smallcnn", CHECKPOINT)[2] == f"checkpoint {CHECKPOINT.name}"


def test_end_to_end_exports_times_and_reuses_its_cache(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    doc = tmp_path / "benchmark.md"
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--graph-compare", "smallcnn_w4", "--no-graph-unfolded",
           "--batch-sizes", "1", "--out", str(tmp_path / "out"), "--write-docs", "--doc", str(doc)]  # fmt: skip
    runs = [
        subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        for _ in range(2)
    ]
    for res in runs:
        assert res.returncode == 0, res.stderr[-3000:]
        assert "Targets (issue 9, AW-Net graph vs plain backbone)" in res.stdout
    assert "exporting the smallcnn_w4 graphs" in runs[0].stderr
    assert "exporting" not in runs[1].stderr and "(cached)" in runs[1].stdout
    results = json.loads((tmp_path / "out/graph-compare.json").read_text())
    (info,) = results["graphs"]
    assert set(info["graphs"]) == {"awnet", "plain"} and info["weights"].startswith("random init")
    assert all(g["parity_logits_max_abs"] < 1e-3 for g in info["graphs"].values())
    assert {(c["model"], c["batch"]) for c in results["latency"]} == {
        ("smallcnn_w4:awnet", 1),
        ("smallcnn_w4:plain", 1),
    }
    assert results["comparison"][0]["awnet"]["latency_ratio"] > 0
    assert graph_compare.BEGIN in doc.read_text() and "smallcnn_w4" in doc.read_text()
