"""Checkpoints for the torch-side tests: a model saved the way ``training`` saves it.

``fake_checkpoint(folder, "awnet_smallcnn")`` is a fresh model whose BatchNorm statistics and
signal heads are perturbed (so the two AW-Net branches and the router's signals differ: parity
and export tests then check something); ``write_checkpoint`` saves any model.
torch is imported inside the functions: importing ``tests.support`` stays torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def perturb(model: Any, seed: int = 0) -> None:
    """Make a fresh model's two branches and signals differ (``models.perturb``)."""
    from models.perturb import perturb_branches

    perturb_branches(model, seed)


def write_checkpoint(
    path: Path,
    model: Any,
    name: str,
    config: dict[str, Any],
    model_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` (created as ``create_model(name, **model_kwargs)``) with its training
    ``config`` in the checkpoint format of ``training.checkpoint``."""
    from training.checkpoint import save_checkpoint

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, {"config": config, "model_name": name, "model_kwargs": model_kwargs or {},
                           "input_config": model.input_config.to_dict(), "model": model.state_dict()})  # fmt: skip
    return path


def fake_checkpoint(folder: Path, name: str, **kw: Any) -> Path:
    """``<folder>/<name>.pt``: a fresh, perturbed ``create_model(name, **kw)`` on the digits'
    input configuration, with a resolved config of its method (awnet_* -> teacher-free awnet)."""
    from models import create_model
    from models.config import digits_config
    from training.config import TrainConfig

    method = "awnet" if name.startswith("awnet_") else "standard"
    cfg = TrainConfig(method=method, model=name, teacher_free=method == "awnet").resolve(0.3, False)
    model = create_model(name, input_config=digits_config(), **kw)
    perturb(model)
    return write_checkpoint(Path(folder) / f"{name}.pt", model, name, cfg.to_dict(), kw)


def quick_export(checkpoint: Path, out: Path, **overrides: Any) -> Any:
    """``export_checkpoint`` with the tests' small budgets (no evaluation, a few parity and
    calibration samples, silent); keyword arguments override them. Returns its result."""
    from training.export.exporter import export_checkpoint

    kwargs: dict[str, Any] = {"skip_eval": True, "parity_samples": 8, "eval_max_samples": 32,
                              "eval_steps": 2, "log": lambda *a: None}  # fmt: skip
    return export_checkpoint(checkpoint, out, **{**kwargs, **overrides})
