"""``python -m training analyze {weights,router}``: argument parsing only (the analysis
modules are imported when a command runs; the router's defaults are the evaluate suite's)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from training.evaluation.suite import DEFAULT_LAMBDAS, Budget


def _print(report: dict[str, Any], out: str) -> int:
    print(report["markdown"])
    print(json.dumps({"out": str(out), "files": report["files"]}))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from training.analysis.weights import analyze_weights

    report = analyze_weights(
        args.checkpoints, args.out, labels=args.labels, fold=not args.raw, n=args.n, eps=args.eps,
        steps=args.steps, adv_mix=args.adv_mix, seed=args.seed, device=args.device,
        data_root=args.data_root, logy=args.logy,
    )  # fmt: skip
    return _print(report, args.out)


def cmd_router(args: argparse.Namespace) -> int:
    from training.analysis.router import analyze_router

    report = analyze_router(
        args.checkpoint, args.out, n=args.n, eps=args.eps, steps=args.steps, lambdas=args.lambdas,
        manifest=args.manifest, evade_clean_branch=args.evade_clean_branch, batch_size=args.batch_size, seed=args.seed, device=args.device, data_root=args.data_root,
        progress=not args.no_progress,
    )  # fmt: skip
    return _print(report, args.out)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``analyze`` and its ``weights`` / ``router`` sub-subcommands on the
    ``python -m training`` subparsers."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser("analyze", help="analysis plots and tables (weight distributions, router)")
    sub = p.add_subparsers(dest="analysis", required=True)

    w = sub.add_parser(
        "weights", formatter_class=fmt,
        help="filter-weight distributions per conv layer (std, excess kurtosis): static models and both AW-Net branches",
    )  # fmt: skip
    w.add_argument("checkpoints", nargs="+", help="checkpoints (static and/or AW-Net) to overlay")
    w.add_argument("--out", required=True, help="folder for weights_hist.png, weights_stats.png, weights.json, weights.md")
    w.add_argument("--labels", nargs="+", default=None,
                   help="one label per checkpoint (default: the method in its config; AW-Net adds 'clean/adversarial branch')")
    w.add_argument("--raw", action="store_true",
                   help="raw conv weights W instead of the BN-folded effective filters W * gamma / sqrt(var + eps)")
    w.add_argument("--n", type=int, default=500, help="AW-Net: test images whose router signals omega are averaged")
    w.add_argument("--eps", type=float, default=None, help="AW-Net: PGD budget for the adversarial branch (default: the checkpoint's)")
    w.add_argument("--steps", type=int, default=20, help="AW-Net: PGD steps for the adversarial inputs")
    w.add_argument("--adv-mix", choices=("router", "adv"), default="router",
                   help="AW-Net: PGD through the soft router (as in training) or the forced adversarial branch")
    w.add_argument("--logy", action="store_true", help="log-scale densities (shows the tails)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--device", default="cpu")
    w.add_argument("--data-root", default=None, help="torchvision datasets folder (not needed for mnist5k)")
    w.set_defaults(func=cmd_weights)

    r = sub.add_parser(
        "router", formatter_class=fmt,
        help="router-score histograms and ROC curves under plain, transfer and router-evasion PGD",
    )  # fmt: skip
    r.add_argument("checkpoint", help="an AW-Net checkpoint (.pt) or exported model folder (manifest.json + model.onnx)")
    r.add_argument("--out", required=True, help="folder for router_hist.png, router_roc.png, router.json, router.md")
    r.add_argument("--n", type=int, default=500, help="first N test images")
    r.add_argument("--eps", type=float, default=None, help="L-inf budget (default: the checkpoint's training eps)")
    r.add_argument("--steps", type=int, default=Budget.named("standard").pgd_steps,
                   help="PGD steps of every attack (the evaluate suite's attacks, step 2.5 * eps / steps)")
    r.add_argument("--lambdas", type=float, nargs="+", default=list(DEFAULT_LAMBDAS),
                   help="router-evasion weights: maximise CE + lambda * log p_clean, one attack each")
    r.add_argument("--manifest", default=None,
                   help="exported model's manifest.json (or its folder) for the router threshold (default: as evaluate "
                        "reads it: an exported folder's own, for a checkpoint the exporter's rule on the validation split)")
    r.add_argument("--evade-clean-branch", action="store_true",
                   help="also run router evasion through the forced clean branch (one more attack per lambda)")
    r.add_argument("--batch-size", type=int, default=100)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--device", default="cpu")
    r.add_argument("--data-root", default=None, help="torchvision datasets folder (not needed for mnist5k)")
    r.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    r.set_defaults(func=cmd_router)
    return p
