"""``--amp`` on a CPU that emulates bfloat16 is refused (15x slower than float32 there,
docs/results.md), and ``python -m training.hardware`` names the flag a CPU run should use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.hardware import cpu_computes_bfloat16


def test_the_hardware_module_names_the_flag_for_this_cpu() -> None:
    out = subprocess.run([sys.executable, "-m", "training.hardware"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert out.stdout.strip() == ("--amp" if cpu_computes_bfloat16() else "--channels-last")


@pytest.mark.skipif(cpu_computes_bfloat16(), reason="this CPU computes bfloat16 natively: --amp is allowed")
def test_amp_is_refused_where_bfloat16_is_emulated(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "training", "train", "--dataset", "mnist5k", "--epochs", "1",
                        "--max-train-samples", "64", "--batch-size", "32", "--amp", "--device", "cpu", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode != 0
    assert "no native bfloat16" in r.stdout + r.stderr and "Traceback" not in r.stderr
