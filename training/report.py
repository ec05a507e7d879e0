"""``python -m training report``: docs/results.md from the evaluation cards under results/.

Each ``make reproduce`` run leaves ``results/SETTING/seedN/MODEL/evaluation.json`` and a
``timings.jsonl``; this merges whatever seeds exist into mean and spread per model and
setting, judges AW-Net's goal plainly, and draws the clean-vs-worst-case trade-off plot.
Seeds are merged only when their cards' training recipes agree (``recipe_conflicts``): a
seed trained before a recipe changed gets its own row, never a share of the mean.
Only the part between the markers of docs/results.md is rewritten; the rest is prose.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"
MODELS = ("standard", "pgd-at", "trades", "trades+rat", "awnet", "awnet+rat", "awnet-plain-router")
AWNET_MODELS = ("awnet", "awnet+rat", "awnet-plain-router")
#: training-config fields that differ between the seeds of one recipe (or say nothing about
#: it): the seed itself, where the run and its teachers live, how the machine ran it
RUN_FIELDS = frozenset({"seed", "out", "data_root", "download", "clean_teacher", "robust_teacher", "init_from",
                        "device", "workers", "amp", "resume", "stop_after", "log_every"})  # fmt: skip
#: The evaluation issue's goal: AW-Net's worst-case WRA this many points above the best
#: static model, with clean accuracy within CLEAN_SLACK of the standard model's.
WRA_GOAL, CLEAN_SLACK = 0.02, 0.01


def load_results(root: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """setting -> model -> one record per seed (card figures plus wall times)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for card_path in sorted(root.glob("*/seed*/*/evaluation.json")):
        model_dir = card_path.parent
        seed_dir = model_dir.parent
        setting = seed_dir.parent.name
        card = json.loads(card_path.read_text())
        times = {r["step"]: r["seconds"] for r in timings(seed_dir) if r["model"] == model_dir.name}
        w = card["worst_case"]
        rec = {
            "seed": int(seed_dir.name.removeprefix("seed")), "clean": card["clean"]["acc"], "worst": w["acc"],
            "wra": w["wra"], "missed": w.get("missed"), "detected": w.get("detected_share"),
            "fpr": card["clean"].get("router_fpr"), "train_s": times.get("train"), "eval_s": times.get("evaluate"),
            "n": card["settings"]["n"], "eps": card["settings"]["eps"], "budget": card["settings"]["budget"],
            "sanity": all(c["passed"] for c in card.get("sanity", [])),
            "attacks": {a["name"]: a["acc"] for a in card["attacks"]},
            "model": model_dir.name, "recipe": recipe(card),
        }  # fmt: skip
        out.setdefault(setting, {}).setdefault(model_dir.name, []).append(rec)
    return out


def timings(seed_dir: Path) -> list[dict[str, Any]]:
    """The records scripts/reproduce.sh appends to ``seed_dir/timings.jsonl``: one per model
    and step (train, evaluate) and, for a run from scratch, one ``"step": "wall"``."""
    tfile = seed_dir / "timings.jsonl"
    return [json.loads(line) for line in tfile.read_text().splitlines()] if tfile.is_file() else []


