"""``make_loader``: seeded, reproducible DataLoaders (optionally distributed)."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

__all__ = ["make_loader", "seed_worker"]


def seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from its torch seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    distributed: bool = False,
    drop_last: bool = False,
    *,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> DataLoader:
    """A DataLoader whose order is fixed by ``seed`` (a dedicated ``torch.Generator``).

    Iterating twice gives two different (but reproducible) epochs. With
    ``distributed=True`` a seeded :class:`DistributedSampler` shards the data
    (``num_replicas``/``rank`` default to the process group's); the caller must call
    ``loader.sampler.set_epoch(epoch)`` before each epoch.

    Augmentation randomness: with ``num_workers=0`` it comes from torch's global RNG
    (seed it with ``torch.manual_seed``); with workers, each worker's seed derives from
    this loader's generator, so it is fixed by ``seed``.
    """
    g = torch.Generator()
    g.manual_seed(seed)
    sampler = None
    if distributed:
        sampler = DistributedSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
            drop_last=drop_last,
        )  # fmt: skip
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=g,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
