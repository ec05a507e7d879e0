"""Accuracy and router figures over a dataset (used during training and by evaluation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from models import is_awnet, unwrap


def roc_auc(neg: torch.Tensor, pos: torch.Tensor) -> float:
    """ROC AUC that ``pos`` scores rank above ``neg`` scores (Mann-Whitney U, ties = 1/2)."""
    neg, pos = neg.flatten().double(), pos.flatten().double()
    if neg.numel() == 0 or pos.numel() == 0:
        return float("nan")
    scores = torch.cat([neg, pos])
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # average ranks over ties
    uniq, inverse = torch.unique(scores, return_inverse=True)
    sums = torch.zeros_like(uniq).index_add_(0, inverse, ranks)
    counts = torch.zeros_like(uniq).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    u = ranks[neg.numel():].sum() - pos.numel() * (pos.numel() + 1) / 2
    return float(u / (neg.numel() * pos.numel()))


def subset(dataset: Dataset, max_samples: int | None) -> Dataset:
    n = len(dataset)  # type: ignore[arg-type]
    if max_samples is None or max_samples <= 0 or max_samples >= n:
        return dataset
    return Subset(dataset, range(max_samples))


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if is_awnet(model):
        out = model.forward_all(x)
        return out.logits, out.p_adv
    return model(x), None


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    attack_factory: Callable[[nn.Module], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None,
    device: torch.device,
    batch_size: int = 256,
    max_samples: int | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Clean accuracy and, with an attack, accuracy on its examples (model in eval mode,
    AW-Net in router mode); for AW-Net also p_adv means and the router's ROC AUC."""
    bare = unwrap(model)
    was_training = bare.training
    bare.eval()
    loader = DataLoader(subset(dataset, max_samples), batch_size=batch_size, shuffle=False)
    attack = attack_factory(bare) if attack_factory is not None else None
    n = correct = correct_adv = 0
    p_clean: list[torch.Tensor] = []
    p_adv_list: list[torch.Tensor] = []
    it = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    try:
        for x, y in it:
            x, y = x.to(device), y.to(device)
            logits, pa = _predict(bare, x)
            correct += int((logits.argmax(1) == y).sum())
            n += y.numel()
            if pa is not None:
                p_clean.append(pa.cpu())
            if attack is not None:
                xa = attack(x, y)
                logits_a, pa_a = _predict(bare, xa)
                correct_adv += int((logits_a.argmax(1) == y).sum())
                if pa_a is not None:
                    p_adv_list.append(pa_a.cpu())
    finally:
        bare.train(was_training)
    res: dict[str, float] = {"n": float(n), "clean_acc": correct / max(n, 1)}
    if attack is not None:
        res["adv_acc"] = correct_adv / max(n, 1)
    if p_clean:
        pc = torch.cat(p_clean)
        res["p_adv_clean_mean"] = float(pc.mean())
        if p_adv_list:
            pa_all = torch.cat(p_adv_list)
            res["p_adv_adv_mean"] = float(pa_all.mean())
            res["router_auc"] = roc_auc(pc, pa_all)
    return res
