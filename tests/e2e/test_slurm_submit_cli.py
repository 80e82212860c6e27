"""`aifbench submit`: --dry-run against golden sbatch scripts, bad input (exit 2, nothing written),
and the local (no scheduler) system through submitit's local executor. No Slurm needed."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.fixture
def in_process(tmp_path, monkeypatch, capsys):
    """The CLI in this process (no interpreter start per call): (args...) -> (exit code, stdout, stderr)."""
    from aifbench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[A-Za-z0-9_-]+-[0-9a-f]{6,8}")


def normalise(text: str, tmp_path: Path) -> str:
    text = text.replace(str(tmp_path), "<TMP>").replace(sys.executable, "<PYTHON>")
    return RUN_ID.sub("<RUN_ID>", text)


@pytest.mark.parametrize("golden,args", [
    ("sbatch_local_slurm_smoke.sh", ["local-slurm-smoke"]),
    ("sbatch_jupiter_array.sh", ["smoke", "--system", "jupiter-booster", "--only", "membw", "--mode", "array",
                                 "--cases-per-task", "2", "--array-parallelism", "1", "--nodes", "2",
                                 "--account", "jscbench", "--time", "20", "--job-name", "membw-sweep"]),
])
def test_dry_run_matches_golden(in_process, monkeypatch, tmp_path, golden, args):
    monkeypatch.setenv("AIFBENCH_ACCOUNT", "")
    code, out, err = in_process("submit", *args, "--dry-run", "--results", "res")
    assert code == 0, err
    assert "nothing submitted" in err
    script = normalise(out, tmp_path)
    path = GOLDEN / golden
    if os.environ.get("AIFBENCH_UPDATE_GOLDEN"):
        path.write_text(script)
    assert script == path.read_text(), "sbatch script changed; review and regenerate with AIFBENCH_UPDATE_GOLDEN=1"
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
    (["smoke", "--system", "vega-gpu", "--time", "0"], "--time (time_min in a job file) must be >= 1"),
    (["smoke", "--system", "local-slurm", "--wait", "--wait-timeout", "-5"], "--wait-timeout must be > 0"),
    (["smoke", "--system", "local-slurm", "--telemetry-hz", "-1"], "telemetry interval must be 0 (off) or 0.001..60 s"),
    (["smoke", "--system", "local-slurm", "--mode", "array", "--array-parallelism", "0"], "--array-parallelism (array_parallelism in a job file) must be >= 1"),
    (["smoke", "--system", "jupiter-booster", "--job-name", "a b"], "job name 'a b' refused"),
    (["smoke", "--system", "jupiter-booster", "--reservation", "r|x"], "--reservation 'r|x' refused"),
])
def test_bad_input_exits_2_and_writes_nothing(in_process, tmp_path, args, message):
    code, out, err = in_process("submit", *args, "--dry-run")
    assert code == 2, out + err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists() and not any(tmp_path.glob("my*"))


def test_submit_without_dry_run_refuses_bad_input_before_anything(aifbench_cli, tmp_path):
    proc = aifbench_cli("submit", "smoke", "--system", "local-slurm", "--nodes", "9")
    assert proc.returncode == 2 and not (tmp_path / "results").exists()


@pytest.mark.parametrize("env,hz,message", [
    ({}, "1e6", "telemetry interval must be"),
    ({"AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION": "abc"}, "10", "AIFBENCH_TELEMETRY_MIN_CLOCK_FRACTION must be"),
])
def test_bad_telemetry_settings_refused_before_submitting(in_process, monkeypatch, tmp_path, env, hz, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, out, err = in_process("submit", "smoke", "--system", "local", "--telemetry-hz", hz)
    assert code == 2 and message in err, out + err
    assert not (tmp_path / "results").exists()


def test_systems_commands(in_process):
    code, out, _ = in_process("systems")
    assert code == 0 and "jupiter-booster" in out and "lumi-g" in out
    code, out, _ = in_process("systems", "show", "marenostrum5-acc")
    assert code == 0 and "h100-64gb" in out and "qos=acc_debug" in out
    assert "unconfirmed" in out and "https://" in out
    code, _, err = in_process("systems", "show", "nosuch")
    assert code == 2 and "allowed:" in err


def test_jobs_and_collect_on_unknown_runs(in_process):
    code, out, _ = in_process("jobs")
    assert code == 0 and "no submitted runs under results" in out
    code, _, err = in_process("collect", "nosuchrun")
    assert code == 2 and "no submitted run 'nosuchrun'" in err
    code, _, err = in_process("cancel", "nosuchrun")
    assert code == 2 and "no submitted run 'nosuchrun'" in err


@pytest.mark.parametrize("args,message", [
    (["jobs", "--timeout", "0"], "--timeout must be > 0"),
    (["jobs", "--last", "-1"], "--last must be >= 0"),
    (["cluster", "--timeout", "-3"], "--timeout must be > 0"),
])
def test_bad_flags_of_jobs_and_cluster(in_process, args, message):
    code, _, err = in_process(*args)
    assert code == 2 and message in err, err


def test_local_system_through_submitit_local_executor(aifbench_cli, tmp_path):
    from aifbench.results.store import load

    quick = ["--only", "membw", "--set", "timing.repeats=2", "--telemetry-hz", "0"]
    proc = aifbench_cli("submit", "smoke", "--system", "local", *quick, "--wait", "--wait-timeout", "240", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (single,) = (tmp_path / "results").iterdir()
    record = json.loads((single / "submission.json").read_text())
    assert record["scheduler"] == "local" and record["mode"] == "single"
    assert ["mode", "single", "profile"] in record["options"]  # each option with its source, kept with the run
    results = load([single])
    assert set(results.metrics["status"]) == {"ok"} and results.metrics["case_id"].nunique() == 4
    assert set(results.runs["launcher"]) == {"local"}
    # an array on the local executor: every task starts at once, but only --array-parallelism measure
    proc = aifbench_cli("submit", "smoke", "--system", "local", *quick, "--mode", "array", "--array-parallelism", "1",
                        "--cases-per-task", "2", "--wait", "--wait-timeout", "240", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ended = [line for line in proc.stderr.splitlines() if line.startswith("aifbench: [") and "Slurm task" in line]
    assert len(ended) == 2 and "0 tasks left" in ended[-1] and "s elapsed" in ended[0], proc.stderr  # off a TTY
    (array,) = [d for d in (tmp_path / "results").iterdir() if d != single]
    windows = load([array]).metrics.groupby("case_id").agg(start=("started_utc", "min"), end=("ended_utc", "max"))
    windows = windows.sort_values("start")
    starts, ends = windows["start"].iloc[1:].reset_index(drop=True), windows["end"].iloc[:-1].reset_index(drop=True)
    assert len(windows) == 4 and (starts >= ends).all(), windows  # never two tasks measuring at once
    jobs = aifbench_cli("jobs")  # no arguments: every submitted run under ./results
    assert jobs.returncode == 0 and single.name in jobs.stdout and array.name in jobs.stdout, jobs.stdout
    assert jobs.stdout.count("COMPLETED") == 3 and "FAILED" not in jobs.stdout, jobs.stdout
    last = aifbench_cli("jobs", "--last", "1")
    assert single.name not in last.stdout and "showing the latest 1 of 2 submitted runs" in last.stdout


def test_slurm_system_without_slurm_commands_is_refused(aifbench_cli, tmp_path):
    bindir = str(Path(sys.executable).parent)  # the venv only: no sinfo/sbatch on PATH
    proc = aifbench_cli("submit", "smoke", "--system", "vega-gpu", env={"PATH": bindir})
    assert proc.returncode == 2 and "has no Slurm commands" in proc.stderr, proc.stderr
    assert not (tmp_path / "results").exists()
