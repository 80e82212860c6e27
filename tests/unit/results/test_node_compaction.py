"""Node-level compaction: the last task of each node merges the node's shards at the end of a job
step; `compact` then merges the node files. Real processes for the local launch (no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from aifbench.results import compact, layout, node, store

from tests.conftest import write
from tests.unit.results.test_store_compaction import _rows, _run, _same

SUITE = """
[suite]
name = "nodecompact"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "membw"
params = { op = "copy", size_bytes = 4096 }
"""


def _footers(run_dir: Path) -> dict[str, dict]:
    return {p.name: layout.compact_meta(p) for p in run_dir.glob("*.compact-*.parquet")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock, POSIX processes")
def test_a_two_process_run_arrives_as_one_file_per_node_and_table(tmp_path):
    suite = write(tmp_path / "nodecompact.toml", SUITE)
    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "aifbench", "run", str(suite), "--device", "cpu", "--nproc", "2",
                           "--telemetry-hz", "0", "--results", str(tmp_path / "res")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [d for d in (tmp_path / "res").iterdir() if d.is_dir()]
    assert not [p.name for p in run_dir.glob("*.rank*.parquet")]  # no loose shard left
    footers = _footers(run_dir)
    assert sorted(m["table"] for m in footers.values()) == ["metrics", "runs", "samples"]
    for meta in footers.values():  # written by a worker at the end of its step, not by the launcher
        assert meta["node"] == node.node_task({"RANK": "0", "WORLD_SIZE": "1", node.STEP_ENV: "x"}).node
        assert meta["step"].startswith("local-")
        assert sorted(layout.shard_id(n)[0] for n in meta["sources"]) == [0, 1]
    assert not (run_dir / node.STEPS_DIR).exists()  # markers and locks tidied up
    metrics = store.load([run_dir]).metrics
    assert sorted(set(metrics["rank"])) == [0, 1] and (metrics["status"] == "ok").all()


def _finish(run_dir: Path, step: str, node_name: str, tasks: tuple[int, ...], task: int):
    where = node.NodeTask(step, node_name, task, tasks)
    return node.finish_task(run_dir, where, node.task_shards(run_dir, task, "main"))


def test_the_last_task_of_a_node_merges_it_and_compact_merges_the_nodes(tmp_path):
    run_dir = _run(tmp_path / "res", nodes=3, gpus=2)  # 6 ranks, 2 per node, 3 tables
    before = _rows(run_dir)
    for n in range(3):
        tasks = (2 * n, 2 * n + 1)
        assert _finish(run_dir, "job7.0-r0", f"n{n}", tasks, tasks[0]) is None  # its node-mate still runs
        _same(before, _rows(run_dir))
        report = _finish(run_dir, "job7.0-r0", f"n{n}", tasks, tasks[1])
        assert report is not None and len(report.written) == 3 and report.removed == 6 and not report.bad
        _same(before, _rows(run_dir))  # every state in between reads the same rows, each once
    footers = _footers(run_dir)
    assert len(footers) == 9 and not list(run_dir.glob("*.rank*.parquet"))
    assert {m["node"] for m in footers.values()} == {"n0", "n1", "n2"}
    assert not (run_dir / node.STEPS_DIR).exists()
    merged = compact.compact(run_dir, workers=2, batch=1)
    assert len(merged.written) == 3 and merged.removed == 9 and not merged.bad
    footers = _footers(run_dir)
    assert len(footers) == 3 and all("node" not in m and len(m["sources"]) == 6 for m in footers.values())
    _same(before, _rows(run_dir))
    assert not compact.compact(run_dir).changed


def test_a_crashed_task_leaves_its_node_loose_and_a_requeued_attempt_counts_its_own_markers(tmp_path):
    run_dir = _run(tmp_path / "res", nodes=1, gpus=2)
    before = _rows(run_dir)
    assert _finish(run_dir, "job8.0-r0", "n0", (0, 1), 0) is None  # task 1 died: never marks
    assert len(list(run_dir.glob("*.rank*.parquet"))) == 6
    # the requeued attempt: task 1 ends first now; task 0's marker of attempt r0 does not count
    assert _finish(run_dir, "job8.0-r1", "n0", (0, 1), 1) is None
    report = _finish(run_dir, "job8.0-r1", "n0", (0, 1), 0)
    assert report is not None and report.removed == 6
    _same(before, _rows(run_dir))


def test_a_shard_rewritten_after_its_node_merged_is_read_instead_of_the_merged_copy(tmp_path):
    run_dir = _run(tmp_path / "res", nodes=1, gpus=2)
    shard = run_dir / store.shard_name("metrics", 1)
    old = store.read_parquet(shard).to_pandas()
    _finish(run_dir, "job9.0-r0", "n0", (0, 1), 0)
    _finish(run_dir, "job9.0-r0", "n0", (0, 1), 1)
    assert not shard.exists()
    changed = old.assign(value=old["value"] * 2)  # a requeued rank writes its shard again: a newer generation
    store.write_shard(shard, "metrics", changed, generation=time.time_ns() // 1000)
    got = store.load([run_dir]).metrics
    mine = got[got["rank"] == 1].sort_values(["case_id", "metric", "stat"])["value"].to_numpy()
    want = changed.sort_values(["case_id", "metric", "stat"])["value"].to_numpy()
    assert len(mine) == len(want) and pd.Series(mine).equals(pd.Series(want).astype(mine.dtype))


def test_node_task_comes_from_slurm_or_the_local_launcher_and_nothing_else():
    slurm = {"SLURM_JOB_ID": "42", "SLURM_STEP_ID": "0", "SLURM_RESTART_COUNT": "1", "SLURM_PROCID": "5",
             "SLURM_GTIDS": "4,5,6,7", "SLURMD_NODENAME": "gpu-017"}
    assert node.node_task(slurm) == node.NodeTask("42.0-r1", "gpu-017", 5, (4, 5, 6, 7))
    local = node.node_task({"RANK": "1", "WORLD_SIZE": "2", node.STEP_ENV: "local-9-1234"})
    assert local is not None and local.task == 1 and local.node_tasks == (0, 1) and local.step == "local-9-1234"
    assert node.node_task({"RANK": "0", "WORLD_SIZE": "1"}) is None  # a process started by hand
