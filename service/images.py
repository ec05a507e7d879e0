"""Turn uploaded images and pixel arrays into model input ``[C, H, W]`` float32 arrays.

Rules (also in docs/service.md):

* Formats: PNG, JPEG, WebP, BMP (first frame). Anything else: 415.
* Pixel count: ``width * height`` above ``AWNET_MAX_IMAGE_PIXELS`` is refused (413) from
  the header, before the image is decoded (decompression bombs).
* Channels: converted to the model's channel count with Pillow (1 = luma ``L``, 3 = ``RGB``);
  transparent pixels are composited on black first; 16-bit greyscale is scaled from 65535.
* Size: an image of exactly the model's H x W is used as is. Otherwise, if its aspect ratio
  (width / height) is within ``AWNET_RESIZE_TOLERANCE`` (default 10 %) of the model's, it is
  resized to H x W with bilinear filtering; else it is refused (400) - crop or pad it first.
* Values: 8-bit pixels are divided by 255, giving [0, 1]. No inversion, no normalisation
  (the graph does its own); MNIST models expect a light digit on a dark background.

Pixel arrays (JSON) are never resized: they must have the exact shape, be finite, and lie in
the manifest's ``input.range`` (normally [0, 1]); see ``check_pixels``.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import BadInput, TooLarge, UnsupportedMediaType

FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
CONTENT_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
}
RANGE_SLACK = 1e-6  # float rounding: values this close outside the range are clipped


def decode_image(
    data: bytes,
    input_shape: tuple[int, int, int],
    *,
    max_pixels: int,
    resize_tolerance: float,
) -> np.ndarray:
    """Bytes of an image file -> float32 ``[C, H, W]`` in [0, 1]."""
    c, h, w = input_shape
    if c not in (1, 3):
        raise BadInput(
            f"this model takes {c} channels; images can only be sent to 1- or 3-channel "
            "models, send a tensor instead"
        )
    if not data:
        raise BadInput("empty image")
    try:
        with warnings.catch_warnings():
            # Our own limit (below) decides; Pillow still refuses beyond 2x its own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"image refused: {exc}") from None
    except UnidentifiedImageError:
        raise UnsupportedMediaType(
            "not a supported image: send PNG, JPEG, WebP or BMP"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on garbage
        raise BadInput(f"cannot read the image: {exc}") from None

    width, height = img.size
    if width * height > max_pixels:
        raise TooLarge(
            f"image is {width}x{height} = {width * height} pixels, above the limit of "
            f"{max_pixels} (AWNET_MAX_IMAGE_PIXELS)"
        )
    if width < 1 or height < 1:
        raise BadInput(f"image has an empty size {width}x{height}")

    try:
        img.load()
        img = _to_channels(img, c)
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"cannot decode the {img.format} image (corrupt or truncated): {exc}") from None

    if (width, height) != (w, h):
        aspect, model_aspect = width / height, w / h
        if abs(aspect / model_aspect - 1.0) > resize_tolerance:
            raise BadInput(
                f"image is {width}x{height} (aspect ratio {aspect:.2f}) but the model takes "
                f"{w}x{h} (aspect ratio {model_aspect:.2f}); images are resized only when "
                f"the aspect ratios differ by at most {resize_tolerance:.0%}: crop or pad it first"
            )
        img = img.resize((w, h), Image.Resampling.BILINEAR)

    arr = np.asarray(img, dtype=np.float32)
    if img.mode != "F":
        arr = arr / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    arr = arr[None, :, :] if arr.ndim == 2 else np.transpose(arr, (2, 0, 1))
    return np.ascontiguousarray(arr, dtype=np.float32)


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def _to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert to ``L`` / ``RGB`` (8-bit), or ``F`` in [0, 1] for 16-bit greyscale."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    if img.mode in SIXTEEN_BIT:
        grey = np.asarray(img, dtype=np.float32) / 65535.0
        if channels == 1:
            return Image.fromarray(np.clip(grey, 0.0, 1.0))
        img = Image.fromarray(np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8))
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("L" if channels == 1 else "RGB")


def json_numbers(data: Any, what: str) -> np.ndarray:
    """A JSON (nested) list of numbers -> float64 array of the same shape; 400 otherwise.

    Strict like the API schema: booleans, strings and nulls are not numbers (numpy would turn
    ``true`` into 1.0 and ``"0.5"`` into 0.5); ragged lists, nesting deeper than numpy's 64
    dimensions and integers beyond the float range are refused too. Kept in float64 so that
    range checks are exact (``check_pixels``); the model gets float32.
    """
    def bad(detail: str) -> BadInput:
        return BadInput(f"{what}: must be a (nested) list of numbers with a regular shape ({detail})")

    if not isinstance(data, list):
        raise bad(f"got {type(data).__name__}")
    pending = [data]
    while pending:
        items = pending.pop()
        kinds = set(map(type, items))
        if kinds <= _NUMBER_TYPES:
            continue
        if kinds == {list}:
            pending.extend(items)
            continue
        other = sorted(k.__name__ for k in kinds - _NUMBER_TYPES - {list})
        raise bad(f"found {', '.join(other) or 'numbers mixed with lists'}")
    try:
        return np.asarray(data, dtype=np.float64)
    except OverflowError:
        raise bad("an integer is too large for a float") from None
    except (TypeError, ValueError) as exc:
        raise bad(str(exc)) from None


_NUMBER_TYPES = {int, float}


def pixels_to_array(data: Any, what: str) -> np.ndarray:
    """A JSON (nested) list of numbers -> float32 array; 400 when it is not one."""
    return json_numbers(data, what).astype(np.float32)


def check_pixels(arr: np.ndarray, value_range: tuple[float, float], what: str) -> np.ndarray:
    """Pixel policy: finite values in ``value_range``, else 400.

    float32 input (binary tensors, decoded images) may lie ``RANGE_SLACK`` outside the range
    (float rounding) and is clipped; float64 input (JSON numbers, as the schema states the
    range) must lie inside it exactly. Returns float32.
    """
    if arr.size == 0:
        return arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum()) - n_nan
        raise BadInput(
            f"{what} contains {n_nan} NaN (or null) and {n_inf} infinite value(s); pixels must be "
            f"finite numbers in [{value_range[0]:g}, {value_range[1]:g}]"
        )
    lo, hi = value_range
    slack = 0.0 if arr.dtype == np.float64 else RANGE_SLACK
    vmin, vmax = float(arr.min()), float(arr.max())
    if vmin < lo - slack or vmax > hi + slack:
        raise BadInput(
            f"{what} has values outside [{lo:g}, {hi:g}] (min {vmin:g}, max {vmax:g}); "
            f"scale pixels to [{lo:g}, {hi:g}] first (e.g. divide 8-bit values by 255)"
        )
    if vmin < lo or vmax > hi:
        arr = np.clip(arr, lo, hi)
    return arr.astype(np.float32, copy=False)
