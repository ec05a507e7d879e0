"""``python -m training sweep`` (issue 18): the grid it plans, what it skips, the setting it
picks, the report section it writes, and one tiny cell end to end (seconds, not minutes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from training import report, sweep
from training.cli import build_parser, main
from training.evaluation.suite import BUDGETS, Budget, build_suite


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["sweep", "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
                                      "--report", str(tmp_path / "results.md"), "--figures", str(tmp_path / "figures"),
                                      *extra])  # fmt: skip


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _card(out: Path, clean: float, worst: float, eps: float, n: int = 500, checkpoint: str = "best.pt") -> None:
    """A minimal evaluation.json as `evaluate` writes it."""
    out.mkdir(parents=True, exist_ok=True)
    card = {"model": {"path": f"runs/x/{checkpoint}"}, "settings": {"n": n, "eps": eps, "seed": 0, "budget": "reproduce"}, "clean": {"acc": clean},
            "worst_case": {"acc": worst, "wra": (clean + worst) / 2},
            "attacks": [{"name": "pgd20", "acc": worst}], "sanity": [{"name": "eps", "passed": True}]}  # fmt: skip
    (out / "evaluation.json").write_text(json.dumps(card))


def test_plan_trains_standard_once_per_backbone_and_every_command_parses(tmp_path: Path) -> None:
    a = _args(tmp_path, "--methods", "pgd-at", "trades", "standard", "--eps", "0.1", "0.4")
    cells = sweep.plan(a.models, a.methods, a.eps, Path(a.results), Path(a.runs))
    assert len(cells) == 2 * 3 * 2
    for model in a.models:
        mine = [c for c in cells if c.model == model]
        assert mine[0].method == "standard"  # its one run comes first
        std_runs = {c.run for c in mine if c.method == "standard"}
        assert std_runs == {Path(a.runs) / model / "standard"}
        robust_runs = [c.run for c in mine if c.method != "standard"]
        assert len(set(robust_runs)) == len(robust_runs) == 4
    assert cells[-1].out == Path(a.results) / "smallcnn_w8" / "trades-eps0.4"
    parser = build_parser()
    for c in cells:  # the training CLI accepts every command line: no option that would do nothing
        cfg = parser.parse_args(sweep.train_argv(c, a)).train_config
        assert (cfg.method, cfg.model, cfg.epochs, cfg.eval_every) == (c.method, c.model, 8, 4)
        assert cfg.eps == (None if c.method == "standard" else c.eps)
        assert cfg.eps_warmup_epochs == (0.0 if c.method == "standard" else 2.0)
        ev = parser.parse_args(sweep.eval_argv(c, a))
        assert (ev.eps, ev.budget, ev.n, ev.path) == (c.eps, "reproduce", 500, str(c.run / "best.pt"))


@pytest.mark.parametrize("budget", BUDGETS)
def test_default_attacks_are_in_every_budgets_suite(budget: str) -> None:
    names = {s.name for s in build_suite(0.3, 10, awnet=False, budget=Budget.named(budget))}
    assert set(sweep.default_attacks(budget)) <= names


def test_cells_with_results_are_skipped_and_foreign_ones_refused(tmp_path: Path, capsys) -> None:
    a = _args(tmp_path, "--models", "smallcnn_w8", "--eps", "0.3", "0.4")
    a.attacks = sweep.default_attacks(a.budget)  # what cmd_sweep resolves the default to
    cells = sweep.plan(a.models, a.methods, a.eps, Path(a.results), Path(a.runs))
    done = cells[1]  # standard at eps 0.4: its shared run is trained, its card written
    _card(done.out, 0.98, 0.0, 0.4)
    (done.out / "timing.json").write_text(json.dumps({"train_s": 10, "eval_s": 20, "argv": [sweep.train_argv(done, a), sweep.eval_argv(done, a)]}))
    done.run.mkdir(parents=True)
    (done.run / "best.pt").write_bytes(b"")
    (done.run / "done.json").write_text(json.dumps({"argv": sweep.train_argv(done, a), "seconds": 10}))
    assert [sweep.cell_done(c, a) for c in cells] == [False, True, False, False]
    assert _run(["sweep", *_argv(tmp_path), "--models", "smallcnn_w8", "--eps", "0.3", "0.4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 cells, 3 to run" in out and "estimated" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["smallcnn_w8/standard-eps0.4"].endswith("done")
    assert "done/shared" in lines["smallcnn_w8/standard-eps0.3"]  # the standard run exists: not trained again
    assert "train ~" in lines["smallcnn_w8/pgd-at-eps0.3"]
    # the same card under other options (a smoke run's, here another --n) is never reused
    a.n = 16
    with pytest.raises(ValueError, match="other sweep options"):
        sweep.cell_done(done, a)


def _argv(tmp_path: Path) -> list[str]:
    return ["--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
            "--report", str(tmp_path / "results.md"), "--figures", str(tmp_path / "figures")]  # fmt: skip


def _rows(table: dict[tuple[str, str, float], tuple[float, float]]) -> list[dict]:
    return [{"model": m, "method": k, "eps": e, "clean": c, "worst": w,
             "clean_cost": round(table[(m, "standard", e)][0] - c, 6)} for (m, k, e), (c, w) in table.items()]  # fmt: skip


def test_pick_setting_takes_the_smallest_eps_then_the_narrowest_backbone() -> None:
    size = {"smallcnn": 100, "smallcnn_w16": 30, "smallcnn_w8": 10}.get
    table = {}
    for model, costs in (("smallcnn", (0.0, 0.01, 0.024)), ("smallcnn_w16", (0.004, 0.02, 0.04)), ("smallcnn_w8", (0.01, 0.03, 0.06))):
        for eps, cost in zip((0.2, 0.3, 0.4), costs, strict=True):
            table[(model, "standard", eps)] = (0.978, 0.0)
            table[(model, "pgd-at", eps)] = (round(0.978 - cost, 3), 0.8)
    pick = sweep.pick_setting(_rows(table), size=size)
    # exactly 3 points (0.978 - 0.948, a float that is not quite 0.03) counts
    assert pick is not None and (pick["name"], pick["model"], pick["eps"], pick["method"]) == ("mnist-eps0.3-w8", "smallcnn_w8", 0.3, "pgd-at")
    table[("smallcnn_w8", "pgd-at", 0.3)] = (0.950, 0.8)  # 2.8 points: now only eps 0.4 qualifies
    pick = sweep.pick_setting(_rows(table), size=size)
    assert (pick["name"], pick["clean_cost"]) == ("mnist-eps0.4-w8", 0.06)
    # the best robust model is the one with the highest worst case: here TRADES, which costs 1 point only
    table[("smallcnn_w8", "trades", 0.4)] = (0.968, 0.85)
    table[("smallcnn_w16", "trades", 0.4)] = (0.968, 0.85)
    assert sweep.pick_setting(_rows(table), size=size) is None
    assert sweep.pick_setting(_rows(table), goal=0.01, size=size)["name"] == "mnist-eps0.2-w8"
    assert sweep.pick_setting([], size=size) is None
    assert sweep.pick_setting(_rows(table), goal=0.01, size=size, prefix=sweep.setting_prefix(1000))["name"] == "mnist1k-eps0.2-w8"
    assert [sweep.setting_prefix(n) for n in (0, None, 4000, 1000, 2000, 1500)] == ["mnist", "mnist", "mnist", "mnist1k", "mnist2k", "mnist1500"]


def test_report_section_is_written_between_its_markers(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "docs" / "results.md"
    for model, (std, rob) in (("smallcnn", (0.978, 0.972)), ("smallcnn_w8", (0.970, 0.930))):
        for eps in (0.3, 0.4):
            _card(results / model / f"standard-eps{eps:g}", std, 0.0, eps)
            _card(results / model / f"pgd-at-eps{eps:g}", rob - (eps - 0.3), 0.8, eps)
    report.render(tmp_path / "no-results", out)  # the reproduction's block first, as make reproduce leaves it
    out.write_text(out.read_text() + "\nProse the sweep must keep.\n")
    body = sweep.render_sweep(results, out, tmp_path / "docs" / "figures")
    text = out.read_text()
    assert text.count(sweep.BEGIN) == text.count(sweep.END) == 1 and text.count(report.BEGIN) == 1
    assert "No reproduction results yet" in text and "Prose the sweep must keep." in text
    assert text.index("## Trade-off sweep") < text.index(sweep.BEGIN) < text.index(body) < text.index(sweep.END)
    assert "| **smallcnn_w8** | **0.3** | 97.0 | 0.0 | 93.0 | 4.0 | 80.0 |" in body
    assert body.index("| smallcnn | 0.3 |") < body.index("smallcnn_w8")  # widest backbone first
    assert "**Setting picked: `mnist-eps0.3-w8`**" in body
    assert "![sweep_tradeoff](figures/sweep_tradeoff.png)" in body and (tmp_path / "docs" / "figures" / "sweep_tradeoff.png").is_file()
    (results / "smallcnn_w8" / "pgd-at-eps0.3" / "evaluation.json").unlink()  # rewritten in place, nothing else moves
    before = text[: text.index(sweep.BEGIN)], text[text.index(sweep.END):]
    body = sweep.render_sweep(results, out, None)
    text = out.read_text()
    assert (text[: text.index(sweep.BEGIN)], text[text.index(sweep.END):]) == before
    assert "**Setting picked: `mnist-eps0.4-w8`**" in body and "make reproduce SETTING=mnist-eps0.4-w8" in body


@pytest.mark.slow
def test_one_tiny_cell_end_to_end(tmp_path: Path, capsys) -> None:
    argv = ["sweep", *_argv(tmp_path), "--models", "smallcnn_w8", "--methods", "pgd-at", "--eps", "0.3", "--epochs", "1",
            "--max-train-samples", "64", "--val-n", "32", "--n", "16", "--budget", "quick", "--attacks", "pgd20",
            "--threads", "1"]  # fmt: skip
    assert _run(argv) == 0
    cell = tmp_path / "results" / "smallcnn_w8" / "pgd-at-eps0.3"
    card = json.loads((cell / "evaluation.json").read_text())
    assert (card["settings"]["n"], card["settings"]["eps"], [x["name"] for x in card["attacks"]]) == (16, 0.3, ["pgd20"])
    summary = json.loads((tmp_path / "results" / "sweep.json").read_text())
    (row,) = summary["cells"]
    assert (row["model"], row["method"], row["eps"], row["clean_cost"]) == ("smallcnn_w8", "pgd-at", 0.3, None)
    assert row["train_s"] > 0 and row["eval_s"] > 0 and summary["settings"]["budget"] == "quick"
    assert sweep.BEGIN in (tmp_path / "results.md").read_text()
    capsys.readouterr()
    assert _run(argv) == 0  # resumed: nothing left to run
    assert "sweep: 0 cells run" in capsys.readouterr().out


def test_a_cell_whose_every_validation_alarmed_is_reported_and_never_picked(tmp_path: Path) -> None:
    """No best.pt (masking alarm at every validation): last.pt is evaluated and shown, but not a trade-off setting."""
    results, out = tmp_path / "results", tmp_path / "docs" / "results.md"
    _card(results / "smallcnn_w8" / "standard-eps0.45", 0.97, 0.0, 0.45)
    _card(results / "smallcnn_w8" / "pgd-at-eps0.45", 0.90, 0.3, 0.45, checkpoint="last.pt")
    rows = sweep.load_rows(results)
    assert [r["alarm"] for r in rows if r["method"] == "pgd-at"] == [True]
    assert sweep.pick_setting(rows, size=lambda m: 1) is None  # 7 points of clean cost, but masked
    body = sweep.render_sweep(results, out, None)
    assert "Masking alarm at every validation (no best.pt; last.pt evaluated, never picked): smallcnn_w8/pgd-at-eps0.45." in body
    (run := tmp_path / "runs" / "c").mkdir(parents=True)
    cell = sweep.Cell("smallcnn_w8", "pgd-at", 0.45, run, results / "c")
    (run / "last.pt").write_bytes(b"")
    assert sweep.checkpoint(cell).name == "last.pt"
    (run / "best.pt").write_bytes(b"")
    assert sweep.checkpoint(cell).name == "best.pt"
