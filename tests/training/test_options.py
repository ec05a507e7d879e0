"""Option combinations that would do nothing are refused (exit status 2, a message naming the
option and what it needs), accepted ones parse, and the named recipes resolve and yield to
explicit flags (issue 13, items 3 and 5)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import pytest

from tests.support.paths import ROOT
from training.cli import add_train_args, build_parser, main
from training.config import GENERAL_OPTIONS, OPTION_RULES, TrainConfig
from training.data import get_dataset_info
from training.recipes import list_recipes, load_recipe

# (extra argv, the flag the refusal must name)
REFUSED = [
    (["--method", "standard", "--rat"], "--rat"),
    (["--method", "standard", "--attack-steps", "5"], "--attack-steps"),
    (["--method", "standard", "--step-size", "0.01"], "--step-size"),
    (["--method", "standard", "--eps-warmup-epochs", "1"], "--eps-warmup-epochs"),
    (["--method", "pgd-at", "--trades-beta", "3"], "--trades-beta"),
    (["--method", "awnet", "--teacher-free", "--trades-beta", "3"], "--trades-beta"),
    (["--method", "standard", "--trades-beta", "6"], "--trades-beta"),  # explicit, equal to the default
    (["--method", "trades", "--clean-teacher", "c.pt"], "--clean-teacher"),
    (["--method", "trades", "--robust-teacher", "r.pt"], "--robust-teacher"),
    (["--method", "standard", "--teacher-free"], "--teacher-free"),
    (["--method", "pgd-at", "--init-from", "r.pt"], "--init-from"),
    (["--method", "trades", "--type-loss-weight", "2"], "--type-loss-weight"),
    (["--method", "trades", "--balance-rate", "0.1"], "--balance-rate"),
    (["--method", "trades", "--kd-temperature", "2"], "--kd-temperature"),
    (["--method", "trades", "--kd-reduction", "batchmean"], "--kd-reduction"),
    (["--method", "trades", "--router-width", "16"], "--router-width"),
    (["--method", "trades", "--router-hidden", "16"], "--router-hidden"),
    (["--method", "trades", "--signal-activation", "none"], "--signal-activation"),
    (["--method", "awnet", "--teacher-free", "--clean-teacher", "c.pt"], "--clean-teacher"),
    (["--method", "awnet", "--teacher-free", "--robust-teacher", "r.pt"], "--robust-teacher"),
    (["--method", "awnet", "--teacher-free", "--kd-temperature", "2"], "--kd-temperature"),
    (["--method", "awnet", "--teacher-free", "--kd-reduction", "batchmean"], "--kd-reduction"),
    (["--method", "trades", "--router-adaptive"], "--router-adaptive"),
    (["--method", "trades", "--evasion-lambdas", "1"], "--evasion-lambdas"),
    (["--method", "awnet", "--teacher-free", "--no-router-adaptive", "--evasion-lambdas", "1"], "--evasion-lambdas"),
    (["--method", "trades", "--rat-sigma", "0.001"], "--rat-sigma"),
    (["--method", "trades", "--rat-alpha", "0.1"], "--rat-alpha"),
    (["--method", "trades", "--rat-c", "0.5"], "--rat-c"),
    (["--model", "smallcnn", "--depths", "1", "1", "1"], "--depths"),
    (["--model", "wrn34_r", "--widths", "1", "1", "1"], "--widths"),
    (["--lr-schedule", "cosine", "--milestones", "3"], "--milestones"),
    (["--lr-schedule", "constant", "--lr-gamma", "0.5"], "--lr-gamma"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum"),
    (["--download"], "--download"),
    (["--dataset", "tinyimagenet", "--download"], "--download"),
    (["--dataset", "imagefolder:/nonexistent", "--download"], "--download"),
    (["--data-root", "/tmp"], "--data-root"),
    (["--dataset", "imagefolder:/nonexistent", "--data-root", "/tmp"], "--data-root"),
    (["--augment"], "--augment"),
    (["--val-square-every", "0", "--val-square-samples", "10"], "--val-square-samples"),
    (["--val-square-every", "0", "--val-square-queries", "10"], "--val-square-queries"),
    (
        ["--method", "trades", "--val-attack-steps", "0", "--val-apgdt-targets", "0"]
        + ["--val-square-every", "0", "--masking-margin", "0.1"],
        "--masking-margin",
    ),
    (["--val-attack-steps", "50"], "--val-attack-steps"),  # a standard model is selected on clean accuracy
    (["--val-apgdt-targets", "2"], "--val-apgdt-targets"),
    (
        ["--method", "trades", "--val-apgdt-targets", "0", "--val-apgdt-steps", "9"],
        "--val-apgdt-steps",
    ),
]

ACCEPTED = [
    [],
    ["--method", "standard", "--no-rat", "--no-teacher-free", "--no-augment", "--eps", "0.1"],
    ["--method", "pgd-at", "--rat", "--rat-alpha", "0.1", "--attack-steps", "5"],
    ["--method", "trades", "--rat", "--rat-sigma", "1e-3", "--rat-c", "0.5", "--trades-beta", "3"],
    ["--method", "awnet", "--teacher-free", "--rat", "--balance-rate", "0.1", "--type-loss-weight", "2",
     "--router-width", "16", "--router-hidden", "8", "--signal-activation", "none", "--init-from", "r.pt"],
    ["--method", "awnet", "--clean-teacher", "c.pt", "--robust-teacher", "r.pt", "--kd-temperature", "2",
     "--kd-reduction", "batchmean", "--router-adaptive", "--evasion-lambdas", "1", "2"],
    ["--method", "trades", "--no-router-adaptive", "--val-attack-steps", "0", "--masking-margin", "0.1"],
    ["--method", "pgd-at", "--val-square-every", "3", "--val-square-samples", "10", "--val-square-queries", "10"],
    ["--method", "trades", "--val-attack-steps", "0", "--val-apgdt-targets", "9", "--val-apgdt-steps", "20",
     "--masking-margin", "0.1"],
    ["--model", "wrn", "--depths", "1", "1", "1", "--widths", "1", "1", "1"],
    ["--method", "awnet", "--teacher-free", "--model", "awnet_wrn", "--depths", "1", "1", "1"],
    ["--lr-schedule", "multistep", "--milestones", "2", "3", "--lr-gamma", "0.5"],
    ["--optimizer", "adam", "--lr", "1e-3"],
    ["--dataset", "cifar10", "--download", "--data-root", "/tmp/d", "--augment"],
    ["--dataset", "cifar10@full-train", "--no-download"],
    ["--dataset", "tinyimagenet", "--data-root", "/tmp/d", "--augment"],
    ["--dataset", "imagefolder:/nonexistent", "--augment"],
]  # fmt: skip


def _run(argv: list[str]) -> int:
    """``python -m training ARGV`` in this process: its exit status."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _parse(extra: list[str]) -> TrainConfig:
    """The TrainConfig ``python -m training train EXTRA`` would train (nothing runs)."""
    return build_parser().parse_args(["train", *extra]).train_config


