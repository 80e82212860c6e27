"""Stopping a run: real `aifbench run` processes get SIGINT/SIGTERM (no mocks).

The launcher must stop every worker (no orphans), exit 128 + the signal, and leave the runs
rows of every rank at status=interrupted with the completed cases' rows kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from aifbench.results.store import load

from tests.conftest import write

# a tiny first case (done in well under a second) and a second that never ends on its own
SUITE = """
[suite]
name = "slowtail"
[timing]
warmup = 1
repeats = 20000
[[case]]
benchmark = "membw"
params = { op = "copy" }
sweep = { size_bytes = [4096, 33554432] }
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals, /proc")


def _start(tmp_path: Path, nproc: int) -> subprocess.Popen:
    suite = write(tmp_path / "slowtail.toml", SUITE)
    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "aifbench", "run", str(suite), "--device", "cpu",
                             "--nproc", str(nproc), "--telemetry-hz", "0", "--results", str(tmp_path / "res")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_first_case_done(tmp_path: Path, proc: subprocess.Popen, nproc: int, timeout: float = 25) -> Path:
    """The run directory once every rank has written the first case's metrics shard."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        shards = list((tmp_path / "res").glob("*/metrics.rank*.parquet"))
        if len(shards) == nproc:
            return shards[0].parent
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no metrics shards after {timeout} s: {proc.communicate()}")


def _stop(proc: subprocess.Popen, sig: int, nproc: int) -> tuple[int, str, list[psutil.Process]]:
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) == nproc or nproc == 1
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        for w in workers:
            w.kill()
        pytest.fail("the launcher did not exit within 30 s of the signal")
    return proc.returncode, err, workers


def _assert_interrupted(run_dir: Path, nproc: int) -> None:
    res = load([run_dir])
    runs = res.runs.sort_values("rank")
    assert list(runs["rank"]) == list(range(nproc))
    assert list(runs["status"]) == ["interrupted"] * nproc
    assert runs["ended_utc"].notna().all()
    done = res.metrics.drop_duplicates(["case_id", "rank"])  # the first case, measured before the stop
    assert len(done) == nproc and set(done["status"]) == {"ok"}
    assert done["case_id"].str.startswith("0000-").all()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_local_launcher_stops_every_worker(tmp_path, sig):
    proc = _start(tmp_path, nproc=2)
    run_dir = _wait_first_case_done(tmp_path, proc, 2)
    code, err, workers = _stop(proc, sig, 2)
    assert code == 128 + sig, err
    assert f"interrupted by {signal.Signals(sig).name}" in err
    assert [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE] == []
    _assert_interrupted(run_dir, 2)
    for rank in (0, 1):  # the workers' own `finally` ran: they report the forwarded SIGINT
        assert "interrupted by SIGINT" in (run_dir / f"worker.rank{rank:05d}.log").read_text()


def test_in_process_run_ends_interrupted_on_sigterm(tmp_path):
    proc = _start(tmp_path, nproc=1)
    run_dir = _wait_first_case_done(tmp_path, proc, 1)
    code, err, _ = _stop(proc, signal.SIGTERM, 1)
    assert code == 143, err
    assert "interrupted by SIGTERM" in err and str(run_dir) in err
    _assert_interrupted(run_dir, 1)


def test_workers_stop_when_the_launcher_is_killed(tmp_path):
    """SIGKILL leaves the launcher no say: the kernel's parent-death signal stops the workers."""
    proc = _start(tmp_path, nproc=2)
    run_dir = _wait_first_case_done(tmp_path, proc, 2)
    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.communicate()
    _, alive = psutil.wait_procs(workers, timeout=20)
    for w in alive:
        w.kill()
    assert alive == []
    _assert_interrupted(run_dir, 2)
