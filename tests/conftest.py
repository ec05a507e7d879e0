"""Shared fixtures for every test folder: CPU-only, deterministic, quiet.

The fixtures live in tests/support/fixtures.py (helpers in tests/support/); test modules
import helpers from ``tests.support``, never from another folder's conftest.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

pytest_plugins = ["tests.support.fixtures"]
