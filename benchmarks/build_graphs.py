"""Export one backbone's AW-Net graph and its plain backbone, for ``--graph-compare``.

``python -m benchmarks.build_graphs --arch resnet18 --out DIR [--checkpoint CKPT] [--unfolded]``,
run as a subprocess by ``benchmarks.graph_compare`` so that torch never loads in the timing
process. Writes into DIR:

* ``awnet.onnx``: ``awnet_ARCH`` through the exporter's own graph code
  (``training.export.graph``: the folded forward, what ``python -m training export`` ships);
* ``awnet-unfolded.onnx`` (``--unfolded``): the layer-by-layer eval graph (omega's multiply,
  both BNs, the blend), the "before" of the fold;
* ``plain.onnx``: the same backbone with plain convs and the AW-Net's clean BNs, router
  removed (``benchmarks.build_plain.plain_from_awnet``): the same convolutions;
* ``graphs.json``: where the weights came from, the input shape, each graph's parity.

Weights: the checkpoint's when it holds ``awnet_ARCH`` (the shipped small CNN), else a seeded
random init with perturbed BN statistics and signal heads (so the two branches and the
signals differ): fine for timing, meaningless as a classifier. Before anything is written,
each AW-Net graph passes the exporter's parity check (router, forced clean, forced
adversarial, per-sample overrides) against the *unfolded* PyTorch eval forward.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SEED = 0


def awnet_for(arch: str, checkpoint: Path | None) -> tuple[Any, dict[str, Any], str]:
    """(AW-Net in eval mode, its model kwargs, where its weights come from)."""
    import torch

    from models import create_model
    from models.perturb import perturb_branches

    name = "awnet_" + arch
    if checkpoint is not None and checkpoint.is_file():
        from training.checkpoint import load_model

        model, ckpt = load_model(checkpoint, "cpu")
        if ckpt.get("model_name") == name:
            return (
                model.eval(),
                dict(ckpt.get("model_kwargs") or {}),
                f"checkpoint {checkpoint.name}",
            )
    torch.manual_seed(SEED)
    model = create_model(name)
    perturb_branches(model, SEED)
    return model.eval(), {}, f"random init (seed {SEED}; timing only)"


def build(arch: str, out: Path, checkpoint: Path | None, unfolded: bool) -> dict[str, Any]:
    import torch

    from benchmarks.build_plain import plain_from_awnet
    from training.export.graph import ExportWrapper, StaticExportWrapper, check_graph, export_onnx
    from training.export.parity import parity_check

    awnet, kwargs, weights = awnet_for(arch, checkpoint)
    plain = plain_from_awnet(awnet, arch, kwargs)
    shape = list(awnet.input_config.shape)
    reference = ExportWrapper(awnet, fold=False)
    graphs: dict[str, tuple[torch.nn.Module, torch.nn.Module]] = {
        "awnet": (ExportWrapper(awnet), reference),
        **({"awnet-unfolded": (reference, reference)} if unfolded else {}),
        "plain": (StaticExportWrapper(plain), StaticExportWrapper(plain)),
    }
    g = torch.Generator().manual_seed(SEED)
    batches = {"random": torch.rand(5, *shape, generator=g)}
    out.mkdir(parents=True, exist_ok=True)
    facts: dict[str, Any] = {}
    for key, (wrapper, ref) in graphs.items():
        path = out / f"{key}.onnx"
        export_onnx(wrapper, batches["random"][:2], path)
        proto = check_graph(path)
        rows = parity_check(ref, path, batches)  # raises ParityError past tolerance
        facts[key] = {
            "file": path.name,
            "nodes": len(proto.graph.node),
            "parity_logits_max_abs": max(r.logits_max_abs for r in rows),
            "parity_p_adv_max_abs": max(r.p_adv_max_abs for r in rows),
        }
    info = {"arch": arch, "awnet": "awnet_" + arch, "weights": weights, "input_shape": shape,
            "graphs": facts}  # fmt: skip
    (out / "graphs.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.build_graphs", description=__doc__.splitlines()[0]
    )
    p.add_argument("--arch", required=True, help="a registered plain backbone, e.g. resnet18")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="used when it is awnet_ARCH")
    p.add_argument("--unfolded", action="store_true", help="also the unfolded AW-Net graph")
    a = p.parse_args(argv)
    from models import list_models

    if a.arch not in list_models() or a.arch.startswith("awnet_"):
        print(f"error: --arch {a.arch!r} is not a registered plain backbone", file=sys.stderr)
        return 2
    print(json.dumps(build(a.arch, a.out, a.checkpoint, a.unfolded)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
