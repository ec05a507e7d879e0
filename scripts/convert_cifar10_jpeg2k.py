"""Write training/data/embedded/cifar10-jpeg2k.npz from cifar10-jpeg.tar.gz (one-off; see
training/data/embedded/README.md). The JPEG files are stored byte for byte, so the embedded
images decode to exactly the archive's pixels.

    .venv/bin/python scripts/convert_cifar10_jpeg2k.py ../shared/datasets/cifar10-jpeg.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data.cifar10_jpeg import CIFAR10_JPEG, CIFAR10_JPEG2K_PATH  # noqa: E402
from training.data.jpeg_tree import _check_archive, _read_and_check  # noqa: E402

PER_CLASS = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive", type=Path)
    ap.add_argument("--out", type=Path, default=CIFAR10_JPEG2K_PATH)
    a = ap.parse_args()
    _check_archive(CIFAR10_JPEG, a.archive)
    files = _read_and_check(CIFAR10_JPEG, a.archive)
    names: list[str] = []
    for split in ("train", "test"):  # class-interleaved, like the decoded archive
        per_class = [sorted(r for r in files if r.startswith(f"{split}/{c}/"))[:PER_CLASS]
                     for c in CIFAR10_JPEG.classes]  # fmt: skip
        names += [per_class[k][i] for i in range(PER_CLASS) for k in range(len(per_class))]
    blobs = [files[n] for n in names]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    arrays = {
        "jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": offsets,
        "names": np.array(names),
        "labels": np.array([CIFAR10_JPEG.classes.index(n.split("/")[1]) for n in names], np.uint8),
        "splits": np.array([n.split("/")[0] for n in names]),
        "class_names": np.array(CIFAR10_JPEG.classes),
        "source_sha256": np.array(CIFAR10_JPEG.archive_sha256),
    }
    # Stored (JPEG does not deflate) with fixed timestamps: the same bytes on every run.
    with zipfile.ZipFile(a.out, "w", zipfile.ZIP_STORED) as z:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    data = a.out.read_bytes()
    print(f"{a.out}: {len(names)} images, {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
