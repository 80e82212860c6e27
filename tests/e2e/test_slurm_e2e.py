"""End to end against the real local Slurm cluster (scripts/ci/local-slurm.sh start): submit through
submitit, multi-node gloo, job arrays, cancel, a killed task, preemption requeue, Slurm's own
rejection. Marked `slurm`: skipped locally when the cluster is down, a failure when CI=true or
AIFBENCH_REQUIRE_SLURM=1 (.ci/run sets it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from aifbench import launch
from aifbench.launch.jobspec import SUBMISSION_FILE, Submission
from aifbench.results.store import load
from tests._slurm import require_nodes

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
SLOW = ["--only", "membw", "--set", "timing.repeats=100000000", "--telemetry-hz", "0"]
QUICK = ["--only", "membw", "--set", "timing.repeats=6000", "--telemetry-hz", "0"]


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    require_nodes("nodes n1, n2 of partition debug", lambda up: len(up) >= 2, "-p", "debug")


def _submit(cli, *args: str, timeout: float = 300):
    proc = cli("submit", *args, timeout=timeout)
    return proc


def _run_dir(tmp_path: Path) -> Path:
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if (p / SUBMISSION_FILE).exists()]
    return run_dir


def _wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _state(run_dir: Path) -> str:
    record = Submission.load(run_dir)
    (info,) = launch.states([record])[record.run_id].values()
    return info.state


def _cases(run_dir: Path, part: str = "main", rank: int = 0) -> set[str]:
    """Cases the task (rank, part) reported itself, from its loose shard or a compacted file."""
    from aifbench.launch.collect import reported_cases

    try:
        rows = reported_cases(run_dir).get((rank, part))
    except Exception:  # replaced while reading
        return set()
    return set(rows["case_id"]) if rows is not None and len(rows) else set()


def test_smoke_suite_on_one_node(aifbench_cli, tmp_path):
    proc = _submit(aifbench_cli, "local-slurm-smoke", "--wait", "--wait-timeout", "240")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = _run_dir(tmp_path)
    record = Submission.load(run_dir)
    res = load([run_dir])
    statuses = res.metrics.drop_duplicates("case_id")["status"]
    assert len(statuses) == len(json.loads((run_dir / "plan.json").read_text())["suite_cases"])
    assert set(statuses) <= {"ok", "skipped"} and (statuses == "ok").sum() >= 5
    run = res.runs.iloc[0]
    assert (run.launcher, run.system, run.partition, run.job_id) == ("slurm", "local-slurm", "debug",
                                                                            record.jobs[0].job_id)
    assert run.job_nodes in ("n1", "n2")
    import pyarrow.parquet as pq  # the software environment the job asked for, recorded by the rank itself

    (runs_file,) = run_dir.glob("runs*.parquet")
    asked = pq.read_table(runs_file, columns=["environment"]).column(0).to_pylist()
    assert json.loads(asked[0]) == {"system": "local-slurm"}
    (script,) = (run_dir / "slurm").glob("*_submission.sh")
    assert "#SBATCH --wckey" not in script.read_text()  # submitit's default 'submitit' is never sent


def test_collective_across_two_nodes_with_gloo(aifbench_cli, tmp_path):
    proc = _submit(aifbench_cli, "smoke", "--system", "local-slurm", "--nodes", "2", "--only", "collectives",
                   "--set", 'collectives.op=["all_reduce"]', "--wait", "--wait-timeout", "240")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = load([_run_dir(tmp_path)])
    m = res.metrics
    assert set(m["rank"]) == {0, 1} and set(m["world_size"]) == {2} and set(m["status"]) == {"ok"}
    assert {"busbw_gbps", "algbw_gbps"} <= set(m[m["rank"] == 1]["metric"])
    assert sorted(res.runs["node_index"]) == ["0", "1"] and set(res.runs["job_nodes"]) == {"n[1-2]"}


def test_four_point_sweep_as_one_job_array(aifbench_cli, tmp_path):
    proc = _submit(aifbench_cli, "smoke", "--system", "local-slurm", "--only", "membw", "--mode", "array",
                   "--array-parallelism", "2", "--telemetry-hz", "0", "--wait", "--wait-timeout", "240")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = _run_dir(tmp_path)
    record = Submission.load(run_dir)
    array_id = record.jobs[0].job_id.split("_")[0]
    assert [j.job_id for j in record.jobs] == [f"{array_id}_{i}" for i in range(4)]
    for i in range(4):  # every array task wrote its own shard with its own case
        assert len(_cases(run_dir, f"a{i}")) == 1
    assert load([run_dir]).metrics["case_id"].nunique() == 4
    assert set(load([run_dir]).runs["array_task_id"]) == {"0", "1", "2", "3"}
    jobs = aifbench_cli("jobs", run_dir.name)
    assert jobs.stdout.count("COMPLETED") == 4, jobs.stdout


def _raw_id(job_id: str) -> str:
    """Slurm's own job id of an array task ('12_3' -> '15'); a plain id unchanged."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%A"], capture_output=True, text=True, timeout=15)
    return out.stdout.split()[0] if out.stdout.split() else job_id


