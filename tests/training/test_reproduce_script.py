"""``make reproduce`` (scripts/reproduce.sh, issue 8 item 7) on a tiny budget: its two lanes
produce every card and one report with the run's wall time, and a lane that fails stops the
other instead of leaving it waiting for a teacher that will never come."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("standard", "pgd-at", "trades", "trades+rat", "awnet", "awnet+rat")
SEED_DIR = "mnist1k-eps0.3-w8/seed0"  # the default setting


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return os.environ | {
        "PY": sys.executable, "RESULTS": str(tmp / "results"), "RUNS_ROOT": str(tmp / "runs"),
        "REPORT": str(tmp / "results.md"), "BUDGET": "quick", "N": "16", "EPOCHS_OVERRIDE": "1",
        "TRAIN_EXTRA": "--max-train-samples 128 --batch-size 64 --val-max-samples 16",
        "OMP_NUM_THREADS": "1",  # the script's own default (conftest sets 2: two lanes of 2 threads crawl)
    } | extra  # fmt: skip


def _run(tmp: Path, timeout: float, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts/reproduce.sh")], cwd=ROOT, env=_env(tmp, **extra),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.slow
def test_two_lanes_write_every_card_and_one_report_with_the_wall_time(tmp_path: Path) -> None:
    r = _run(tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "results" / SEED_DIR
    assert all((out / m / "evaluation.json").is_file() for m in MODELS)
    lines = [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines()]
    assert {(x["model"], x["step"]) for x in lines} >= {(m, s) for m in MODELS for s in ("train", "evaluate")}
    assert [x["lanes"] for x in lines if x["step"] == "wall"] == [2]
    assert "[lane 2] === [mnist1k-eps0.3-w8 seed 0] train trades" in r.stdout  # the background lane's steps show
    md = (tmp_path / "results.md").read_text()
    assert "### mnist1k-eps0.3-w8" in md and "reproduction from scratch (`make reproduce`): seed 0" in md
    again = _run(tmp_path, timeout=120)  # resumed: every step kept, no second wall record
    assert again.returncode == 0 and "train awnet: done, kept" in again.stdout
    assert sum('"wall"' in x for x in (out / "timings.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_a_failing_lane_stops_the_other_one(tmp_path: Path) -> None:
    # TRADES (lane 2) cannot write its run folder; lane 1's AW-Net waits for TRADES as its teacher.
    runs = tmp_path / "runs" / SEED_DIR
    runs.mkdir(parents=True)
    (runs / "trades").write_text("not a folder")
    t0 = time.monotonic()
    r = _run(tmp_path, timeout=300, TEACHER="trades")
    assert r.returncode != 0
    assert "a lane failed" in r.stderr
    assert time.monotonic() - t0 < 240
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of the stopped lane still run: {left}"


def test_an_unknown_lane_count_fails_before_any_work(tmp_path: Path) -> None:
    r = _run(tmp_path, timeout=30, LANES="3")
    assert r.returncode == 2 and "LANES must be 1 or 2, got 3" in r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_only_some_models_run_in_one_lane_and_report_without_a_wall_time(tmp_path: Path) -> None:
    r = _run(tmp_path, timeout=300, ONLY="standard")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "two lanes" not in r.stdout
    out = tmp_path / "results" / SEED_DIR
    assert [m.name for m in out.iterdir() if m.is_dir()] == ["standard"]
    assert '"wall"' not in (out / "timings.jsonl").read_text()  # a partial run is not the reproduction's time
    assert "### mnist1k-eps0.3-w8" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_last_epoch(tmp_path: Path) -> None:
    """A sitting stopped after epoch 1 of 2 (its .done never written): the next one goes on
    from last.pt and records the epochs' own time, marked as resumed."""
    extra = "--max-train-samples 128 --batch-size 64 --val-max-samples 16"
    first = _run(tmp_path, timeout=300, ONLY="standard", EPOCHS_OVERRIDE="2", TRAIN_EXTRA=extra + " --stop-after 1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run = tmp_path / "runs" / SEED_DIR / "standard"
    (run / ".done").unlink()  # as if the sitting had been killed after its first epoch
    (tmp_path / "results" / SEED_DIR / "standard" / "evaluation.json").unlink()
    again = _run(tmp_path, timeout=300, ONLY="standard", EPOCHS_OVERRIDE="2", TRAIN_EXTRA=extra)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "train standard: resuming from last.pt" in again.stdout
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(x).get("event") == "epoch"]  # fmt: skip
    assert epochs == [1, 2]  # epoch 1 not trained twice
    lines = [json.loads(x) for x in (tmp_path / "results" / SEED_DIR / "timings.jsonl").read_text().splitlines()]
    resumed = [x for x in lines if x.get("resumed")]
    assert len(resumed) == 1 and resumed[0]["step"] == "train" and resumed[0]["seconds"] >= 0


def test_the_cifar10_setting_is_known_and_reads_the_archive_it_is_given(tmp_path: Path) -> None:
    r = _run(tmp_path, timeout=60, SETTING="cifar10-jpeg12k", ONLY="standard", DATA_ROOT=str(tmp_path / "none"))
    assert r.returncode != 0
    assert "unknown SETTING" not in r.stderr
    assert "cifar10-jpeg: neither cifar10-jpeg.tar.gz nor an extracted cifar10-jpeg/" in r.stdout + r.stderr


@pytest.mark.slow
def test_kept_weights_stand_in_for_a_run_folder_that_did_not_survive(tmp_path: Path) -> None:
    """KEEP names the runs whose slim weights go beside the cards: a later session without
    the run folder restores them instead of training again (a seed spanning sessions)."""
    first = _run(tmp_path, timeout=300, ONLY="standard", KEEP="standard")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    kept = tmp_path / "results" / SEED_DIR / "checkpoints" / "standard.pt"
    assert kept.is_file() and "kept standard's weights" in first.stdout
    shutil.rmtree(tmp_path / "runs")  # the session ended; its run folders went with it
    again = _run(tmp_path, timeout=300, ONLY="standard", KEEP="standard")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "train standard: restored from" in again.stdout and "=== [mnist1k-eps0.3-w8 seed 0] train standard\n" not in again.stdout
    assert (tmp_path / "runs" / SEED_DIR / "standard" / "best.pt").read_bytes() == kept.read_bytes()


def test_a_run_without_keep_leaves_no_weights_beside_the_cards(tmp_path: Path) -> None:
    r = _run(tmp_path, timeout=60, SETTING="cifar10-jpeg12k", ONLY="standard", KEEP="", DATA_ROOT=str(tmp_path / "none"))
    assert r.returncode != 0 and not (tmp_path / "results" / "cifar10-jpeg12k" / "seed0" / "checkpoints").exists()
