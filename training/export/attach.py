"""``python -m training attach-card VERSION_DIR CARD``: a newer evaluation of an exported version.

When ``evaluate`` gains an attack or a check, the versions already exported still carry the
old card in their manifest (``evaluation.robustness``: what ``/v1/models`` shows and the
service exports as gauges). Exporting again would rewrite the graph, the probes and the
calibration to change one block; this rewrites the block alone, after checking that the card
evaluates exactly the folder's weights (``evaluate VERSION_DIR`` rebuilds them from the
graph), and puts the card beside the manifest as ``evaluation.json`` and ``evaluation.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from artifact_contract import ROBUSTNESS_KEY, Manifest
from training.evaluation.command import write_card
from training.evaluation.target import load_target
from training.export.exporter import card_summary, load_card


def attach_card(version_dir: str | Path, card_path: str | Path) -> Manifest:
    """Check ``card_path`` against the weights in ``version_dir``, then write it into the
    manifest and beside it. Raises ``ValueError`` when the card evaluates other weights."""
    version_dir, card_path = Path(version_dir), Path(card_path)
    manifest = Manifest.load(version_dir)
    card = load_card(card_path, load_target(version_dir).model,
                     f"{version_dir} (evaluate the folder itself: `python -m training evaluate {version_dir} --out DIR`)")
    manifest.evaluation = {**(manifest.evaluation or {}), ROBUSTNESS_KEY: card_summary(card)}
    manifest.write(version_dir)
    write_card(card, version_dir)
    return manifest


def add_parser(sub: Any) -> None:
    p = sub.add_parser("attach-card", help="put a newer evaluation card of an exported version into its manifest",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("version_dir", help="models/repository/NAME/VERSION")
    p.add_argument("card", help="evaluation.json of `python -m training evaluate VERSION_DIR`")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    try:
        m = attach_card(args.version_dir, args.card)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    r = m.robustness()
    assert r is not None
    print(json.dumps({"manifest": str(Path(args.version_dir) / "manifest.json"), "worst_case_acc": r.worst_case_acc,
                      "missed": r.missed, "detected_share": r.detected_share, "sanity_passed": r.sanity_passed}))  # fmt: skip
    return 0
