"""Fixtures of the deployment tests: a live service (`python -m service`) on a local port.

Two model repositories are served, one per parameter:
- "fixture": the shared fake model (tests.support.fake_model), whose router is deterministic:
  smooth images (synthetic digits) -> p_adv < 0.025, sign-noised images -> p_adv > 0.5;
- "shipped": the repository the compose stack mounts, models/repository (awnet-mnist/3),
  skipped while the shipped model is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import (
    SHIPPED_MODEL,
    SHIPPED_REPOSITORY,
    SHIPPED_VERSION,
    shipped_model_available,
)
from tests.support.servers import Server, start_process
from tests.support.v2client import infer_json, metrics_text


@dataclass
class LiveService:
    """A running `python -m service` serving one model version, as the deployment sees it."""

    server: Server
    model: str
    version: str
    kind: str  # "fixture" or "shipped"
    repository: Path

    @property
    def version_dir(self) -> Path:
        return self.repository / self.model / self.version

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return self.server.target

    def infer(
        self, images: np.ndarray, mix_override: np.ndarray | None = None
    ) -> tuple[int, object]:
        """A JSON v2 request: (status, parsed body)."""
        r = infer_json(self.server.url, self.model, images, mix_override)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def metrics_text(self) -> str:
        return metrics_text(self.server.url)


@pytest.fixture(scope="module", params=["fixture", "shipped"])
def live_service(request, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp(f"service-{request.param}")
    if request.param == "fixture":
        from tests.support.fake_model import FAKE_MODEL, write_model_version

        repo = tmp_path_factory.mktemp("model-repository")
        write_model_version(repo, FAKE_MODEL, "1")
        model = (FAKE_MODEL, "1")
    else:
        if not shipped_model_available():
            pytest.skip(
                f"shipped model {SHIPPED_REPOSITORY / SHIPPED_MODEL / SHIPPED_VERSION} "
                "not available yet"
            )
        repo, model = SHIPPED_REPOSITORY, (SHIPPED_MODEL, SHIPPED_VERSION)
    env = {"AWNET_PROVIDERS": "CPUExecutionProvider", "OMP_NUM_THREADS": "1"}
    with start_process(repo, env, log_path=log_dir / f"service-{request.param}.log") as server:
        yield LiveService(server, *model, kind=request.param, repository=Path(repo))
