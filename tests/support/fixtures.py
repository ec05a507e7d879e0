"""The shared pytest fixtures (registered for every test folder by tests/conftest.py).

onnx, onnxruntime and torch are imported inside the fixtures that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.paths import (
    SHIPPED_CHECKPOINT,
    SHIPPED_REPOSITORY,
    SHIPPED_VERSION_DIR,
    shipped_checkpoint_available,
    shipped_model_available,
)


@pytest.fixture(scope="session")
def fake_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one fake model version: awnet-fake/1 (1x28x28, 10 classes, t=0.5)."""
    from tests.support import fake_model

    repo = tmp_path_factory.mktemp("repo")
    fake_model.write_model_version(repo, fake_model.FAKE_MODEL, "1")
    return repo


@pytest.fixture(scope="session")
def repository(fake_repository: Path) -> Path:
    """The repository most service tests run against (a fixture so it can be swapped)."""
    return fake_repository


@pytest.fixture(scope="session")
def slow_layer_seconds() -> float:
    """Measured time of one slow-chain layer of the fake model (to size slow models)."""
    from tests.support import fake_model

    return fake_model.slow_layer_seconds()


@pytest.fixture(scope="session")
def shipped_repository() -> Path:
    """models/repository, skipping while the shipped model is not exported yet."""
    if not shipped_model_available():
        pytest.skip(
            f"the shipped model is not there yet ({SHIPPED_VERSION_DIR} has no "
            "manifest.json): these tests run once training exports it (make model)"
        )
    return SHIPPED_REPOSITORY


@pytest.fixture(scope="session")
def shipped_checkpoint() -> Path:
    """the shipped slim checkpoint (tests.support.paths.SHIPPED_CHECKPOINT), skipping while it is missing."""
    if not shipped_checkpoint_available():
        pytest.skip(f"{SHIPPED_CHECKPOINT} missing (make model)")
    return SHIPPED_CHECKPOINT


@pytest.fixture
def make_checkpoint(tmp_path: Path) -> Callable[..., Path]:
    """``make_checkpoint(name, **create_model_kwargs)``: a perturbed fresh model saved as a
    checkpoint in this test's tmp_path (see tests.support.checkpoints.fake_checkpoint)."""
    from tests.support.checkpoints import fake_checkpoint

    return lambda name, **kw: fake_checkpoint(tmp_path, name, **kw)
