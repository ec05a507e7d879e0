"""Through the HTTP API (TestClient around create_app), with the shipped model: clean test
digits get a low p_adv and PGD digits (crafted with the training code on the shipped weights)
a high one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.support.paths import SHIPPED_MODEL, SHIPPED_VERSION_DIR
from tests.support.servers import app_client
from tests.support.v2client import post_tensors


@pytest.fixture(scope="module")
def images(shipped_checkpoint) -> dict[str, np.ndarray]:
    from training.attacks import PGD
    from training.checkpoint import load_model
    from training.data import build_dataset

    model, ckpt = load_model(shipped_checkpoint)
    x, y = build_dataset("mnist5k", "test").tensors()
    x, y = x[:128], y[:128]
    eps = float(ckpt["config"]["eps"])
    torch.manual_seed(0)
    x_adv = PGD(model, eps=eps, steps=20, step_size=2.5 * eps / 20)(x, y)
    return {"clean": x.numpy(), "pgd": x_adv.numpy(), "labels": y.numpy()}


@pytest.mark.slow
def test_router_separates_clean_from_pgd_over_http(shipped_repository, images) -> None:
    manifest = json.loads((SHIPPED_VERSION_DIR / "manifest.json").read_text())
    thr = manifest["router"]["threshold"]
    with app_client(shipped_repository) as client:
        clean = post_tensors(client, SHIPPED_MODEL, images["clean"])
        pgd = post_tensors(client, SHIPPED_MODEL, images["pgd"])
    pc, pa = clean["p_adv"].ravel(), pgd["p_adv"].ravel()
    assert np.median(pc) < 0.2 and np.median(pa) > 0.8, (np.median(pc), np.median(pa))
    # verdicts at the manifest's threshold: few clean flagged, most PGD flagged
    assert (pc >= thr).mean() <= 0.05
    assert (pa >= thr).mean() >= 0.8
    # the routed model still classifies clean digits
    acc = (clean["logits"].argmax(1) == images["labels"]).mean()
    assert acc >= 0.9
