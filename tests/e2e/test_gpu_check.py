"""scripts/gpu-check.sh on a machine without a GPU: a clean refusal, and its --dry-run archive."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu-check.sh"


def _run(*args, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TIMEOUT_S="600")
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)


def test_without_a_gpu_it_refuses_in_one_line_and_writes_nothing(tmp_path):
    proc = _run(str(tmp_path / "out"), tmp_path=tmp_path)  # conftest hides any GPU from this session
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gpu-check: no CUDA GPU visible here (torch.cuda.is_available() is False); run it on a GPU machine, "
        "or use --dry-run"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dry_run_leaves_one_archive_with_the_plan_and_the_gpu_tests(tmp_path):
    proc = _run("--dry-run", str(tmp_path / "out"), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    archives = list((tmp_path / "out").iterdir())
    assert len(archives) == 1 and archives[0].name.endswith(".tar.gz")
    with tarfile.open(archives[0]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        assert {"environment.txt", "steps.log", "plan.log", "gpu-tests-collected.log"} <= names
        root = archives[0].name[: -len(".tar.gz")]
        plan = tar.extractfile(f"{root}/plan.log").read().decode()
        collected = tar.extractfile(f"{root}/gpu-tests-collected.log").read().decode()
    for needle in ("gemm", "fp8", "membw", "hostlink", "llm_train", "llm_infer"):
        assert needle in plan
    assert "test_gpu.py::test_gemm_sustained_burst_and_harness_interval" in collected
