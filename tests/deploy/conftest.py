"""Fixtures of the deployment tests: a live service (`python -m service`) on a local port.

Two model repositories are served, one per parameter:
- "fixture": a tiny contract-conforming ONNX model written here, with a deterministic
  router (smooth images -> p_adv ~ 0, sign-noised images -> p_adv ~ 1);
- "shipped": the repository the compose stack mounts, models/repository (awnet-mnist/1).
Both skip while the service package does not exist yet; "shipped" also while the shipped
model is missing.
"""

from __future__ import annotations

import pytest

from .helpers import ROOT, SERVICE_MISSING_REASON, SHIPPED_MODEL, LiveService, write_fixture_model


def service_available() -> bool:
    return (ROOT / "service" / "__main__.py").is_file()


@pytest.fixture(scope="module", params=["fixture", "shipped"])
def live_service(request, tmp_path_factory):
    if not service_available():
        pytest.skip(SERVICE_MISSING_REASON)
    log_dir = tmp_path_factory.mktemp(f"service-{request.param}")
    if request.param == "fixture":
        pytest.importorskip("onnx", reason="onnx (train extra) is needed to write the fixture model")
        repo = tmp_path_factory.mktemp("model-repository")
        model = write_fixture_model(repo)
    else:
        repo = ROOT / "models" / "repository"
        name, version = SHIPPED_MODEL
        if not (repo / name / version / "manifest.json").is_file():
            pytest.skip(f"shipped model {repo / name / version} not available yet")
        model = SHIPPED_MODEL
    service = LiveService(repo, model, log_dir, kind=request.param)
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()
