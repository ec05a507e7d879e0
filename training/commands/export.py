"""``python -m training export``: a checkpoint to an ONNX model version with its manifest."""

from __future__ import annotations

import argparse
import json

from training.export.calibrate import DEFAULT_TARGET_FPR, DEFAULT_THRESHOLD_FLOOR


def cmd_export(args: argparse.Namespace) -> int:
    from training.export.exporter import export_checkpoint

    res = export_checkpoint(
        args.checkpoint, args.out, name=args.name, version=args.version, static=args.static,
        target_fpr=args.fpr, opset=args.opset, eval_steps=args.eval_steps,
        eval_max_samples=args.eval_max_samples, skip_eval=args.skip_eval, threshold_floor=args.threshold_floor,
        force=args.force, evaluation_card=args.evaluation, fold=not args.no_fold,
    )  # fmt: skip
    m = res.manifest
    print(json.dumps({"out": str(res.out_dir), "kind": m["kind"], "sha256": m["onnx"]["sha256"],
                      "router": m["router"], "test": m["evaluation"].get("test")}))  # fmt: skip
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (both branches) with its manifest",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (last.pt)")
    p.add_argument("--out", required=True, help="model repository folder models/repository/NAME/VERSION/")
    p.add_argument("--name", default=None, help="model name (default: the NAME of --out)")
    p.add_argument("--version", default=None, help="model version (default: the VERSION of --out)")
    p.add_argument("--static", action="store_true",
                   help="export the plain backbone (AW-Net: the clean branch alone): the benchmark baseline")
    p.add_argument("--fpr", type=float, default=DEFAULT_TARGET_FPR,
                   help="clean false-positive rate the router threshold is calibrated for")
    p.add_argument("--threshold-floor", type=float, default=DEFAULT_THRESHOLD_FLOOR,
                   help="the threshold is max(FPR-calibrated threshold, this); the default 0 is the pure FPR "
                        "threshold (a floor of 0.5 let router-evasion attacks through: docs/decisions.md)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset")
    p.add_argument("--eval-steps", type=int, default=20, help="PGD steps for calibration and test figures")
    p.add_argument("--eval-max-samples", type=int, default=1000, help="validation/test images used")
    p.add_argument("--skip-eval", action="store_true", help="skip the test-split figures (parity still runs)")
    p.add_argument("--evaluation", default=None,
                   help="evaluation.json of `python -m training evaluate` on this checkpoint: its worst case, "
                        "router missed share and per-attack figures go into the manifest")
    p.add_argument("--no-fold", action="store_true",
                   help="export the layer-by-layer graph (omega, both BNs and the blend per layer) instead of the folded "
                        "scale and shift: `evaluate FOLDER` can rebuild only an unfolded graph (the fold renames the BN "
                        "constants); the shipped model is exported so")
    p.add_argument("--force", action="store_true",
                   help="export a checkpoint that carries a masking alarm (the manifest records it)")
    p.set_defaults(func=cmd_export)
