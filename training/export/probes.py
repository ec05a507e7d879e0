"""The probe set an export writes beside its graph (``artifact_contract.probes``).

``clean``: the first N test images with their labels. ``adversarial``: the same number of
test images attacked with the strongest adaptive attack the exporter runs anyway, the
router-evasion PGD (cross-entropy + log p_clean: it tries to fool the classifier *and* stay
unflagged); static models get plain PGD. For both sets the file records the exporter's own
(PyTorch) logits and router scores in router mode, and the manifest the rates they give.
Before anything is written, ONNX Runtime runs the probes through the exported graph and
must pass the same check the service applies at load (``check_outputs``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artifact_contract import INPUT_IMAGE, INPUT_MIX, ProbeSet, check_outputs, write_probes
from artifact_contract.probes import SETS


def _reference(wrapper: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    wrapper.eval()
    with torch.no_grad():
        logits, p_adv, _ = wrapper(x, torch.full((len(x),), -1.0))
    return {"logits": logits.numpy().astype(np.float32), "p_adv": p_adv.numpy().astype(np.float32)}


def write_probe_set(
    folder: Path,
    wrapper: torch.nn.Module,
    onnx_path: Path,
    clean: tuple[torch.Tensor, torch.Tensor],
    adversarial: tuple[torch.Tensor, torch.Tensor],
    *,
    threshold: float | None,
    attack: str,
    source: str,
    tol: dict[str, float] | None = None,
    session_factory: Callable[[Path], Any] | None = None,
) -> dict[str, Any]:
    """Write ``probes.npz`` into ``folder`` (beside ``onnx_path``); return the manifest block.
    Raises ``ValueError`` when ONNX Runtime fails the probes on the exported graph."""
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for s, (x, y) in zip(SETS, (clean, adversarial), strict=True):
        x = x.detach().float().contiguous()
        arrays[s] = {"images": x.numpy(), "labels": y.numpy().astype(np.int64), **_reference(wrapper, x)}
    block = write_probes(folder, arrays, threshold=threshold, tol=tol,
                         clean={"source": source}, adversarial={"attack": attack})  # fmt: skip
    if session_factory is None:
        from training.export.parity import ort_session as session_factory
    sess = session_factory(onnx_path)
    outputs = {}
    for s in SETS:
        x = arrays[s]["images"]
        logits, p_adv, _ = sess.run(None, {INPUT_IMAGE: x, INPUT_MIX: np.full((len(x),), -1.0, np.float32)})
        outputs[s] = {"logits": logits, "p_adv": p_adv}
    report = check_outputs(ProbeSet(block=block, arrays=arrays), outputs)
    if not report.passed:
        raise ValueError(f"the exported graph fails its own probes: {report.summary()}")
    return block
