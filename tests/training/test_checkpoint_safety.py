"""Checkpoints load with ``weights_only=True`` (issue 10): a file cannot run code when it is
loaded, new checkpoints carry no numpy globals, and the RNG state still round-trips."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

MINIMAL = {"model": {}, "model_name": "smallcnn", "input_config": {}, "config": {}}


class _Payload:
    """Unpickling this would run ``Path.touch`` on the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({**MINIMAL, "extra": _Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    assert not marker.exists()


def test_rng_state_round_trips_without_unsafe_globals(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    save_checkpoint(path, {**MINIMAL, "rng": rng_state()})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    expected = (np.random.rand(4), random.random(), torch.rand(3))
    set_rng_state(load_checkpoint(path)["rng"])
    got = (np.random.rand(4), random.random(), torch.rand(3))
    assert np.array_equal(expected[0], got[0]) and expected[1] == got[1] and torch.equal(expected[2], got[2])


def test_a_legacy_checkpoint_with_numpy_rng_state_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({**MINIMAL, "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}, path)
    expected = np.random.rand(4)
    set_rng_state(load_checkpoint(path)["rng"])
    assert np.array_equal(np.random.rand(4), expected)
