"""scripts/bench/bench_slurm_array.py: the suite it submits has one case per array task (the run
itself needs a Slurm cluster: see the script's docstring and results/reference/scale/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aifbench.config import load_suite

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "bench_slurm_array.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_slurm_array", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_suite_has_one_tiny_case_per_task(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(_module().suite_text(7))
    cases = load_suite(str(path)).cases
    assert len(cases) == 7 and {c.benchmark for c in cases} == {"membw"}
    assert sorted(c.params["size_bytes"] for c in cases) == [4096 * i for i in range(1, 8)]


def test_bad_counts_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        _module().main(["--tasks", "0", "--work", "/nonexistent", "--out", "/nonexistent/x.json"])
    assert exc.value.code == 2 and "--tasks and --parallelism must be >= 1" in capsys.readouterr().err