@pytest.mark.parametrize("extra,flag", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_combination_exits_2_naming_the_option(extra, flag, tmp_path, capsys) -> None:
    assert _run(["train", *extra, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(flag)}( \(from [^)]*\))? needs ", err), err
    assert not (tmp_path / "run").exists()  # refused before anything ran


def _kwargs(extra: list[str]) -> dict:
    """The TrainConfig fields that ``extra`` moves away from their defaults."""
    p = argparse.ArgumentParser()
    add_train_args(p)
    defaults = TrainConfig()
    return {k: v for k, v in vars(p.parse_args(extra)).items() if v != getattr(defaults, k)}


# Explicit values equal to the default are refused on the command line only: a bare
# TrainConfig cannot tell them from defaults.
PROGRAMMATIC = [(a, f) for a, f in REFUSED if f[2:].replace("-", "_") in _kwargs(a)]


@pytest.mark.parametrize("extra,flag", PROGRAMMATIC, ids=[" ".join(a) for a, _ in PROGRAMMATIC])
def test_programmatic_config_refuses_the_same(extra, flag) -> None:
    """TrainConfig.resolve raises ValueError for the same combinations (values away from
    their defaults count as chosen)."""
    info = get_dataset_info("mnist5k")
    with pytest.raises(ValueError, match=re.escape(flag)):
        TrainConfig(**_kwargs(extra)).resolve(info.eps, False)


@pytest.mark.parametrize("extra", ACCEPTED, ids=[" ".join(a) or "defaults" for a in ACCEPTED])
def test_accepted_combination_parses(extra) -> None:
    cfg = _parse(extra)
    assert isinstance(cfg, TrainConfig) and cfg.model is not None


def test_defaults_never_trip_and_resolving_twice_changes_nothing() -> None:
    cfg = _parse(["--method", "standard"])
    assert cfg.trades_beta == TrainConfig().trades_beta and not cfg.rat
    cfg.resolve(0.3, False)
    again = TrainConfig.from_dict(cfg.to_dict()).resolve(0.3, False)  # e.g. a checkpoint's config
    assert again == cfg


def test_every_option_is_classified() -> None:
    """Every TrainConfig field either acts in every run or has a rule saying when it acts:
    a new option must be placed in one of them (training/config.py)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    ruled = {n for rule in OPTION_RULES for n in rule.options}
    assert ruled <= names and set(GENERAL_OPTIONS) <= names
    assert names == ruled | set(GENERAL_OPTIONS), sorted(names - ruled - set(GENERAL_OPTIONS))
    p = argparse.ArgumentParser()
    add_train_args(p)
    assert {a.dest for a in p._actions if a.dest != "help"} <= names


def _documented_train_commands() -> list[str]:
    commands = []
    for doc in ("README.md", "docs/training.md"):
        text = (ROOT / doc).read_text().replace("\\\n", " ")
        for line in text.splitlines():
            m = re.search(r"-m training train (.*)", line)
            if m and "..." not in m.group(1) and "$" not in m.group(1):
                commands.append(m.group(1).split("`")[0].strip())
    return commands


def test_documented_train_commands_parse() -> None:
    commands = _documented_train_commands()
    assert len(commands) >= 3
    for cmd in commands:
        _parse(cmd.split())


# ---- recipes ----------------------------------------------------------------------------


def test_every_recipe_loads_and_resolves() -> None:
    recipes = list_recipes()
    assert {"robustwrn_wrn34r_trades_cifar10", "rat_trades_resnet18_cifar10", "rat_trades_wrn34_10_cifar10",
            "awnet_resnet18_cifar10", "awnet_clean_teacher_resnet18_cifar10",
            "awnet_robust_teacher_resnet18_cifar10"} <= {r.name for r in recipes}  # fmt: skip
    for r in recipes:
        assert r.description.strip()
        cfg = _parse(["--recipe", r.name])
        assert cfg.recipe == r.name
        for key, value in r.config.items():
            assert getattr(cfg, key) == value, (r.name, key)
        info = get_dataset_info(cfg.dataset)  # metadata only: the images may be absent here
        cfg.resolve(info.eps, True)
        assert cfg.to_dict()["recipe"] == r.name


def test_paper_recipes_hold_the_papers_settings() -> None:
    wrn = load_recipe("robustwrn_wrn34r_trades_cifar10").train_config()
    assert (wrn.model, wrn.method, wrn.epochs, wrn.lr, wrn.milestones, wrn.lr_gamma) == (
        "wrn34_r", "trades", 100, 0.1, [75, 90], 0.1)
    assert (wrn.weight_decay, wrn.grad_clip, wrn.attack_steps, wrn.eps, wrn.step_size) == (
        2e-4, 5.0, 10, 8 / 255, 2 / 255)
    aw = load_recipe("awnet_resnet18_cifar10").train_config()
    assert (aw.model, aw.epochs, aw.milestones) == ("awnet_resnet18", 300, [215, 260, 285])
    for teacher, method in (("clean", "standard"), ("robust", "trades")):
        t = load_recipe(f"awnet_{teacher}_teacher_resnet18_cifar10").train_config()
        assert (t.method, t.model) == (method, "resnet18")
        assert getattr(aw, f"{teacher}_teacher") == f"{t.out}/best.pt"
    for name, model in (("rat_trades_resnet18_cifar10", "resnet18"), ("rat_trades_wrn34_10_cifar10", "wrn34_10")):
        rat = load_recipe(name).train_config()
        assert (rat.method, rat.rat, rat.model) == ("trades", True, model)
    assert "PreAct ResNet-18" in load_recipe("rat_trades_resnet18_cifar10").description
    assert all(r.config["dataset"].endswith("@full-train") for r in list_recipes() if "cifar10" in r.name)


def test_explicit_flags_override_the_recipe() -> None:
    cfg = _parse(["--recipe", "robustwrn_wrn34r_trades_cifar10", "--lr", "0.05", "--epochs", "100",
                  "--out", "elsewhere", "--grad-clip", "0"])  # fmt: skip
    assert (cfg.lr, cfg.epochs, cfg.out, cfg.grad_clip) == (0.05, 100, "elsewhere", 0.0)
    assert (cfg.model, cfg.milestones, cfg.recipe) == ("wrn34_r", [75, 90], "robustwrn_wrn34r_trades_cifar10")


def test_docs_spell_out_every_cifar_recipe() -> None:
    """docs/training.md gives each CIFAR recipe's command and the same run without the recipe."""
    commands = _documented_train_commands()
    for r in list_recipes():
        if "cifar10" not in r.name:
            continue
        short = f"--recipe {r.name} --data-root DATA"
        assert short in commands, r.name
        spelled_out = commands[commands.index(short) + 1]
        assert dataclasses.replace(_parse(short.split()), recipe=None) == _parse(spelled_out.split()), r.name


def test_digits_recipes_are_the_readme_chain() -> None:
    chain = [c for c in _documented_train_commands() if "runs/mnist5k/" in c][:3]
    assert len(chain) == 3
    for name, cmd in zip(("digits_clean_teacher", "digits_robust_teacher", "digits_awnet"), chain, strict=True):
        assert dataclasses.replace(_parse(["--recipe", name]), recipe=None) == _parse(cmd.split()), name


def test_recipe_errors_exit_2(tmp_path, capsys) -> None:
    assert _run(["train", "--recipe", "no_such_recipe"]) == 2
    assert "digits_awnet" in capsys.readouterr().err  # the message lists the shipped ones
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"description": "x", "config": {"method": "trades", "learning_rate": 1}}))
    assert _run(["train", "--recipe", str(bad)]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_recipe_file_by_path(tmp_path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"description": "my run", "config": {"method": "trades", "epochs": 3}}))
    cfg = _parse(["--recipe", str(path)])
    assert (cfg.method, cfg.epochs, cfg.recipe) == ("trades", 3, str(path))


def test_recipes_subcommand_lists_every_recipe(capsys) -> None:
    assert _run(["recipes"]) == 0
    out = capsys.readouterr().out
    for r in list_recipes():
        assert r.name in out


def test_run_config_records_the_recipe(tmp_path) -> None:
    out = tmp_path / "run"
    # one epoch of a two-epoch schedule validated every two: training only, no validation
    argv = ["train", "--recipe", "digits_clean_teacher", "--epochs", "2", "--stop-after", "1", "--eval-every", "2",
            "--max-train-samples", "128", "--batch-size", "64", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert _run(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"] == "digits_clean_teacher" and config["epochs"] == 2
