"""Shared test support: one place for the fixtures and helpers of every test folder.

- ``paths``: the project root, the shipped model/checkpoint, the deployment files.
- ``fake_model``: a contract-conforming fake ONNX model (onnx.helper, no torch) and its
  manifest through ``artifact_contract.Manifest`` (``write_model_version``), slow variants.
- ``images``: smooth/noisy test images, digit-like strokes, embedded digits, PNG encoding.
- ``checkpoints``: torch checkpoints the way ``training`` saves them (``fake_checkpoint``).
- ``servers``: the service as a ``TestClient`` (``app_client``), real uvicorn in a thread
  (``start_server``) or ``python -m service`` (``start_process``); ``free_port``, ``wait_for``.
- ``v2client``: KServe v2 requests and answers as numpy (``post_tensors``, ``infer_json``),
  ``/metrics`` (``scrape``, ``metric``).
- ``batching``: the batcher's unit-test pieces: a fake model ``Runner``, ``req``, a started
  ``batcher`` (its delay a parameter).
- ``processes``: command-line tools, commands and background processes (``tool``, ``run``,
  ``Process``, ``wait_until``).
- ``monitoring``: docs/contracts.md metrics, Prometheus rules/config, Grafana, PromQL.
- ``fixtures``: the pytest fixtures, registered for every folder by tests/conftest.py.

Modules import torch, onnx or the service only where they need them.
"""
