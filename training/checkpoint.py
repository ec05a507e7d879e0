"""Checkpoints that resume exactly and rebuild their model without the training run."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import InputConfig, create_model, is_awnet, is_awnet_name
from training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def code_revision() -> str:
    """The git commit of the code (with '+dirty' for local changes), or 'unknown'."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of create_model that the configuration decides."""
    kw: dict[str, Any] = {}
    if cfg.depths:
        kw["depths"] = tuple(cfg.depths)
    if cfg.widths:
        kw["widths"] = tuple(cfg.widths)
    if cfg.model and is_awnet_name(cfg.model):
        kw.update(
            router_width=cfg.router_width, router_hidden=cfg.router_hidden, signal_activation=cfg.signal_activation
        )
    return kw


def build_model(name: str, input_config: InputConfig, kwargs: dict[str, Any]) -> nn.Module:
    return create_model(name, input_config=input_config, **kwargs)


#: numpy's array reconstruction, taken from an array's own pickle recipe rather than a module path:
#: numpy 2 keeps it in ``numpy._core.multiarray``, numpy 1.x in ``numpy.core.multiarray`` (where
#: ``np._core`` is missing or empty, so the module path broke the import there).
_RECONSTRUCT = np.empty(0).__reduce__()[0]

#: What checkpoints written before RNG states were stored as tensors need beside tensors and
#: plain types; ``weights_only=True`` refuses every other global. ``_reconstruct`` is listed under
#: both numpy majors' names, so such a file loads whichever numpy wrote it.
_LEGACY_SAFE_GLOBALS = [
    (_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
    (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]


def rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors and plain types so the checkpoint loads with ``weights_only``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write atomically (temp file then rename) so a crash never leaves half a checkpoint."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with torch.serialization.safe_globals(_LEGACY_SAFE_GLOBALS):  # no arbitrary code from a checkpoint file
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    for key in ("model", "model_name", "input_config", "config"):
        if key not in ckpt:
            raise ValueError(f"{path} is not an AW-Net Serve checkpoint (missing {key!r})")
    return ckpt


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the checkpoint's model, load its weights, put it in eval mode."""
    ckpt = load_checkpoint(path, map_location=device)
    model = build_model(ckpt["model_name"], InputConfig.from_dict(ckpt["input_config"]), ckpt.get("model_kwargs", {}))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, ckpt


def slim_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Weights, configuration and figures only (no optimizer or RNG): small enough to ship,
    loadable by :func:`load_model`, not resumable."""
    ckpt = load_checkpoint(src)
    keep = ("format", "config", "model_name", "model_kwargs", "input_config", "model", "metrics", "epoch",
            "dataset", "code_revision")  # fmt: skip
    slim = {k: ckpt[k] for k in keep if k in ckpt}
    slim["slim"] = True
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, slim)
    return dst


def warm_start_awnet(awnet: nn.Module, path: str | os.PathLike[str]) -> int:
    """Copy a static checkpoint of the same backbone into an AW-Net: convs and head as
    they are, each BN into both BNs of its MixBN. Returns the number of tensors copied."""
    src_model, ckpt = load_model(path)
    if is_awnet(src_model):
        raise ValueError(f"--init-from needs a static checkpoint, {path} holds an AW-Net")
    src = src_model.state_dict()
    dst = awnet.backbone.state_dict()
    copied = {}
    for key, value in dst.items():
        source_key = key.replace(".bn_clean.", ".").replace(".bn_adv.", ".")
        if source_key not in src or src[source_key].shape != value.shape:
            raise ValueError(
                f"--init-from {path}: its {ckpt['model_name']} does not match the AW-Net backbone at {key!r}"
            )
        copied[key] = src[source_key]
    awnet.backbone.load_state_dict(copied)
    return len(copied)
