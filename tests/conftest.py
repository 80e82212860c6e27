"""Shared fixtures. Tests run on CPU; nothing here needs a GPU or a network.

Two kinds of session (scripts/gpu-check.sh runs the second):
- the default: every test assumes a CPU, so GPUs are hidden from this process and its
  subprocesses (CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES set empty before
  torch is imported: device "auto" resolves to cpu and the runner samples the CPU, not NVML),
  even on a GPU machine; tests marked `gpu` skip with the reason;
- AIFBENCH_TEST_GPU=1: only the tests marked `gpu` run, with the GPUs visible (they skip with the
  reason where torch sees no CUDA GPU); the CPU tests skip, as they assume no GPU is visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU_SESSION = os.environ.get("AIFBENCH_TEST_GPU") == "1"
if not GPU_SESSION:
    for _var in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        os.environ[_var] = ""


def pytest_collection_modifyitems(config, items):
    """The gpu marker decides which session a test belongs to (see the module docstring)."""
    for item in items:
        gpu = item.get_closest_marker("gpu") is not None
        if gpu and not GPU_SESSION:
            item.add_marker(pytest.mark.skip(reason="needs a GPU: run with AIFBENCH_TEST_GPU=1 on a GPU machine "
                                                    "(scripts/gpu-check.sh)"))
        elif not gpu and GPU_SESSION:
            item.add_marker(pytest.mark.skip(reason="assumes a CPU: this session (AIFBENCH_TEST_GPU=1) runs only "
                                                    "the tests marked gpu"))


@pytest.fixture
def aifbench_cli(tmp_path):
    """Run the installed CLI in a subprocess from tmp_path: (args...) -> CompletedProcess."""

    def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        full_env = dict(os.environ, COLUMNS="200", **(env or {}))
        return subprocess.run([sys.executable, "-m", "aifbench", *args], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return run


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
