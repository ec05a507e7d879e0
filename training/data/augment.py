"""Random crop (zero padding) and horizontal flip in plain torch (no torchvision).

Randomness comes from ``generator`` when given, else from torch's global RNG, so results
are deterministic under ``torch.manual_seed`` (or inside DataLoader workers, whose seeds
derive from the loader's generator).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["RandomCropFlip", "random_crop_flip"]


def random_crop_flip(
    x: torch.Tensor,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Randomly crop (after ``padding`` zero pixels each side) and maybe flip horizontally.

    ``x`` is one image ``[C, H, W]`` or a batch ``[N, C, H, W]``; each image of a batch gets
    its own offsets and flip. Shape, dtype and value range are preserved.
    """
    single = x.dim() == 3
    if single:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected [C, H, W] or [N, C, H, W], got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    dev = x.device
    if padding > 0:
        x = F.pad(x, (padding, padding, padding, padding))
        off = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    else:
        off = torch.zeros(2, n, dtype=torch.long)
    rows = off[0, :, None] + torch.arange(h)  # [N, H]
    cols = off[1, :, None] + torch.arange(w)  # [N, W]
    if flip:
        do_flip = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(do_flip[:, None], cols.flip(1), cols)
    rows, cols = rows.to(dev), cols.to(dev)
    out = x[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    return out[0] if single else out


class RandomCropFlip:
    """Callable wrapper around :func:`random_crop_flip` (per-sample dataset transform)."""

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        self.padding = padding
        self.flip = flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_crop_flip(x, self.padding, self.flip, generator)

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"
