"""Names, patterns and the hash every artifact reader and writer shares (docs/contracts.md)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

# ONNX graph: inputs (exactly these) and outputs (at least these), in this order.
INPUT_IMAGE = "image"  # float32 [N, C, H, W], pixels in the manifest's input.range
INPUT_MIX = "mix_override"  # float32 [N]: a value in [0, 1] forces that mix, negative = router
OUTPUT_LOGITS = "logits"  # float32 [N, K], K = len(class_names)
OUTPUT_P_ADV = "p_adv"  # float32 [N], the router's adversarial probability
OUTPUT_MIX = "mix"  # float32 [N], the mix actually used
MODEL_INPUTS = (INPUT_IMAGE, INPUT_MIX)
MODEL_OUTPUTS = (OUTPUT_LOGITS, OUTPUT_P_ADV, OUTPUT_MIX)

# Model repository: <repository>/<name>/<version>/{manifest.json, model.onnx}
MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"  # what the exporter writes; the manifest's onnx.file names it
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
VERSION_RE = re.compile(r"^[1-9][0-9]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

SCHEMA_VERSION = 1  # what writers write
SUPPORTED_SCHEMA_VERSIONS = (1,)  # what readers accept
MODEL_KINDS = ("awnet", "static")  # the manifest's kind: with a router, or the plain backbone


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes in memory (test fixtures that build a graph without a file)."""
    return hashlib.sha256(data).hexdigest()
