"""The CLI end to end on CPU: run, show, list, schema, and every bad-input path (exit 2, nothing written)."""

import json
import subprocess
import sys

import pytest

from aifbench.results.store import load
from tests.conftest import write


def run_dirs(root):
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


def test_smoke_suite_runs_and_reads_back_valid(aifbench_cli, tmp_path):
    proc = aifbench_cli("run", "smoke", "--results", "res", env={"AIFBENCH_TEST_SECRET": "hunter2-token"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (run_dir,) = run_dirs(tmp_path / "res")
    res = load([run_dir])
    assert not res.skipped
    assert set(res.metrics["status"]) <= {"ok", "skipped"}  # fp8 and the like skip on CPU, with a reason
    assert (res.metrics[res.metrics["status"] == "skipped"]["reason"].str.len() > 0).all()
    assert set(res.metrics[res.metrics["benchmark"] == "gemm"]["status"]) >= {"ok"}
    assert {"gemm", "membw"} <= set(res.metrics["benchmark"])
    run = res.runs.iloc[0]
    assert run["status"] == "ok" and run["suite"] == "smoke" and run["cpu_cores"] >= 1
    assert json.loads(run["config"])["suite"] == "smoke" and len(run["config_hash"]) == 16
    assert len(res.samples) > 0 and set(res.samples["metric"]) >= {"time_s"}
    # environment variables are never stored wholesale
    for f in run_dir.iterdir():
        assert b"hunter2-token" not in f.read_bytes()
    assert "tflops" in proc.stdout and str(run_dir.name) in proc.stdout

    shown = aifbench_cli("show", "--results", "res")
    assert shown.returncode == 0 and run_dir.name in shown.stdout and "gbps" in shown.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "nosuch"], "unknown suite 'nosuch'; allowed:"),
    (["run", "smoke", "--set", "gemm.m=abc"], "gemm.m must be an integer"),
    (["run", "smoke", "--set", "gemm.nosuch=1"], "unknown parameter of gemm"),
    (["run", "smoke", "--device", "cuda"], "--device cuda: no CUDA GPU is visible"),
    (["run", "smoke", "--nproc", "0"], "--nproc must be >= 1"),
    (["run", "smoke", "--only", "nosuch"], "unknown benchmark for --only"),
    (["run", "broken.toml"], "TOML syntax error"),
    (["show", "nosuch"], "no such results directory: res; start one with 'aifbench run smoke'"),
    (["list", "nosuch"], "unknown benchmark 'nosuch'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(aifbench_cli, tmp_path, args, message):
    write(tmp_path / "broken.toml", "[suite\n")
    proc = aifbench_cli(*args, "--results", "res") if args[0] in ("run", "show") else aifbench_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "res").exists()


def test_dry_run_lists_the_cases_and_writes_nothing(aifbench_cli, tmp_path):
    proc = aifbench_cli("run", "smoke", "--only", "gemm", "--set", "gemm.m=77", "--dry-run", "--results", "res")
    assert proc.returncode == 0, proc.stderr
    flat = "".join(ch for ch in proc.stdout if not ch.isspace() and ch != "│")  # the table wraps long params
    assert "0000-gemm-" in flat and "m=77" in flat and "TimingConfig(" not in flat
    assert not (tmp_path / "res").exists()


def test_list_and_schema(aifbench_cli):
    listing = aifbench_cli("list")
    assert listing.returncode == 0 and "gemm" in listing.stdout and "smoke" in listing.stdout
    params = aifbench_cli("list", "gemm")
    assert "dtype" in params.stdout and "bf16" in params.stdout
    ref = aifbench_cli("schema")
    assert ref.returncode == 0 and "## metrics" in ref.stdout and "| tflops | TFLOP/s |" in ref.stdout


def test_import_and_help_stay_light():
    code = ("import sys, aifbench, aifbench.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'torch.cuda', 'pynvml', 'submitit', 'pyslurm') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_bad_telemetry_setting_is_one_error_before_any_rank_starts(aifbench_cli, tmp_path):
    proc = aifbench_cli("run", "smoke", "--only", "gemm", "--nproc", "2", "--results", "res",
                        env={"AIFBENCH_TELEMETRY_GPUS": "everything"})
    assert proc.returncode == 2, proc.stderr
    assert "AIFBENCH_TELEMETRY_GPUS" in proc.stderr and not (tmp_path / "res").exists()


def test_an_unwritable_output_path_is_one_line_exit_2(aifbench_cli, tmp_path):
    assert aifbench_cli("run", "smoke", "--only", "membw", "--results", "res", "--telemetry-hz", "0").returncode == 0
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = aifbench_cli("export", "--results", "res", "-o", str(blocker / "bundle.parquet"))
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "bundle.parquet" in lines[0] and "Traceback" not in proc.stderr


def test_run_refuses_an_unknown_system_name(aifbench_cli, tmp_path):
    proc = aifbench_cli("run", "smoke", "--system", "jupiter-boster", "--results", "res")
    assert proc.returncode == 2 and "unknown system 'jupiter-boster'; allowed: " in proc.stderr
    assert "jupiter-booster" in proc.stderr and not (tmp_path / "res").exists()


def test_output_into_a_closed_pipe_exits_0_quietly(tmp_path):
    """`aifbench list | head -1`: the reader stops early; that is no error of aifbench's."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "aifbench", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `head` that has gone away before aifbench writes: every write hits EPIPE
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_a_results_store_that_is_a_file_is_refused_before_any_work(aifbench_cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = aifbench_cli("run", "smoke", "--results", "afile/sub")
    assert proc.returncode == 2 and proc.stderr.strip() == f"aifbench: error: --results afile/sub: {tmp_path / 'afile'} is not a directory"


def test_a_skipped_shard_is_one_stderr_line_and_stdout_stays_data(aifbench_cli, tmp_path):
    import json

    assert aifbench_cli("run", "smoke", "--only", "membw", "--set", "timing.repeats=2", "--telemetry-hz", "0",
                        "--results", "res").returncode == 0
    run_dir = next((tmp_path / "res").iterdir())
    (run_dir / "metrics.rank00001.main.parquet").write_bytes(b"garbage")
    proc = aifbench_cli("compare", "--results", "res", "--format", "json")
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) > 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "skipping invalid shard" in lines[0] and "metrics.rank00001.main.parquet" in lines[0]


@pytest.mark.parametrize("argv,names", [
    (["submit", "smoke", "--system", "local", "--mode", "nosuch"], ["--mode", "'nosuch'", "'array'", "aifbench submit --help"]),
    (["run", "smoke", "--nproc", "x"], ["--nproc", "'x'"]),
    (["nosuchcmd"], ["'nosuchcmd'", "'run'"]),
    (["run"], ["required: suite"]),
])
def test_argument_errors_are_one_line_exit_2(argv, names, capsys, tmp_path, monkeypatch):
    """argparse's own refusals (choices, types, missing arguments) are one line naming the option
    and what is allowed, exit 2, like every other bad input; nothing is written."""
    from aifbench.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(n in err for n in names), err
    assert list(tmp_path.iterdir()) == []
