"""numpy 1.x is supported as pyproject declares (issue 38, item 6): ``training.checkpoint`` once
read ``np._core.multiarray`` at import, which numpy 1.x lacks, so ``python -m training train
--help`` died with an AttributeError; a legacy checkpoint (numpy RNG state pickled) loads
whichever numpy major wrote it."""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.paths import ROOT
from training.checkpoint import load_checkpoint

MINIMAL = {"model": {}, "model_name": "smallcnn", "input_config": {}, "config": {}}
#: the module path of numpy's array reconstruction in each major's pickles
NAMES = (b"numpy._core.multiarray\n_reconstruct\n", b"numpy.core.multiarray\n_reconstruct\n")


def _legacy_checkpoint(path: Path) -> None:
    """A checkpoint from before issue 10: numpy's RNG state as numpy objects, not tensors."""
    torch.save({**MINIMAL, "rng": {"numpy": np.random.get_state(), "python": random.getstate()}}, path)


def _rename_global(path: Path) -> None:
    """Rewrite the pickle as the other numpy major would have written it (protocol-2 GLOBAL
    opcodes are text, so the swap is exact)."""
    src = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                mine = next(n for n in NAMES if n in data)
                data = data.replace(mine, NAMES[1 - NAMES.index(mine)])
            dst.writestr(info.filename, data)
    path.write_bytes(out.getvalue())


def test_a_legacy_checkpoint_written_by_the_other_numpy_major_loads(tmp_path: Path) -> None:
    path = tmp_path / "legacy-other-major.pt"
    saved = np.random.get_state()
    _legacy_checkpoint(path)
    _rename_global(path)
    state = load_checkpoint(path)["rng"]["numpy"]
    assert state[0] == saved[0] and np.array_equal(state[1], saved[1])


def _declared_floor() -> str:
    """The numpy floor pyproject's dependencies declare (one floor, repeated in the serve extra)."""
    floors = set(re.findall(r'"numpy>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text()))
    assert len(floors) == 1, f"pyproject declares several numpy floors: {floors}"
    return floors.pop()


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["floor", "numpy<2"], ids=["declared-floor", "latest-1.x"])
def test_the_training_cli_and_checkpoints_work_with_numpy_1(spec: str, tmp_path: Path) -> None:
    """A real numpy 1.x (the declared floor's last patch release, and the newest 1.x, which
    PyTriton's numpy<2 pin brings) in front of the venv's: the CLI starts and a legacy
    checkpoint written by this numpy 2 loads."""
    spec = f"numpy~={_declared_floor()}.0" if spec == "floor" else spec
    target = tmp_path / "numpy1"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary", ":all:",
                          "--target", str(target), spec], capture_output=True, text=True, timeout=600)  # fmt: skip
    if pip.returncode != 0:
        pytest.skip(f"cannot install {spec}: {pip.stderr[-500:]}")
    legacy = tmp_path / "legacy.pt"
    _legacy_checkpoint(legacy)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    script = ("import sys, numpy; from training.checkpoint import load_checkpoint; "
              "assert numpy.__version__.startswith('1.'), numpy.__version__; "
              "print(numpy.__version__, load_checkpoint(sys.argv[1])['rng']['numpy'][0])")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, str(legacy)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0 and "MT19937" in done.stdout, done.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "training", "train", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert cli.returncode == 0 and "--method" in cli.stdout, cli.stderr[-3000:]
