"""Test images: smooth (low p_adv under the fake model's router) and noisy (high p_adv),
digit-like strokes, real embedded digits, and encoding to PNG/JPEG/..."""

from __future__ import annotations

import io

import numpy as np

from tests.support.paths import EMBEDDED_DIGITS


def smooth_image(shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0) -> np.ndarray:
    """A soft blob (low roughness: low p_adv), float32 [C, H, W] in [0, 1]."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.25 * w)) ** 2))
    return np.repeat(blob[None], c, axis=0).astype(np.float32)


def noisy_image(shape: tuple[int, int, int] = (1, 28, 28), seed: int = 0) -> np.ndarray:
    """Uniform noise (high roughness: high p_adv), float32 [C, H, W] in [0, 1]."""
    return np.random.default_rng(seed).uniform(0, 1, size=shape).astype(np.float32)


def to_png(pixels: np.ndarray, fmt: str = "PNG", size: tuple[int, int] | None = None) -> bytes:
    """float [C, H, W] in [0, 1] -> encoded image bytes (optionally resized to (w, h))."""
    from PIL import Image

    arr = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    if size is not None:
        img = img.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def synthetic_digits(n: int, seed: int = 0) -> np.ndarray:
    """Smooth digit-like strokes (rings and bars, Gaussian profile), float32 [n,1,28,28] in [0,1].

    The fake model's router gives them p_adv < 0.025 (and noised() versions p_adv > 0.5).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    out = np.zeros((n, 1, 28, 28), np.float32)
    for i in range(n):
        cy, cx = 14 + rng.uniform(-2, 2), 14 + rng.uniform(-2, 2)
        if i % 2 == 0:  # a "0": ring
            ry, rx = rng.uniform(7, 9), rng.uniform(4, 6)
            d = np.abs(np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) - 1.0) * min(ry, rx)
        else:  # a "1": slanted bar
            slope = rng.uniform(-0.3, 0.3)
            d = np.abs((xx - cx) - slope * (yy - cy)) + np.maximum(np.abs(yy - cy) - 9, 0)
        out[i, 0] = np.exp(-(d**2) / (2 * 1.3**2))
    return np.clip(out, 0, 1)


def mnist_digits(n: int, split: str | None = None) -> np.ndarray | None:
    """n real MNIST digits from the embedded data set, if it is there: its first n, or with
    ``split`` ("train", "val", "test") the first n of that split (the set's ``<split>_idx``)."""
    if not EMBEDDED_DIGITS.is_file():
        return None
    with np.load(EMBEDDED_DIGITS) as data:
        if "images" not in data:
            return None
        images = data["images"] if split is None else data["images"][data[f"{split}_idx"]]
        images = images[:n].astype(np.float32) / 255.0
    return images.reshape(-1, 1, 28, 28)


def noised(images: np.ndarray, eps: float = 0.3, seed: int = 1) -> np.ndarray:
    """'Adversarial' inputs: +-eps sign noise on every pixel (L-inf ball of the attack, PGD-like)."""
    rng = np.random.default_rng(seed)
    return np.clip(images + eps * rng.choice([-1.0, 1.0], size=images.shape), 0, 1).astype(
        np.float32
    )
