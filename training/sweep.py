"""``python -m training sweep``: AW-Net can only give back clean accuracy where robustness costs some
(issue 18). Trains standard and robust models at one budget over eps and width, evaluates each best.pt
(subprocesses, logged beside their outputs), writes a table, a plot and the setting it picks."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models import create_model, is_awnet_name, list_models
from training.evaluation.suite import BUDGETS, Budget
from training.report import _fmt, write_section

BEGIN, END = "<!-- sweep:begin -->", "<!-- sweep:end -->"
ROBUST = ("pgd-at", "trades")
LABEL = {"standard": "standard", "pgd-at": "PGD-AT", "trades": "TRADES"}
COST_GOAL = 0.03  # the bar: the best robust model loses at least 3 points of clean accuracy
TRAIN_DIGITS, TEST_DIGITS = 4000, 500
#: Seconds of one forward+backward pass over 500 digits, 2 free cores here (dry-run estimate only):
#: smallcnn from a 100-step attack on 500 digits (~40 s), the narrower by timed batches (0.3x, 0.2x).
STEP_SECONDS = {"smallcnn": 0.40, "smallcnn_w16": 0.12, "smallcnn_w8": 0.08, "smallcnn_w4": 0.06}
STARTUP_S = 6.0  # one `python -m training` process: imports, data, model
Row = dict[str, Any]


@dataclass(frozen=True)
class Cell:
    """``method`` on ``model`` evaluated at ``eps``, trained in ``run`` (shared by a backbone's standard cells)."""

    model: str
    method: str
    eps: float
    run: Path
    out: Path

    @property
    def name(self) -> str:
        return f"{self.model}/{self.method}-eps{self.eps:g}"


def plan(models: list[str], methods: list[str], eps: list[float], results: Path, runs: Path) -> list[Cell]:
    """Every (model, method, eps) cell; standard first per backbone, so its one run comes first."""
    return [Cell(model, m, float(e), runs / model / ("standard" if m == "standard" else f"{m}-eps{e:g}"), results / model / f"{m}-eps{e:g}")
            for model in models for m in sorted(dict.fromkeys(methods), key=lambda m: m != "standard") for e in eps]  # fmt: skip


def train_argv(cell: Cell, a: argparse.Namespace) -> list[str]:
    """The `train` command line: make reproduce's options at the sweep's budget."""
    argv = ["train", "--dataset", "mnist5k", "--method", cell.method, "--model", cell.model, "--epochs", str(a.epochs),
            "--seed", str(a.seed), "--eval-every", str(a.eval_every), "--val-max-samples", str(a.val_n), "--out", str(cell.run)]  # fmt: skip
    if a.max_train_samples:  # smoke runs: no batch larger than the split
        argv += ["--max-train-samples", str(a.max_train_samples), "--batch-size", str(min(128, a.max_train_samples))]
    if cell.method == "standard":  # eps-free (selected on clean accuracy): attack options would be refused
        return argv
    return argv + ["--eps", f"{cell.eps:g}", "--eps-warmup-epochs", f"{a.eps_warmup_epochs:g}"]


def checkpoint(cell: Cell) -> Path:
    """best.pt, or last.pt when every validation raised the masking alarm (no best.pt): evaluated, marked, never picked."""
    best = cell.run / "best.pt"
    return best if best.is_file() or not (cell.run / "last.pt").is_file() else cell.run / "last.pt"


def eval_argv(cell: Cell, a: argparse.Namespace) -> list[str]:
    argv = ["evaluate", str(checkpoint(cell)), "--n", str(a.n), "--seed", str(a.seed), "--budget", a.budget, "--eps", f"{cell.eps:g}"]
    return argv + ["--out", str(cell.out), "--allow-failed-checks"] + (["--attacks", *a.attacks] if a.attacks else [])


def cell_done(cell: Cell, a: argparse.Namespace) -> bool:
    """Whether the cell's card exists; one that other command lines made is refused, never reused."""
    card, timing = cell.out / "evaluation.json", cell.out / "timing.json"
    if card.is_file() and timing.is_file() and json.loads(timing.read_text()).get("argv") != [train_argv(cell, a), eval_argv(cell, a)]:
        raise ValueError(f"{card} comes from other sweep options (smoke run?): delete it or pick another --results folder")
    return card.is_file()


def estimate(cell: Cell, a: argparse.Namespace, train: bool) -> tuple[float, float]:
    """(train, evaluate) seconds on the 2 free cores: forward+backward passes x STEP_SECONDS."""
    s, robust, t = STEP_SECONDS.get(cell.model, max(STEP_SECONDS.values())), cell.method != "standard", 0.0
    if train:  # epochs x batches x passes; validations: PGD-20 (+ APGD-CE 100), every 2nd Square 1000 + PGDs on 100
        vals, digits = -(-a.epochs // a.eval_every), min(a.max_train_samples or TRAIN_DIGITS, TRAIN_DIGITS) / 500
        passes = a.epochs * digits * {"standard": 1, "pgd-at": 11, "trades": 12}[cell.method] + vals * min(a.val_n, 500) / 500 * (120 if robust else 20)
        passes += -(-vals // 2) * min(a.val_n, 100) / 500 * (1000 / 3 * 0.8 + 40) if robust else 0
        t = STARTUP_S + s * passes
    b, r = Budget.named(a.budget), (0.8 if robust else 0.1)  # share still correct, that queries keep hitting
    cost = {"fgsm": 1, "pgd20": 20, f"pgd{b.pgd_steps}": b.pgd_steps, f"cw{b.pgd_steps}": b.pgd_steps, "apgd-dlr": b.lib_steps,
            f"square{b.square_queries}": b.square_queries / 3 * r, "autoattack": r * b.lib_steps * (1 + 3 * (b.targets or 9)) + r * r * b.aa_square_queries / 3}  # fmt: skip
    names = a.attacks or list(cost)
    passes = sum(cost.get(n, b.pgd_steps) for n in names) + 60 + (0 if "pgd20" in names else 20)  # + sanity PGD-20s
    return t, STARTUP_S + s * min(a.n or TEST_DIGITS, TEST_DIGITS) / 500 * passes


def _child(argv: list[str], log: Path, threads: int = 0) -> float:
    """Run ``python -m training ARGV``, its output (progress bars too) into ``log``; its wall seconds."""
    cmd, t0 = [sys.executable, "-m", "training", *argv], time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        if rc := subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise SystemExit(f"error: `{' '.join(cmd)}` exited with {rc} (log {log}):\n{tail}")
    return round(time.time() - t0, 1)


def ensure_trained(cell: Cell, a: argparse.Namespace, dry: bool = False) -> float | None:
    """Train unless done with this command line (else restart afresh); its seconds. ``dry``: None if not done."""
    done, argv = cell.run / "done.json", train_argv(cell, a)
    if done.is_file() and checkpoint(cell).is_file() and json.loads(done.read_text())["argv"] == argv:
        return json.loads(done.read_text())["seconds"]
    if dry:
        return None
    shutil.rmtree(cell.run, ignore_errors=True)  # an unfinished or different run of ours restarts afresh
    secs = _child(argv, cell.run.parent / f"{cell.run.name}.train.log", a.threads)
    done.write_text(json.dumps({"argv": argv, "seconds": secs}) + "\n")
    return secs


def load_rows(results: Path) -> list[Row]:
    """One row per card under results/MODEL/METHOD-epsE/; clean_cost = standard clean - clean."""
    rows = []
    for path in sorted(results.glob("*/*-eps*/evaluation.json")):
        card, (method, eps) = json.loads(path.read_text()), path.parent.name.rsplit("-eps", 1)
        timing, s, w = path.parent / "timing.json", card["settings"], card["worst_case"]
        rows.append({"model": path.parent.parent.name, "method": method, "eps": float(eps), "clean": card["clean"]["acc"],
                     "worst": w["acc"], "wra": w["wra"], "n": s["n"], "budget": s["budget"], "seed": s["seed"], "attacks": {x["name"]: x["acc"] for x in card["attacks"]},
                     "sanity": all(c["passed"] for c in card.get("sanity", [])), "train_s": None, "eval_s": None,
                     "alarm": Path(card.get("model", {}).get("path", "")).name == "last.pt",
                     **{k: v for k, v in (json.loads(timing.read_text()) if timing.is_file() else {}).items() if k != "argv"}})  # fmt: skip
    std = {(r["model"], r["eps"]): r["clean"] for r in rows if r["method"] == "standard"}
    for r in rows:  # the same standard checkpoint at every eps: any eps of the backbone will do
        base = std.get((r["model"], r["eps"]), {m: c for (m, _), c in std.items()}.get(r["model"]))
        r["clean_cost"] = None if base is None else round(base - r["clean"], 6)
    return rows


@functools.cache
def param_count(model: str) -> int:
    return sum(p.numel() for p in create_model(model).parameters())


def setting_prefix(max_train_samples: int | None) -> str:
    """make reproduce's name for the training split: ``mnist`` (all 4,000 digits) or ``mnist1k`` (the first 1,000)."""
    n = max_train_samples or 0
    return "mnist" if not n or n >= TRAIN_DIGITS else f"mnist{n // 1000}k" if n % 1000 == 0 else f"mnist{n}"


def pick_setting(rows: list[Row], goal: float = COST_GOAL, size: Callable[[str], int] = param_count, prefix: str = "mnist") -> Row | None:
    """The smallest cell where the best robust model (highest worst case) loses at least ``goal`` clean accuracy to the
    standard one: smallest eps first (nearest the usual 0.3), then the narrowest backbone (cheapest for six methods)."""
    best: dict[tuple[str, float], Row] = {}
    for r in (r for r in rows if r["method"] in ROBUST and r["clean_cost"] is not None and not r.get("alarm")):
        if (k := (r["model"], r["eps"])) not in best or (r["worst"], r["clean"]) > (best[k]["worst"], best[k]["clean"]):
            best[k] = r
    hits = [r for r in best.values() if r["clean_cost"] >= goal - 1e-9]
    if not hits:
        return None
    r = min(hits, key=lambda r: (r["eps"], size(r["model"]), r["model"]))
    wide = "" if r["model"] == "smallcnn" else "-" + r["model"].removeprefix("smallcnn_")  # make reproduce's names
    return {"name": f"{prefix}-eps{r['eps']:g}{wide}", **{k: r[k] for k in ("model", "eps", "method", "clean", "worst", "clean_cost")}}


def plot_sweep(rows: list[Row], path: Path) -> Path:
    """Two panels against eps: the clean accuracy robustness costs, and the worst case; a colour per backbone."""
    from training.plots import pyplot, save_figure

    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.2))
    for ax, key, ylabel in zip(axes, ("clean_cost", "worst"), ("clean accuracy lost to robustness (points)", "worst-case robust accuracy (%)"), strict=True):
        for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
            for m in ROBUST if key == "clean_cost" else ("standard", *ROBUST):
                pts = sorted((r["eps"], r[key] * 100) for r in rows if (r["model"], r["method"]) == (model, m) and r[key] is not None)
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", color=f"C{i}", label=f"{model} {LABEL[m]}",
                            linestyle={"standard": ":", "pgd-at": "-"}.get(m, "--"))  # fmt: skip
                if masked := [(r["eps"], r[key] * 100) for r in rows if (r["model"], r["method"]) == (model, m) and r.get("alarm") and r[key] is not None]:
                    ax.scatter(*zip(*masked, strict=True), marker="x", s=90, color="black", zorder=3,
                               label="masking alarm (last.pt)" if not ax.get_legend_handles_labels()[1].count("masking alarm (last.pt)") else None)  # fmt: skip
        if key == "clean_cost":
            ax.axhline(COST_GOAL * 100, color="grey", linestyle=":", label=f"{COST_GOAL * 100:.0f} points")
        ax.set(xlabel="L-inf eps (training and evaluation)", ylabel=ylabel, title=ylabel.split(" (")[0])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def section(rows: list[Row], pick: Row | None, plots: list[str], settings: dict[str, Any]) -> str:
    """The docs/results.md section: how it was run, the table, the picked setting, the plots."""
    if not rows:
        return "No sweep results yet: run `python -m training sweep`."
    robust, at = [m for m in ROBUST if any(r["method"] == m for r in rows)], {(r["model"], r["method"], r["eps"]): r for r in rows}
    runs = {(r["model"], r["method"], None if r["method"] == "standard" else r["eps"]): r["train_s"] or 0 for r in rows}  # standard: once
    n, p = rows[0]["n"], sum(r["clean"] for r in rows) / len(rows)
    head = ["model", "eps", "standard clean %", "standard worst %", *(f"{LABEL[m]} {c}" for m in robust for c in ("clean %", "clean cost (points)", "worst %"))]
    lines = [f"Seed {rows[0]['seed']}, {n} test digits, L-inf eps as listed (training and evaluation), {settings.get('epochs', '?')} epochs "
             f"for every method (robust ones ramp eps over the first {settings.get('eps_warmup_epochs', '?')}; training digits: "
             f"{settings.get('max_train_samples') or 'all 4000'}). Worst case per digit over {', '.join(sorted({k for r in rows for k in r['attacks']}))} "
             f"at the evaluate command's `{rows[0]['budget']}` budget: a subset of its suite, so each worst case is an upper bound of the full "
             f"suite's. Clean cost = standard clean - robust clean; with one seed and {n} digits a difference carries about "
             f"{math.sqrt(2 * p * (1 - p) / n) * 100:.1f} points of standard error. Wall time: training {sum(runs.values()) / 60:.0f} min, "
             f"evaluation {sum(r['eval_s'] or 0 for r in rows) / 60:.0f} min.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for model in sorted({r["model"] for r in rows}, key=lambda m: -param_count(m)):
        for eps in sorted({r["eps"] for r in rows if r["model"] == model}):
            b = "**" if pick and (pick["model"], pick["eps"]) == (model, eps) else ""
            cells = [f"{b}{model}{b}", f"{b}{eps:g}{b}"]
            for m, keys in (("standard", ("clean", "worst")), *((m, ("clean", "clean_cost", "worst")) for m in robust)):
                cells += [_fmt([(at.get((model, m, eps)) or {}).get(k)]) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
    failed = [f"{r['model']}/{r['method']}-eps{r['eps']:g}" for r in rows if not r["sanity"]]
    lines += ["", f"Sanity checks failed in: {', '.join(failed)}.", ""] if failed else [""]
    if alarmed := [f"{r['model']}/{r['method']}-eps{r['eps']:g}" for r in rows if r.get("alarm")]:
        lines += [f"Masking alarm at every validation (no best.pt; last.pt evaluated, never picked): {', '.join(alarmed)}.", ""]
    if pick is None:
        lines.append(f"**Setting picked:** none: no cell's best robust model loses {COST_GOAL * 100:.0f} points of clean accuracy.")
    else:
        script = Path(__file__).resolve().parents[1] / "scripts" / "reproduce.sh"
        known = script.is_file() and f"{pick['name']})" in script.read_text()
        lines.append(f"**Setting picked: `{pick['name']}`** ({pick['model']}, eps {pick['eps']:g}): the smallest eps, then the narrowest "
                     f"backbone, where the best robust model ({LABEL[pick['method']]}, worst case {pick['worst']:.1%}) loses at least "
                     f"{COST_GOAL * 100:.0f} points of clean accuracy to the standard one ({pick['clean_cost'] * 100:.1f} points). "
                     + (f"Reproduce it with `make reproduce SETTING={pick['name']}`." if known else "scripts/reproduce.sh has no such SETTING yet."))  # fmt: skip
    return "\n".join(lines + [""] + [f"![{Path(q).stem}]({q})" for q in plots]).rstrip()


def render_sweep(results: Path, out: Path, figures: Path | None) -> str:
    """Rewrite the sweep section of ``out`` from the cards under ``results``; returns it."""
    rows = load_rows(results)
    settings = json.loads((results / "sweep.json").read_text())["settings"] if (results / "sweep.json").is_file() else {}
    plots = [Path(os.path.relpath(plot_sweep(rows, figures / "sweep_tradeoff.png"), out.parent)).as_posix()] if rows and figures else []
    body = section(rows, pick_setting(rows, prefix=setting_prefix(settings.get("max_train_samples"))), plots, settings)
    write_section(out, BEGIN, END, f"<!-- written by `python -m training sweep` from {results.as_posix()}/; do not edit by hand -->\n\n{body}\n",
                  "## Trade-off sweep (`python -m training sweep`)")  # fmt: skip
    return body


def write_summary(results: Path, a: argparse.Namespace, wall: float) -> dict[str, Any]:
    """results/sweep.json: the settings, every cell's figures and times, and the pick."""
    rows = load_rows(results)
    settings = {k: v for k, v in vars(a).items() if k not in ("command", "func", "dry_run")}
    doc = {"settings": settings, "wall_seconds": round(wall, 1), "cells": rows, "pick": pick_setting(rows, prefix=setting_prefix(a.max_train_samples))}
    (results / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def default_attacks(budget: str) -> list[str]:
    """PGD-20 (ours), APGD-DLR (torchattacks, margin loss) and Square (black-box; inside AutoAttack where the
    budget runs no Square alone): the rest of the suite is left out so the grid fits the hour."""
    return ["pgd20", "apgd-dlr", Budget.named(budget).square_attack]


def cmd_sweep(a: argparse.Namespace) -> int:
    from tqdm import tqdm

    results, a.attacks = Path(a.results), (None if a.attacks == ["all"] else a.attacks or default_attacks(a.budget))
    cells = plan(a.models, a.methods, a.eps, results, Path(a.runs))
    todo = [c for c in cells if not cell_done(c, a)]
    if a.dry_run:  # the plan, each cell's estimated minutes, the total
        seen, total = set(), 0.0
        print(f"{len(cells)} cells, {len(todo)} to run; evaluate --budget {a.budget} --n {a.n} --attacks {' '.join(a.attacks or ['(all)'])}")
        for c in cells:
            first = c in todo and c.run not in seen and ensure_trained(c, a, dry=True) is None
            seen.add(c.run)
            tr, ev = estimate(c, a, train=first) if c in todo else (0.0, 0.0)
            total += tr + ev
            print(f"  {c.name:<28} " + (f"{f'train ~{tr / 60:4.1f} min' if first else 'train: done/shared':<18}  evaluate ~{ev / 60:4.1f} min" if c in todo else "done"))
        print(f"estimated {total / 60:.0f} min with the 2 cores free (from STEP_SECONDS; a busy machine is slower)")
        return 0
    t0 = time.time()
    for c in (bar := tqdm(todo, desc="sweep", unit="cell", dynamic_ncols=True)):  # a failed child exits with its log's tail
        bar.set_postfix_str(f"train {c.name}")
        train_s = ensure_trained(c, a)
        bar.set_postfix_str(f"evaluate {c.name}")
        eval_s = _child(eval_argv(c, a), c.out / "evaluate.log", a.threads)
        (c.out / "timing.json").write_text(json.dumps({"train_s": train_s, "eval_s": eval_s, "argv": [train_argv(c, a), eval_argv(c, a)]}) + "\n")
        tqdm.write(f"{c.name}: clean {(w := json.loads((c.out / 'evaluation.json').read_text()))['clean']['acc']:.3f}, worst case {w['worst_case']['acc']:.3f} (train {train_s:.0f} s, evaluate {eval_s:.0f} s)")
        write_summary(results, a, time.time() - t0)
    doc = write_summary(results, a, time.time() - t0)
    print(render_sweep(results, Path(a.report), Path(a.figures)))
    print(f"sweep: {len(todo)} cells run in {(time.time() - t0) / 60:.1f} min wall time; picked: {(doc['pick'] or {}).get('name')}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", formatter_class=argparse.ArgumentDefaultsHelpFormatter, help="trade-off sweep: the clean cost of robustness over eps and width (issue 18)",
                       description="Train standard and robust models at one budget over eps and width, evaluate each best.pt, write results/sweep/ and the "
                                   "sweep section of docs/results.md (all cells done: only that). The reported figures use --budget on --attacks.")  # fmt: skip
    p.add_argument("--models", nargs="+", choices=[m for m in list_models() if not is_awnet_name(m)], default=["smallcnn", "smallcnn_w8"], metavar="MODEL", help="static backbones")
    p.add_argument("--methods", nargs="+", choices=("standard", *ROBUST), default=["standard", "pgd-at"], help="standard is trained once per backbone")
    p.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4], help="L-inf budgets, training and evaluation")
    p.add_argument("--epochs", type=int, default=8, help="every method")
    p.add_argument("--eps-warmup-epochs", type=float, default=2.0, help="robust methods")
    p.add_argument("--eval-every", type=int, default=4, help="validate (and select best.pt) every N epochs and on the last")
    p.add_argument("--max-train-samples", type=int, default=0, help="first N training digits, 0 = all 4000")
    p.add_argument("--val-n", type=int, default=500, help="validation digits used during training")
    p.add_argument("--n", type=int, default=500, help="test digits evaluated")
    p.add_argument("--budget", choices=BUDGETS, default="reproduce", help="evaluation attack budget, the reported figures' (quick: smoke runs only)")
    p.add_argument("--attacks", nargs="+", default=None, help="attacks of the evaluate suite (default: pgd20 apgd-dlr and Square, alone or in autoattack; 'all': the whole suite)")
    p.add_argument("--seed", type=int, default=0, help="of every training run and attack")
    p.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the runs (0: torch's default); 1 is far faster when other jobs share the cores")
    for flag, default, text in (("--results", "results/sweep", "MODEL/METHOD-epsE/evaluation.json, sweep.json"), ("--runs", "runs/sweep", "training runs"),
                                 ("--report", "docs/results.md", "report"), ("--figures", "docs/figures", "for sweep_tradeoff.png")):  # fmt: skip
        p.add_argument(flag, default=default, help=text)
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time, run nothing")
    p.set_defaults(func=cmd_sweep)