def _worker_pid(job_id: str) -> int | None:
    out = subprocess.run(["scontrol", "listpids", _raw_id(job_id)], capture_output=True, text=True, timeout=15).stdout
    rows = [ln.split() for ln in out.splitlines()[1:] if ln.split()]
    # step 0, local task 0; None (asked again) while the step has not started its task yet
    return next((int(r[0]) for r in rows if r[2] == "0" and r[3] == "0"), None)


def _states(run_dir: Path) -> dict:
    record = Submission.load(run_dir)
    return launch.states([record])[record.run_id]


def test_array_task_killed_then_rest_cancelled(aifbench_cli, tmp_path):
    fresh = aifbench_cli("jobs")
    assert fresh.returncode == 0 and "no submitted runs" in fresh.stdout
    proc = _submit(aifbench_cli, "smoke", "--system", "local-slurm", *SLOW, "--mode", "array", "--array-parallelism", "1")
    assert proc.returncode == 0, proc.stderr
    run_dir = _run_dir(tmp_path)
    ids = [j.job_id for j in Submission.load(run_dir).jobs]
    _wait_until(lambda: _states(run_dir)[ids[0]].state == "RUNNING", 60, "array task 0 to run")
    _wait_until(lambda: (run_dir / "runs.rank00000.a0.parquet").exists(), 60, "task 0's worker to start")
    os.kill(_wait_until(lambda: _worker_pid(ids[0]), 30, "the worker pid"), signal.SIGKILL)
    # task 0 has ended while its siblings are queued: Slurm's record says so (not 'gone'), at once
    now = _wait_until(lambda: (st := _states(run_dir))[ids[1]].state == "RUNNING" and st, 60, "task 1 to run")
    assert now[ids[0]].state == "FAILED" and now[ids[0]].source in ("squeue", "sacct"), now[ids[0]]
    assert [now[i].state for i in ids[2:]] == ["PENDING", "PENDING"]
    # a second, quick submission: `aifbench jobs` without arguments lists both runs
    quick = _submit(aifbench_cli, "smoke", "--system", "local-slurm", "--only", "membw", "--set", "timing.repeats=2",
                    "--set", 'membw.op=["copy"]', "--telemetry-hz", "0", "--wait", "--wait-timeout", "120")
    assert quick.returncode == 0, quick.stdout + quick.stderr
    listing = aifbench_cli("jobs").stdout
    assert run_dir.name in listing and listing.count("COMPLETED") == 1 and listing.count("PENDING") == 2, listing
    cancel = aifbench_cli("cancel", run_dir.name[:20])
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stdout + cancel.stderr
    _wait_until(lambda: all(_states(run_dir)[i].state == "CANCELLED" for i in ids[1:]), 60, "tasks 1-3 CANCELLED")
    listing = aifbench_cli("jobs").stdout
    assert listing.count("CANCELLED") == 3 and listing.count("FAILED") == 1, listing
    collect = aifbench_cli("collect", run_dir.name)
    assert collect.returncode == 1, collect.stdout
    reasons = load([run_dir]).metrics.query("status == 'failed'").sort_values("case_id")["reason"].tolist()
    assert len(reasons) == 4, reasons  # array task i ran case i
    assert f"slurm job {ids[0]} FAILED" in reasons[0] and "Killed" in reasons[0], reasons[0]
    assert all(f"slurm job {i} CANCELLED" in r for i, r in zip(ids[1:], reasons[1:])), reasons
    again = aifbench_cli("cancel", run_dir.name)
    assert again.returncode == 0 and "nothing to cancel" in again.stdout


