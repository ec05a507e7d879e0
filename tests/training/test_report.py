"""``python -m training report`` (issue 18): seeds of one recipe merge into mean and spread;
seeds whose recorded recipes conflict get their own rows, never a share of the mean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training import report


def _card(results: Path, seed: int, model: str, clean: float, worst: float, training: dict[str, Any] | None) -> None:
    """A minimal evaluation.json as `evaluate` writes it, under results/SETTING/seedN/MODEL/."""
    out = results / "digits" / f"seed{seed}" / model
    out.mkdir(parents=True, exist_ok=True)
    card = {"model": {"path": "runs/x/best.pt"} | ({"training": training} if training is not None else {}),
            "settings": {"n": 500, "eps": 0.3, "seed": seed, "budget": "reproduce"}, "clean": {"acc": clean},
            "worst_case": {"acc": worst, "wra": (clean + worst) / 2},
            "attacks": [{"name": "pgd20", "acc": worst}], "sanity": [{"name": "eps", "passed": True}]}  # fmt: skip
    (out / "evaluation.json").write_text(json.dumps(card))


def _recipe(seed: int, **changes: Any) -> dict[str, Any]:
    return {"method": "awnet", "epochs": 8, "router_adaptive": False, "seed": seed, "out": f"runs/s{seed}",
            "clean_teacher": f"runs/s{seed}/standard/best.pt"} | changes  # fmt: skip


def _rows(md: str) -> dict[str, list[str]]:
    return {c[0]: c[1:] for line in md.splitlines() if line.startswith("| ")
            for c in [[x.strip() for x in line.strip("|").split("|")]] if c[0] not in ("model", "---")}  # fmt: skip


def test_seeds_of_one_recipe_merge_whatever_their_run_fields(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _card(res, 0, "standard", 0.98, 0.0, None)  # a card from before cards recorded the recipe: merges
    _card(res, 1, "standard", 0.96, 0.0, {"method": "standard", "seed": 1})
    _card(res, 0, "awnet", 0.96, 0.70, _recipe(0))
    _card(res, 1, "awnet", 0.94, 0.74, _recipe(1))
    rows = _rows(report.render(res, tmp_path / "results.md"))
    assert set(rows) == {"standard", "awnet"}
    assert rows["awnet"][:3] == ["2", "95.0 ± 1.4", "72.0 ± 2.8"]
    assert rows["standard"][:2] == ["2", "97.0 ± 1.4"]


def test_seeds_whose_recipes_conflict_are_reported_apart_and_named(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _card(res, 0, "standard", 0.98, 0.0, None)
    _card(res, 0, "awnet", 0.95, 0.65, {"method": "awnet", "router_adaptive": True})  # backfilled, partial
    _card(res, 1, "awnet", 0.97, 0.76, _recipe(1))
    _card(res, 2, "awnet", 0.97, 0.78, _recipe(2))
    md = report.render(res, tmp_path / "results.md")
    rows = _rows(md)
    assert rows["awnet (seed 0)"][:3] == ["1", "95.0", "65.0"]
    assert rows["awnet (seed 1, 2)"][:3] == ["2", "97.0 ± 0.0", "77.0 ± 1.4"]
    assert "trained with different recipes (router_adaptive: True / False); their figures are not merged" in md
    assert "best AW-Net (awnet (seed 1, 2)" in md  # the verdict judges each recipe on its own


def test_a_from_scratch_reproduction_reports_its_wall_time_per_seed(tmp_path: Path) -> None:
    res = tmp_path / "results"
    _card(res, 0, "standard", 0.98, 0.0, None)
    _card(res, 1, "standard", 0.97, 0.0, None)
    timings = [{"model": "standard", "step": "train", "seconds": 40}, {"model": "(all)", "step": "wall", "seconds": 1860, "lanes": 2}]
    (res / "digits" / "seed0" / "timings.jsonl").write_text("\n".join(map(json.dumps, timings)))
    (res / "digits" / "seed1" / "timings.jsonl").write_text(json.dumps(timings[0]))  # resumed: no wall record
    md = report.render(res, tmp_path / "results.md")
    assert "reproduction from scratch (`make reproduce`): seed 0 31 min (2 lanes)." in md
    assert "seed 1 " not in md.split("from scratch")[1]
    assert _rows(md)["standard"][7] == "40 ± 0.0"  # the wall record is not a model's step


def _three_seeds(res: Path, awnet: list[tuple[float, float]]) -> str:
    """standard, PGD-AT and AW-Net on seeds 0-2 (AW-Net's (clean, worst) per seed); the verdict."""
    for seed, (clean, worst) in enumerate(awnet):
        _card(res, seed, "standard", 0.98 - 0.01 * seed, 0.0, None)
        _card(res, seed, "pgd-at", 0.96 - 0.01 * seed, 0.70 + 0.02 * seed, None)
        _card(res, seed, "awnet", clean, worst, None)
    md = report.render(res, res.parent / "results.md")
    return next(line for line in md.splitlines() if line.startswith("**Verdict:**"))


def test_the_verdict_pairs_seeds_and_says_whether_they_decide_the_goal(tmp_path: Path) -> None:
    # clean 4 points under the standard model on every seed: the clean half excludes the goal
    v = _three_seeds(tmp_path / "a", [(0.94, 0.80), (0.93, 0.82), (0.92, 0.84)])
    assert "awnet - standard, clean accuracy -4.0 points [-4.0, -4.0] over 3 seeds, wholly below the goal's -1" in v
    assert "**The seeds exclude the goal**" in v
    # 0.5 points under standard and 6 WRA points over PGD-AT on every seed, give or take 1: met
    v = _three_seeds(tmp_path / "b", [(0.975, 0.80), (0.965, 0.80), (0.955, 0.86)])
    assert "wholly above the goal's +2" in v and "wholly above the goal's -1" in v
    assert "**The seeds show the goal met**" in v
    # a WRA gain that swings around +2 from seed to seed: undecided
    v = _three_seeds(tmp_path / "c", [(0.975, 0.66), (0.965, 0.84), (0.955, 0.74)])
    assert "spanning the goal's +2" in v and "More seeds are needed to decide." in v


def test_an_interval_end_that_rounds_to_the_goal_keeps_a_second_decimal() -> None:
    from training.report import _end

    assert _end(0.01996, 0.02) == "+2.00" and _end(0.0196, 0.02) == "+1.96"  # not "+2.0" against "+2"
    assert _end(0.031, 0.02) == "+3.1" and _end(-0.0104, -0.01) == "-1.04"


def test_a_cifar10_jpeg_setting_says_its_pixels_are_not_the_official_ones() -> None:
    from training.report import setting_title

    assert setting_title("cifar10-jpeg12k") == "cifar10-jpeg12k: CIFAR-10 (JPEG q75)"
    assert setting_title("mnist-eps0.3") == "mnist-eps0.3"
