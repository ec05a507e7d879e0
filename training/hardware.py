"""What this machine's CPU computes natively: the choice of training precision depends on it."""

from __future__ import annotations

import torch


def cpu_computes_bfloat16() -> bool:
    """True where oneDNN runs bfloat16 natively (AVX-512 BF16 or AMX), not by emulation.

    The working machines differ from one sitting to the next: one with AVX-512 BF16 trained
    a PGD-10 step of ``smallcnn`` at 103 images/s in bfloat16 against 47 in float32, one
    with AVX2 only at 2.1 against 32.5 (docs/results.md).
    """
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


if __name__ == "__main__":  # `python -m training.hardware`: the precision flags a CPU run should use
    print("--amp" if cpu_computes_bfloat16() else "--channels-last")
