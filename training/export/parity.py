"""ONNX Runtime against PyTorch, on clean and PGD inputs, in every routing mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from artifact_contract import INPUT_IMAGE, INPUT_MIX

MODES = {"router": -1.0, "forced_clean": 0.0, "forced_adv": 1.0}


@dataclass
class ParityRow:
    inputs: str
    mode: str
    logits_max_abs: float
    p_adv_max_abs: float
    mix_max_abs: float
    argmax_agree: float

    def ok(self, atol_logits: float, atol_p: float) -> bool:
        return self.logits_max_abs <= atol_logits and self.p_adv_max_abs <= atol_p and self.mix_max_abs <= atol_p


class ParityError(AssertionError):
    pass


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def parity_check(
    wrapper: nn.Module,
    onnx_path: Path,
    batches: dict[str, torch.Tensor],
    atol_logits: float = 1e-3,
    atol_p: float = 1e-4,
) -> list[ParityRow]:
    """Compare every (inputs, mode) pair, plus one batch of mixed per-sample overrides;
    raise :class:`ParityError` with the table when any difference exceeds tolerance."""
    sess = ort_session(onnx_path)
    rows: list[ParityRow] = []
    wrapper.eval()
    for name, x in batches.items():
        n = x.shape[0]
        modes = {k: torch.full((n,), v) for k, v in MODES.items()}
        modes["per_sample"] = torch.tensor([-1.0, 0.0, 1.0, 0.25, 0.75])[torch.arange(n) % 5]
        for mode, override in modes.items():
            with torch.no_grad():
                ref = [t.numpy() for t in wrapper(x, override)]
            got = sess.run(None, {INPUT_IMAGE: x.numpy(), INPUT_MIX: override.numpy()})
            rows.append(
                ParityRow(
                    inputs=name,
                    mode=mode,
                    logits_max_abs=float(np.abs(got[0] - ref[0]).max()),
                    p_adv_max_abs=float(np.abs(got[1] - ref[1]).max()),
                    mix_max_abs=float(np.abs(got[2] - ref[2]).max()),
                    argmax_agree=float((got[0].argmax(1) == ref[0].argmax(1)).mean()),
                )
            )
    bad = [r for r in rows if not r.ok(atol_logits, atol_p)]
    if bad:
        raise ParityError("ONNX Runtime and PyTorch disagree:\n" + format_table(rows))
    return rows


def format_table(rows: list[ParityRow]) -> str:
    head = f"{'inputs':<8} {'mode':<13} {'logits max|d|':>14} {'p_adv max|d|':>13} {'mix max|d|':>11} {'argmax agree':>13}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.inputs:<8} {r.mode:<13} {r.logits_max_abs:>14.3e} {r.p_adv_max_abs:>13.3e} {r.mix_max_abs:>11.3e} {r.argmax_agree:>13.3f}"
        )
    return "\n".join(lines)
