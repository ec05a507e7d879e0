"""Export the checkpoint's backbone with plain layers (no router, clean BN): the plain baseline.

``python -m benchmarks.build_plain --checkpoint CKPT --out DIR [--check-against model.onnx]``,
run as a subprocess by ``benchmarks.baselines`` so that torch never loads in the timing
process. Writes ``model.onnx`` and a ``manifest.json`` built with ``artifact_contract``
(``Manifest``/``OnnxSpec``: validated like every manifest), after an ONNX-vs-PyTorch parity
check. The graph is for timing only: without the router's signals its predictions are
meaningless.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artifact_contract import INPUT_IMAGE, INPUT_MIX, InputSpec, Manifest, OnnxSpec

PARITY_ATOL = 1e-3


def plain_from_awnet(
    awnet: Any, plain_name: str, model_kwargs: dict[str, Any] | None = None
) -> Any:
    """The AW-Net's backbone as a plain model (plain convs, its clean BNs, no router), in
    eval mode: the same convolutions, so timing it against the AW-Net graph is fair."""
    from models.registry import ROUTER_KWARGS, create_model

    kwargs = {k: v for k, v in (model_kwargs or {}).items() if k not in ROUTER_KWARGS}
    plain = create_model(plain_name, input_config=awnet.input_config, **kwargs)
    state = {}
    for k, v in awnet.state_dict().items():
        if not k.startswith("backbone.") or ".bn_adv." in k:
            continue
        state[k[len("backbone.") :].replace(".bn_clean.", ".")] = v
    plain.load_state_dict(state, strict=True)
    return plain.eval()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.build_plain", description=__doc__.splitlines()[0]
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--check-against", default=None, help="AW-Net ONNX the checkpoint should match")
    a = p.parse_args(argv)
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    from models import is_awnet
    from models.registry import backbone_name
    from training.checkpoint import load_model
    from training.export.graph import StaticExportWrapper, check_graph, export_onnx, graph_shapes

    awnet, ckpt = load_model(a.checkpoint, "cpu")
    if not is_awnet(awnet):
        print(f"error: {a.checkpoint} is not an AW-Net checkpoint", file=sys.stderr)
        return 2
    ic = awnet.input_config
    plain_name = backbone_name(ckpt["model_name"])
    plain = plain_from_awnet(awnet, plain_name, ckpt.get("model_kwargs"))

    if a.check_against:  # warn when --model-dir was not exported from this checkpoint
        proto = onnx.load(a.check_against)
        inits = {i.name: i for i in proto.graph.initializer}
        # skip convs the exporter fused with their BN (it adds a "<name>_bias" initializer)
        sd = awnet.state_dict()
        common = [k for k in sd if "model." + k in inits and "model." + k + "_bias" not in inits]
        same = all(
            np.allclose(numpy_helper.to_array(inits["model." + k]), sd[k].numpy(), atol=1e-6)
            for k in common
        )
        if not common or not same:
            print(
                f"warning: {a.checkpoint} does not hold the weights of {a.check_against}; "
                "the baselines are built from the checkpoint"
            )

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    c, h, w = ic.shape
    export_onnx(StaticExportWrapper(plain), torch.rand(2, c, h, w), onnx_path)
    proto = check_graph(onnx_path)
    x = torch.rand(5, c, h, w)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {INPUT_IMAGE: x.numpy(), INPUT_MIX: np.full(5, -1.0, np.float32)})[0]
    with torch.no_grad():
        want = plain(x).numpy()
    diff = float(np.abs(got - want).max())
    if diff > PARITY_ATOL:
        print(
            f"error: plain backbone ONNX vs PyTorch max |d| {diff:.3g} > {PARITY_ATOL}",
            file=sys.stderr,
        )
        return 1
    Manifest(
        name=out.parent.name, version=out.name, arch=plain_name, kind="static", method="benchmark-only",
        class_names=list(ic.class_names),
        input=InputSpec(shape=list(ic.shape), range=list(ic.pixel_range), mean=list(ic.mean), std=list(ic.std)),
        router=None, parity={"plain_onnx_vs_torch_max_abs": diff},
        onnx=OnnxSpec.of_file(onnx_path, shapes=graph_shapes(proto)),
        extra={"note": ("benchmark-only timing baseline: the backbone of the AW-Net checkpoint with plain "
                        "convs and its clean BNs, router removed; not a trained model (without the "
                        "router's signals its predictions are meaningless)"),
               "source_checkpoint": str(a.checkpoint)},
    ).write(out)  # fmt: skip
    print(json.dumps({"out": str(out), "parity_max_abs": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