def test_killed_task_is_collected_then_requeued_without_stale_rows(aifbench_cli, tmp_path):
    proc = _submit(aifbench_cli, "smoke", "--system", "local-slurm", *QUICK)
    assert proc.returncode == 0, proc.stderr
    run_dir = _run_dir(tmp_path)
    job_id = Submission.load(run_dir).jobs[0].job_id
    _wait_until(lambda: (run_dir / "runs.rank00000.main.parquet").exists(), 60, "the worker to start")
    os.kill(_wait_until(lambda: _worker_pid(job_id), 30, "the worker pid"), signal.SIGKILL)
    _wait_until(lambda: _state(run_dir) == "FAILED", 60, "state FAILED")
    collect = aifbench_cli("collect", run_dir.name)
    assert collect.returncode == 1, collect.stdout
    m = load([run_dir]).metrics
    failed = m[m["status"] == "failed"]
    assert failed["case_id"].nunique() == 4 - len(_cases(run_dir)) > 0
    reason = failed["reason"].iloc[0]
    assert f"slurm job {job_id} FAILED" in reason and "Killed" in reason, reason
    collected = run_dir / "metrics.rank00000.main-collected.parquet"
    assert collected.exists()
    assert aifbench_cli("collect", run_dir.name).returncode == 1  # idempotent: same rows, rewritten
    assert len(load([run_dir]).metrics.query("status == 'failed'")) == len(failed)
    # requeued by hand, the task resumes, reports the missing cases itself and drops the stale rows:
    # the results are complete before anyone runs collect again
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=15)
    _wait_until(lambda: _state(run_dir) == "PENDING", 60, "the requeued job to pend")
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=15)
    _wait_until(lambda: _state(run_dir) == "COMPLETED", 180, "the requeued job to complete")
    assert not collected.exists()
    m = load([run_dir]).metrics
    assert set(m["status"]) == {"ok"} and m["case_id"].nunique() == 4
    assert not m.duplicated(["case_id", "rank", "metric", "stat"]).any()
    assert aifbench_cli("collect", run_dir.name).returncode == 0


def test_preempted_job_requeues_and_resumes_without_duplicates(aifbench_cli, tmp_path):
    proc = _submit(aifbench_cli, "smoke", "--system", "local-slurm", *QUICK)
    assert proc.returncode == 0, proc.stderr
    run_dir = _run_dir(tmp_path)
    job_id = Submission.load(run_dir).jobs[0].job_id
    _wait_until(lambda: _cases(run_dir), 120, "a first case")
    before = load([run_dir / "metrics.rank00000.main.parquet"]).metrics
    # what Slurm does on preemption, and what submitit's own test helper sends: TERM then USR2
    subprocess.run(["scancel", job_id, "--signal", "SIGTERM"], check=True, timeout=15)
    subprocess.run(["scancel", job_id, "--signal", "USR2"], check=True, timeout=15)
    _wait_until(lambda: _state(run_dir) == "PENDING", 60, "the requeued job to pend")
    # a requeued job waits ~2 minutes (BeginTime) before Slurm restarts it: start it now
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=15)
    _wait_until(lambda: _state(run_dir) == "COMPLETED", 180, "the requeued job to complete")
    res = load([run_dir])
    m, s = res.metrics, res.samples
    assert m["case_id"].nunique() == 4 and set(m["status"]) == {"ok"}
    assert not m.duplicated(["case_id", "rank", "metric", "stat"]).any()
    assert not s.duplicated(["case_id", "rank", "metric", "sample_index"]).any()
    kept = before.drop_duplicates("case_id").set_index("case_id")["started_utc"]
    after = m.drop_duplicates("case_id").set_index("case_id")["started_utc"]
    assert (after[kept.index] == kept).all(), "cases measured before the requeue must be kept, not re-run"
    history = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "State"], capture_output=True,
                             text=True, timeout=15).stdout.split()
    assert "REQUEUED" in history or "PREEMPTED" in history, history
    assert aifbench_cli("collect", run_dir.name).returncode == 0


