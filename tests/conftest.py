"""Shared fixtures. Tests run on CPU; nothing here needs a GPU or a network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
