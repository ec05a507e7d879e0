"""The artifact contract between ``training/`` (which writes model versions) and ``service/``
(which serves them): the single owner of every fact both sides must agree on.

Modules import downward only (tests/test_no_import_cycles.py follows imports in functions too):

* ``names``: the ONNX tensor names, the repository's file names and name/version patterns,
  the schema versions, the model kinds (``MODEL_KINDS``) and the one SHA-256 helper.
* ``errors``: ``ArtifactError``, which every module below raises.
* ``fields``: the checks of single fields (numbers, required keys, a file named by sha256).
* ``blocks``: the (de)serialisation every typed block shares.
* ``policy``: the version policy (all / latest N / specific), setting and manifest spellings.
* ``probes``: the probe set beside a version (``probes.npz``) and the check of outputs on it.
* ``robustness``: the manifest's ``evaluation.robustness`` block (what the version withstands).
* ``manifest``: ``manifest.json`` as a typed object (``Manifest``) with ``load``,
  ``validate``, ``to_dict`` and ``write``, and the check of a version folder against it.

Standard library and numpy only: the service imports this package, and it must stay
free of torch, ``training`` and ``models`` (tests/service/test_service_imports.py).
docs/contracts.md describes the contract in prose; this package is what enforces it.
"""

from artifact_contract.errors import ArtifactError
from artifact_contract.manifest import (
    InputSpec,
    Manifest,
    OnnxSpec,
    io_shapes,
    read_json,
)
from artifact_contract.names import (
    INPUT_IMAGE,
    INPUT_MIX,
    MANIFEST_FILE,
    MODEL_INPUTS,
    MODEL_KINDS,
    MODEL_OUTPUTS,
    NAME_RE,
    ONNX_FILE,
    OUTPUT_LOGITS,
    OUTPUT_MIX,
    OUTPUT_P_ADV,
    SCHEMA_VERSION,
    SHA256_RE,
    SUPPORTED_SCHEMA_VERSIONS,
    VERSION_RE,
    sha256_bytes,
    sha256_file,
)
from artifact_contract.policy import VersionPolicy
from artifact_contract.probes import (
    PROBES_FILE,
    ProbeReport,
    ProbeSet,
    check_outputs,
    load_probes,
    write_probes,
)
from artifact_contract.robustness import ROBUSTNESS_KEY, Robustness, robustness_of

__all__ = [
    "INPUT_IMAGE", "INPUT_MIX", "MANIFEST_FILE", "MODEL_INPUTS", "MODEL_KINDS", "MODEL_OUTPUTS", "NAME_RE",
    "ONNX_FILE", "OUTPUT_LOGITS", "OUTPUT_MIX", "OUTPUT_P_ADV", "SCHEMA_VERSION", "SHA256_RE",
    "SUPPORTED_SCHEMA_VERSIONS", "VERSION_RE", "ArtifactError", "InputSpec", "Manifest", "OnnxSpec",
    "io_shapes", "read_json", "sha256_bytes", "sha256_file",
    "PROBES_FILE", "ProbeReport", "ProbeSet", "VersionPolicy", "check_outputs", "load_probes",
    "write_probes", "ROBUSTNESS_KEY", "Robustness", "robustness_of",
]  # fmt: skip