def load_walls(root: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """setting -> seed -> the wall-time record of a from-scratch ``make reproduce`` (seconds
    and lanes; resumed runs leave none)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for seed_dir in sorted(root.glob("*/seed*")):
        for r in timings(seed_dir):
            if r.get("step") == "wall":
                out.setdefault(seed_dir.parent.name, {})[int(seed_dir.name.removeprefix("seed"))] = r
    return out


def wall_line(walls: dict[int, dict[str, Any]]) -> str:
    """One sentence: each seed's wall time from scratch, in minutes."""
    parts = [f"seed {seed} {r['seconds'] / 60:.0f} min ({r.get('lanes', 1)} lane{'s' if r.get('lanes', 1) > 1 else ''})"
             for seed, r in sorted(walls.items())]  # fmt: skip
    return "Wall time of the whole reproduction from scratch (`make reproduce`): " + "; ".join(parts) + "."


def recipe(card: dict[str, Any]) -> dict[str, Any] | None:
    """The card's training recipe without its run fields (None: a card from before cards
    recorded it, or one written by hand)."""
    training = card["model"].get("training")
    return None if training is None else {k: v for k, v in training.items() if k not in RUN_FIELDS}


def recipe_conflicts(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """The fields both recipes set to different values (none when either is unknown)."""
    if a is None or b is None:
        return []
    return sorted(k for k in set(a) & set(b) if a[k] != b[k])


def split_by_recipe(models: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """One row per model and recipe: the seeds of a model whose recipes conflict go into
    separate rows labelled by their seeds, with a note naming the fields that differ."""
    rows: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []
    for name, recs in models.items():
        groups: list[list[dict[str, Any]]] = []
        for rec in sorted(recs, key=lambda r: r["seed"]):
            home = next((g for g in groups if not any(recipe_conflicts(rec["recipe"], o["recipe"]) for o in g)), None)
            if home is None:
                groups.append([rec])
            else:
                home.append(rec)
        if len(groups) == 1:
            rows[name] = groups[0]
            continue
        labels = [f"{name} (seed {', '.join(str(r['seed']) for r in g)})" for g in groups]
        rows.update(zip(labels, groups, strict=True))
        fields = sorted({f for i, g in enumerate(groups) for h in groups[i + 1:] for a in g for b in h
                         for f in recipe_conflicts(a["recipe"], b["recipe"])})  # fmt: skip
        values = "; ".join(f"{f}: " + " / ".join(str(next((r["recipe"][f] for r in g if r["recipe"] and f in r["recipe"]), "?"))
                                                  for g in groups) for f in fields)  # fmt: skip
        notes.append(f"`{name}`: {' and '.join(labels)} were trained with different recipes ({values}); "
                     "their figures are not merged.")  # fmt: skip
    return rows, notes


def _base(recs: list[dict[str, Any]]) -> str:
    return recs[0]["model"]


def _ms(values: list[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _fmt(values: list[float | None], pct: bool = True) -> str:
    ms = _ms(values)
    if ms is None:
        return "-"
    m, s = ms
    k = 100 if pct else 1
    spread = f" ± {s * k:.1f}" if len([v for v in values if v is not None]) > 1 else ""
    return f"{m * k:.1f}{spread}" if pct else f"{m:.0f}{spread}"


def setting_title(setting: str) -> str:
    """A setting's heading: its name, and for the JPEG copy of CIFAR-10 what its pixels are
    (not the official ones: its figures are not CIFAR-10's)."""
    return f"{setting}: CIFAR-10 (JPEG q75)" if setting.startswith("cifar10-jpeg") else setting


def setting_section(
    setting: str, models: dict[str, list[dict[str, Any]]], plot: Path | None, notes: list[str] | None = None,
    walls: dict[int, dict[str, Any]] | None = None,
) -> str:
    seeds = sorted({r["seed"] for recs in models.values() for r in recs})
    any_rec = next(iter(models.values()))[0]
    lines = [f"### {setting_title(setting)}", "",
             f"{any_rec['n']} test images, L-inf eps {any_rec['eps']:g}, attack budget `{any_rec['budget']}`, "
             f"seeds {', '.join(map(str, seeds))} (mean ± standard deviation over seeds where more than one).", "",
             "| model | seeds | clean % | worst case % | WRA (worst) % | missed % | detected % of fooled | clean FPR % | train s | evaluate s | sanity |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    order = {m: i for i, m in enumerate(MODELS)}
    for name in sorted(models, key=lambda k: (order.get(_base(models[k]), len(order)), _base(models[k]), k)):
        recs = models[name]
        g = lambda k, recs=recs: [r[k] for r in recs]  # noqa: E731
        lines.append(f"| {name} | {len(recs)} | {_fmt(g('clean'))} | {_fmt(g('worst'))} | {_fmt(g('wra'))} | "
                     f"{_fmt(g('missed'))} | {_fmt(g('detected'))} | {_fmt(g('fpr'))} | {_fmt(g('train_s'), False)} | "
                     f"{_fmt(g('eval_s'), False)} | {'pass' if all(g('sanity')) else '**FAIL**'} |")  # fmt: skip
    lines += [""] + [f"- {n}" for n in notes or []] + ([""] if notes else []) + [verdict(models)]
    if walls:
        lines += ["", wall_line(walls)]
    if plot is not None:
        lines += ["", f"![clean vs worst-case accuracy, {setting}]({plot.as_posix()})"]
    return "\n".join(lines)


def verdict(models: dict[str, list[dict[str, Any]]]) -> str:
    """Does AW-Net beat the best static model on worst-case WRA by the goal, clean within slack?"""
    static = {m: _ms([r["wra"] for r in recs])[0] for m, recs in models.items() if _base(recs) not in AWNET_MODELS}
    aw = {m: _ms([r["wra"] for r in recs])[0] for m, recs in models.items() if _base(recs) in AWNET_MODELS}
    if not static or not aw:
        return "Verdict: not enough models in this setting to judge."
    best_static = max(static, key=static.get)
    best_aw = max(aw, key=aw.get)
    gain = aw[best_aw] - static[best_static]
    standards = [recs for recs in models.values() if _base(recs) == "standard"]
    clean_std = _ms([r["clean"] for r in max(standards, key=len)])[0] if standards else None
    clean_aw = _ms([r["clean"] for r in models[best_aw]])[0]
    wra_ok = gain >= WRA_GOAL
    clean_ok = clean_std is not None and clean_aw >= clean_std - CLEAN_SLACK
    text = (f"**Verdict:** the best AW-Net ({best_aw}, worst-case WRA {aw[best_aw]:.1%}) is "
            f"{'ahead of' if gain >= 0 else 'behind'} the best static model ({best_static}, {static[best_static]:.1%}) "
            f"by {abs(gain) * 100:.1f} points: the goal of at least {WRA_GOAL * 100:.0f} points is "
            f"**{'met' if wra_ok else 'not met'}**.")  # fmt: skip
    if clean_std is not None:
        text += (f" Its clean accuracy {clean_aw:.1%} against the standard model's {clean_std:.1%}: within "
                 f"{CLEAN_SLACK * 100:.0f} point is **{'met' if clean_ok else 'not met'}**.")  # fmt: skip
    paired = [paired_difference(models[best_aw], models[best_static], "wra", f"{best_aw} - {best_static}, WRA",
                                WRA_GOAL)]  # fmt: skip
    if standards:
        paired.append(paired_difference(models[best_aw], max(standards, key=len), "clean",
                                        f"{best_aw} - standard, clean accuracy", -CLEAN_SLACK))  # fmt: skip
    paired = [p for p in paired if p]
    if paired:
        text += " Paired by seed (95 % t-interval): " + "; ".join(p for p, _ in paired) + "."
        if any(where == "below" for _, where in paired):
            text += " **The seeds exclude the goal** (an interval lies wholly on the wrong side of it)."
        elif len(paired) == 2 and all(where == "above" for _, where in paired):
            text += " **The seeds show the goal met** (both intervals lie on its side)."
        else:
            text += " More seeds are needed to decide."
    return text


def paired_difference(
    a: list[dict[str, Any]], b: list[dict[str, Any]], key: str, what: str, goal: float
) -> tuple[str, str] | None:
    """``a - b`` over the seeds both have, with its 95 % t-interval (a seed's models share its
    data order and initial draw, so the difference varies less than either model does), and
    where that interval lies against ``goal``: "above", "below" or "inside"; None below two
    common seeds."""
    from scipy import stats

    by_seed = {r["seed"]: r[key] for r in b}
    diffs = [r[key] - by_seed[r["seed"]] for r in a if r["seed"] in by_seed]
    if len(diffs) < 2:
        return None
    mean, sd = _ms(diffs)
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * sd / len(diffs) ** 0.5
    lo, hi = mean - half, mean + half
    where = "above" if lo > goal else "below" if hi < goal else "inside"
    say = {"above": "wholly above", "below": "wholly below", "inside": "spanning"}[where]
    return (f"{what} {mean * 100:+.1f} points [{_end(lo, goal)}, {_end(hi, goal)}] over {len(diffs)} seeds, "
            f"{say} the goal's {goal * 100:+.0f}"), where


def _end(value: float, goal: float) -> str:
    """An interval end in points, with a second decimal where one would print it equal to the
    goal (an end of 1.96 is below +2, and "[-2.4, +2.0] wholly below +2" reads as a contradiction)."""
    return f"{value * 100:+.2f}" if f"{value * 100:+.1f}" == f"{goal * 100:+.1f}" else f"{value * 100:+.1f}"


def plot_tradeoff(setting: str, models: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    from training.plots import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(6, 4.5))
    for name, recs in models.items():
        c, w = _ms([r["clean"] for r in recs]), _ms([r["worst"] for r in recs])
        marker = "*" if _base(recs) in AWNET_MODELS else "o"
        ax.errorbar(w[0] * 100, c[0] * 100, xerr=w[1] * 100, yerr=c[1] * 100, fmt=marker, markersize=10 if marker == "*" else 7,
                    capsize=3, label=name)  # fmt: skip
    ax.set_xlabel("worst-case robust accuracy (%)")
    ax.set_ylabel("clean accuracy (%)")
    ax.set_title(f"{setting}: clean vs worst-case accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path, dpi=120)


def render(results: Path, out: Path) -> str:
    data = load_results(results)
    walls = load_walls(results)
    figures = out.parent / "figures"
    sections = []
    for setting, merged in sorted(data.items()):
        models, notes = split_by_recipe(merged)
        plot = plot_tradeoff(setting, models, figures / f"tradeoff_{setting}.png")
        sections.append(setting_section(setting, models, plot.relative_to(out.parent), notes, walls.get(setting)))
    body = "\n\n".join(sections) if sections else "No reproduction results yet: run `make reproduce`."
    write_section(out, BEGIN, END, f"<!-- written by `python -m training report` from results/; do not edit by hand -->\n\n{body}\n",
                  "## Reproduction (`make reproduce`)")  # fmt: skip
    return body


def write_section(out: Path, begin: str, end: str, content: str, heading: str) -> None:
    """Rewrite only what lies between ``begin`` and ``end`` in ``out`` (the rest is prose),
    appending the block under ``heading`` when the markers are absent; shared by the
    reproduction report and the trade-off sweep (training/sweep.py)."""
    block = f"{begin}\n{content}\n{end}"
    text = out.read_text() if out.is_file() else "# Results\n\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n" + block + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rewrite docs/results.md from the evaluation cards under results/")
    p.add_argument("--results", default="results", help="folder of SETTING/seedN/MODEL/evaluation.json")
    p.add_argument("--out", default="docs/results.md")
    p.set_defaults(func=lambda a: print(render(Path(a.results), Path(a.out))) or 0)
