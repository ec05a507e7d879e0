"""`python -m training attach-card`: a newer card goes into an exported version's manifest only
when it evaluates that folder's weights, and the service then serves the new figures."""

from __future__ import annotations

import json
import shutil

import pytest

from artifact_contract import Manifest
from service.artifact import load_artifact
from tests.support.paths import SHIPPED_CHECKPOINT, SHIPPED_VERSION_DIR
from training.cli import main
from training.evaluation.command import evaluate_target, write_card
from training.evaluation.target import load_target


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    """A copy of the shipped version (its own name/version folders), safe to rewrite."""
    dst = tmp_path_factory.mktemp("repo") / SHIPPED_VERSION_DIR.parent.name / SHIPPED_VERSION_DIR.name
    shutil.copytree(SHIPPED_VERSION_DIR, dst)
    return dst


def test_a_card_of_other_weights_is_refused(version_dir, tmp_path, capsys):
    before = (version_dir / "manifest.json").read_bytes()
    # a card of the training checkpoint: the graph holds the router's BNs folded into its convs
    card = evaluate_target(load_target(SHIPPED_CHECKPOINT), n=16, budget="quick", attacks=["fgsm"],
                           progress=False, log=lambda *_: None)  # fmt: skip
    card_json, _ = write_card(card, tmp_path / "card")
    rc = main(["attach-card", str(version_dir), str(card_json)])
    assert rc == 2 and "evaluates other weights" in capsys.readouterr().out
    assert (version_dir / "manifest.json").read_bytes() == before


def test_a_card_of_the_folder_replaces_the_manifest_block(version_dir, tmp_path, capsys):
    card = evaluate_target(load_target(version_dir), n=16, budget="quick", attacks=["fgsm", "pgd20"],
                           progress=False, log=lambda *_: None)  # fmt: skip
    card_json, _ = write_card(card, tmp_path / "card")
    before = Manifest.load(version_dir)
    assert main(["attach-card", str(version_dir), str(card_json)]) == 0
    printed = json.loads(capsys.readouterr().out)
    after = Manifest.load(version_dir)
    r = after.robustness()
    assert r is not None and r.samples == 16 and set(r.attacks) == {"fgsm", "pgd20"}
    assert printed["worst_case_acc"] == r.worst_case_acc == card["worst_case"]["acc"]
    assert r.missed == card["worst_case"]["missed"]
    # everything else is as exported; the card sits beside the manifest
    assert after.onnx == before.onnx and after.router == before.router and after.probes == before.probes
    assert after.evaluation["test"] == before.evaluation["test"]
    assert json.loads((version_dir / "evaluation.json").read_text()) == card
    assert (version_dir / "evaluation.md").read_text().startswith("# Evaluation")
    # and the service reads the new figures (graph checksum unchanged)
    assert load_artifact(version_dir).robustness == r
