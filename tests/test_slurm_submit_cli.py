"""`aifbench submit`: --dry-run against golden sbatch scripts, bad input (exit 2, nothing written),
and the local (no scheduler) system through submitit's local executor. No Slurm needed."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[A-Za-z0-9_-]+-[0-9a-f]{6}")


def normalise(text: str, tmp_path: Path) -> str:
    text = text.replace(str(tmp_path), "<TMP>").replace(sys.executable, "<PYTHON>")
    return RUN_ID.sub("<RUN_ID>", text)


@pytest.mark.parametrize("golden,args", [
    ("sbatch_local_slurm_smoke.sh", ["local-slurm-smoke"]),
    ("sbatch_jupiter_array.sh", ["smoke", "--system", "jupiter-booster", "--only", "membw", "--mode", "array",
                                 "--cases-per-task", "2", "--array-parallelism", "1", "--nodes", "2",
                                 "--account", "jscbench", "--time", "20", "--job-name", "membw-sweep"]),
])
def test_dry_run_matches_golden(aifbench_cli, tmp_path, golden, args):
    proc = aifbench_cli("submit", *args, "--dry-run", "--results", "res", env={"AIFBENCH_ACCOUNT": ""})
    assert proc.returncode == 0, proc.stderr
    assert "nothing submitted" in proc.stderr
    script = normalise(proc.stdout, tmp_path)
    path = GOLDEN / golden
    if os.environ.get("AIFBENCH_UPDATE_GOLDEN"):
        path.write_text(script)
    assert script == path.read_text(), f"sbatch script changed; review and regenerate with AIFBENCH_UPDATE_GOLDEN=1"
    assert not (tmp_path / "res").exists(), "a dry run must write nothing"


@pytest.mark.parametrize("args,message", [
    (["smoke", "--system", "nosuch"], "unknown system 'nosuch'; allowed: alps-gh200, jupiter-booster"),
    (["smoke"], "--system is required; allowed: alps-gh200"),
    (["smoke", "--system", "local-slurm", "--partition", "gpu"], "unknown partition of local-slurm 'gpu'; allowed: debug"),
    (["smoke", "--system", "local-slurm", "--nodes", "3"], "allowed: 1..2"),
    (["smoke", "--system", "vega-gpu", "--account", "p1;reboot"], "--account 'p1;reboot' refused"),
    (["smoke", "--system", "vega-gpu", "--qos", "$(id)"], "qos '$(id)' refused"),
    (["smoke", "--system", "vega-gpu", "--results", "my results"], "--results 'my results' refused"),
    (["smoke", "--system", "vega-gpu", "--set", "gemm.nope=1"], "unknown parameter of gemm 'nope'"),
    (["nosuchsuite", "--system", "vega-gpu"], "unknown suite 'nosuchsuite'"),
    (["smoke", "--system", "vega-gpu", "--time", "0"], "time_min must be >= 1"),
])
def test_bad_input_exits_2_and_writes_nothing(aifbench_cli, tmp_path, args, message):
    proc = aifbench_cli("submit", *args, "--dry-run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "results").exists() and not any(tmp_path.glob("my*"))


def test_submit_without_dry_run_refuses_bad_input_before_anything(aifbench_cli, tmp_path):
    proc = aifbench_cli("submit", "smoke", "--system", "local-slurm", "--nodes", "9")
    assert proc.returncode == 2 and not (tmp_path / "results").exists()


def test_systems_commands(aifbench_cli):
    listing = aifbench_cli("systems")
    assert listing.returncode == 0 and "jupiter-booster" in listing.stdout and "lumi-g" in listing.stdout
    show = aifbench_cli("systems", "show", "marenostrum5-acc")
    assert show.returncode == 0 and "h100-64gb" in show.stdout and "qos=acc_debug" in show.stdout
    assert "unconfirmed" in show.stdout and "https://" in show.stdout
    bad = aifbench_cli("systems", "show", "nosuch")
    assert bad.returncode == 2 and "allowed:" in bad.stderr


def test_jobs_and_collect_on_unknown_runs(aifbench_cli, tmp_path):
    assert aifbench_cli("jobs").returncode == 0
    proc = aifbench_cli("collect", "nosuchrun")
    assert proc.returncode == 2 and "no submitted run 'nosuchrun'" in proc.stderr


def test_local_system_through_submitit_local_executor(aifbench_cli, tmp_path):
    proc = aifbench_cli("submit", "smoke", "--system", "local", "--only", "membw", "--set", "timing.repeats=2",
                        "--wait", "--wait-timeout", "240", "--telemetry-hz", "0", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "results").iterdir()
    record = json.loads((run_dir / "submission.json").read_text())
    assert record["scheduler"] == "local" and record["mode"] == "single"
    from aifbench.results.store import load

    results = load([run_dir])
    assert set(results.metrics["status"]) == {"ok"} and results.metrics["case_id"].nunique() == 4
    assert set(results.runs["launcher"]) == {"local"}
    jobs = aifbench_cli("jobs", run_dir.name)
    assert "COMPLETED" in jobs.stdout


def test_slurm_system_without_slurm_commands_is_refused(aifbench_cli, tmp_path):
    bindir = str(Path(sys.executable).parent)  # the venv only: no sinfo/sbatch on PATH
    proc = aifbench_cli("submit", "smoke", "--system", "vega-gpu", env={"PATH": bindir})
    assert proc.returncode == 2 and "has no Slurm commands" in proc.stderr, proc.stderr
    assert not (tmp_path / "results").exists()