def test_slurm_rejection_is_shown_and_nothing_is_left(aifbench_cli, tmp_path):
    proc = _submit(aifbench_cli, "smoke", "--system", "local-slurm", "--account", "nosuchaccount")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Slurm rejected the job" in proc.stderr and "Invalid account" in proc.stderr
    assert not any((tmp_path / "results").glob("*/plan.json")) if (tmp_path / "results").exists() else True


def test_partition_and_size_checked_against_the_live_cluster(aifbench_cli, tmp_path):
    from aifbench.systems import SYSTEMS_DIR

    text = (SYSTEMS_DIR / "local-slurm.toml").read_text()
    profile = tmp_path / "bigger.toml"
    profile.write_text(text.replace("max_nodes = 2", "max_nodes = 8").replace("count = 2", "count = 8")
                       .replace('[slurm.partitions.debug]\npartition = "debug"',
                                '[slurm.partitions.debug]\npartition = "debug"\n\n[slurm.partitions.absent]\npartition = "absent"'))
    too_big = _submit(aifbench_cli, "smoke", "--system", str(profile), "--nodes", "3")
    assert too_big.returncode == 2 and "partition 'debug' has 2 node(s)" in too_big.stderr, too_big.stderr
    absent = _submit(aifbench_cli, "smoke", "--system", str(profile), "--partition", "absent")
    assert absent.returncode == 2 and re.search(r"partition 'absent' .* partitions here: .*\bdebug\b", absent.stderr), \
        absent.stderr
    assert not (tmp_path / "results").exists()


def test_cluster_command_lists_gpu_gres(aifbench_cli):
    proc = aifbench_cli("cluster")
    assert proc.returncode == 0, proc.stderr
    assert "debug" in proc.stdout and "gpu:4" in proc.stdout and "n2" in proc.stdout


def test_each_node_merges_its_shards_at_the_end_of_the_job_step(aifbench_cli, tmp_path):
    from aifbench.results import layout

    proc = _submit(aifbench_cli, "smoke", "--system", "local-slurm", "--nodes", "2", "--only", "collectives",
                   "--set", 'collectives.op=["all_reduce"]')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = _run_dir(tmp_path)
    _wait_until(lambda: _state(run_dir) == "COMPLETED", 240, "the job to complete")
    footers = [layout.compact_meta(p) for p in run_dir.glob("*.compact-*.parquet")]
    assert not list(run_dir.glob("*.rank*.parquet"))  # every shard merged where it was made
    assert {m.get("node") for m in footers} == {"n1", "n2"}  # one file per node and table
    assert not (run_dir / ".steps").exists() or not any((run_dir / ".steps").rglob("task*.json"))
    collect = aifbench_cli("collect", run_dir.name)
    assert collect.returncode == 0, collect.stdout + collect.stderr
    assert all("node" not in layout.compact_meta(p) for p in run_dir.glob("*.compact-*.parquet"))
    assert set(load([run_dir]).metrics["rank"]) == {0, 1}
