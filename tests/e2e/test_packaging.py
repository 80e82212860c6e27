"""A non-editable install carries the suites: `aifbench run smoke` works by name from the wheel."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_ships_suites_and_runs_smoke_by_name(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("aifbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("aifbench/suites/")}
    assert {p.name for p in (REPO / "benchmarks").glob("*.toml")} <= shipped
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site))  # the wheel's copy shadows the checkout
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = "import aifbench.config as c; print(c.data_dir('suites')); print(c.find_suite('smoke'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, check=True)
    assert str(site) in out.stdout and str(REPO / "benchmarks") not in out.stdout
    proc = subprocess.run([sys.executable, "-m", "aifbench", "run", "smoke", "--only", "gemm", "--results", "r"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert any((work / "r").iterdir())
