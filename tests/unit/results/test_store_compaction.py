"""Compaction of a run's shards: every row once through crashes, races and rewrites; rank >= 100,000;
bad shards named; every analysis command on a compacted store."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from aifbench import SCHEMA_VERSION
from tests._analysis_data import RunSpec, gemm, membw, write_run
from aifbench.results import compact, layout, store
from aifbench.results.store import ShardWriter

RUN = "20260105T120000Z-scale-00000c"
KEYS = {"metrics": ["case_id", "rank", "metric", "stat"], "samples": ["case_id", "rank", "metric", "sample_index"],
        "runs": ["rank", "task"], "telemetry": []}


def _run(root: Path, nodes: int = 3, gpus: int = 2, **kw) -> Path:
    spec = RunSpec(run_id=RUN, nodes=tuple(f"n{i}" for i in range(nodes)), gpus_per_node=gpus,
                   cases=[gemm(2048), membw(1 << 28)], **kw)
    return write_run(root, spec)


def _rows(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table, sorted by its key, index reset: equal frames mean the same rows, each once."""
    res = store.load([run_dir])
    out = {}
    for name, key in KEYS.items():
        df = res.tables[name]
        out[name] = df.sort_values(key).reset_index(drop=True) if key and len(df) else df
    return out


def _same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for name in KEYS:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False)


def _listing(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}


def test_compaction_keeps_every_row_once_and_a_second_changes_nothing(tmp_path):
    run_dir = _run(tmp_path / "res")
    before = _rows(run_dir)
    report = compact.compact(run_dir)
    names = sorted(p.name for p in run_dir.glob("*.parquet"))
    assert len(names) == 3 and all(layout.COMPACT_RE.match(n) for n in names), names  # metrics, runs, samples
    assert report.removed == 18 and not report.bad  # 6 ranks x 3 tables
    _same(before, _rows(run_dir))
    listing = _listing(run_dir)
    again = compact.compact(run_dir)
    assert not again.changed and _listing(run_dir) == listing


CRASH = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from aifbench.results import compact
    real_unlink, real_replace, left = os.unlink, os.replace, int(sys.argv[2])
    def unlink(path, *a, **k):  # the process dies after `left` deletions (power cut mid-compaction)
        global left
        if ".compact-tmp-" not in str(path).split("/")[-1]:  # a source (renamed aside first), not our temporary file
            if left == 0:
                os._exit(9)
            left -= 1
        return real_unlink(path, *a, **k)
    def replace(src, dst, *a, **k):
        if int(sys.argv[2]) < 0:
            os._exit(9)  # dies before the compacted file is in place
        return real_replace(src, dst, *a, **k)
    os.unlink, os.replace = unlink, replace
    compact.compact(Path(sys.argv[1]))
""")


@pytest.mark.parametrize("deletions", [-1, 0, 1, 7])
def test_crash_mid_compaction_loses_nothing_and_counts_nothing_twice(tmp_path, deletions):
    run_dir = _run(tmp_path / "res")
    before = _rows(run_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", CRASH, str(run_dir), str(deletions)], env=env, timeout=300)
    assert proc.returncode == 9
    _same(before, _rows(run_dir))  # half-compacted: loose leftovers are read once, via the compacted copy
    compact.compact(run_dir)  # finishes the job
    assert all(layout.COMPACT_RE.match(p.name) for p in run_dir.glob("*.parquet") if not p.name.startswith("."))
    _same(before, _rows(run_dir))


def _compact_in_child(run_dir: str, barrier) -> None:
    barrier.wait()
    compact.compact(Path(run_dir))


def test_two_racing_compactions_keep_every_row_once(tmp_path):
    run_dir = _run(tmp_path / "res", nodes=4, gpus=4)
    before = _rows(run_dir)
    ctx = multiprocessing.get_context("fork")
    for _ in range(3):
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_compact_in_child, args=(str(run_dir), barrier)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
        _same(before, _rows(run_dir))
    compact.compact(run_dir)
    assert sorted(layout.COMPACT_RE.match(p.name)["table"] for p in run_dir.glob("*.parquet")) == \
        ["metrics", "runs", "samples"]
    _same(before, _rows(run_dir))


def test_raced_compacted_files_are_read_once(tmp_path):
    """Two compacted files listing the same shards (two compactions finished, neither saw the
    other's file): every row once, and the next compaction merges them into one per table."""
    root = tmp_path / "res"
    run_dir = _run(root)
    saved, hidden = tmp_path / "saved", tmp_path / "hidden"
    shutil.copytree(run_dir, saved)  # copy2 keeps size and mtime: the same sources
    compact.compact(run_dir)
    hidden.mkdir()
    for p in run_dir.glob("*.compact-*"):  # compaction A's files, not yet visible to B
        p.rename(hidden / p.name)
    for p in saved.glob("*.parquet"):
        shutil.copy2(p, run_dir / p.name)
    extra = store.load([run_dir]).metrics
    w = ShardWriter(root, RUN, 99)  # a shard only B sees
    w.add("metrics", extra[extra["rank"] == 0].assign(rank=99).to_dict("records"))
    w.flush()
    expected = _rows(run_dir)
    compact.compact(run_dir)  # B
    for p in hidden.iterdir():
        p.rename(run_dir / p.name)
    assert len(list(run_dir.glob("metrics.compact-*"))) == 2
    rf = layout.scan(run_dir)
    assert len(rf.tables["metrics"].raced) == 6 and any("raced" in n for n in rf.notes())
    _same(expected, _rows(run_dir))
    compact.compact(run_dir)
    assert len(list(run_dir.glob("metrics.compact-*"))) == 1
    _same(expected, _rows(run_dir))


def test_a_shard_rewritten_after_compaction_wins(tmp_path):
    run_dir = _run(tmp_path / "res")
    compact.compact(run_dir)
    rows = store.load([run_dir]).metrics
    mine = rows[rows["rank"] == 2].copy()
    mine["value"] = mine["value"] * 2  # the rank ran again (requeued) and wrote its shard anew
    w = ShardWriter(tmp_path / "res", RUN, 2)
    w.replace("metrics", mine.to_dict("records"))
    w.flush()
    after = store.load([run_dir]).metrics
    assert len(after) == len(rows)
    got = after[after["rank"] == 2].sort_values(["case_id", "metric", "stat"])["value"].to_numpy()
    want = mine.sort_values(["case_id", "metric", "stat"])["value"].to_numpy()
    assert (got == want).all()
    compact.compact(run_dir)
    assert len(store.load([run_dir]).metrics) == len(rows)


def test_rank_100000_and_beyond_are_stored_read_and_compacted(tmp_path):
    root = tmp_path / "res"
    run_dir = _run(root, nodes=1, gpus=2)
    rows = store.load([run_dir])
    for rank in (100_000, 123_456):
        w = ShardWriter(root, RUN, rank)
        w.add("runs", [dict(rows.runs.iloc[0].to_dict(), rank=rank)])
        w.add("metrics", [dict(r, rank=rank) for r in rows.metrics[rows.metrics["rank"] == 0].to_dict("records")])
        w.flush()
    assert (run_dir / "metrics.rank100000.main.parquet").exists()
    assert (run_dir / "metrics.rank00001.main.parquet").exists()  # the 5-digit names of older stores still read
    ranks = sorted(store.load([run_dir]).metrics["rank"].unique())
    assert ranks == [0, 1, 100_000, 123_456]
    compact.compact(run_dir)
    assert sorted(store.load([run_dir]).metrics["rank"].unique()) == ranks
    assert layout.shard_id("metrics.rank123456.a7.parquet") == (123_456, "a7")


def test_foreign_newer_and_duplicate_shards_are_named_and_not_counted(tmp_path):
    root = tmp_path / "res"
    run_dir = _run(root, nodes=1, gpus=2)
    good = store.load([run_dir])
    other = _run(tmp_path / "other", nodes=1, gpus=1)  # same run id: rewrite it as another run's shard
    df = store.load([other]).metrics.assign(run_id="20260101T000000Z-other-ffffff", rank=7)
    store.write_shard(run_dir / "metrics.rank00007.main.parquet", "metrics", df)
    newer = good.metrics[good.metrics["rank"] == 0].assign(rank=8)
    import pyarrow as pa
    import pyarrow.parquet as pq
    t = pa.Table.from_pandas(newer, preserve_index=False)
    t = t.set_column(t.schema.get_field_index("schema_version"), "schema_version",
                     pa.array([SCHEMA_VERSION + 1] * len(newer)))
    pq.write_table(t, run_dir / "metrics.rank00008.main.parquet")
    runs1 = good.runs[good.runs["rank"] == 1]
    store.write_shard(run_dir / "runs.rank000001.main.parquet", "runs", runs1)  # rank 1 present twice
    res = store.load([run_dir])
    why = {p.name: w for p, w in res.skipped}
    assert "belongs to run 20260101T000000Z-other-ffffff" in why["metrics.rank00007.main.parquet"]
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in why["metrics.rank00008.main.parquet"]
    twice = [w for w in why.values() if "present twice" in w]
    assert len(twice) == 1 and "runs.rank000001.main.parquet" in twice[0] and "runs.rank00001.main.parquet" in twice[0]
    assert len(res.metrics) == len(good.metrics) and len(res.runs) == len(good.runs)
    report = compact.compact(run_dir)  # bad shards are left in place and named
    assert {p.name for p, _ in report.bad} >= {"metrics.rank00007.main.parquet", "metrics.rank00008.main.parquet"}
    assert (run_dir / "metrics.rank00007.main.parquet").exists()
    assert len(store.load([run_dir]).metrics) == len(good.metrics)


def test_every_command_works_on_a_compacted_store(tmp_path, aifbench_cli):
    root = tmp_path / "res"
    run_dir = _run(root, nodes=4, gpus=2, factor={3: 1.25})
    proc = aifbench_cli("compact", "--results", str(root))
    assert proc.returncode == 0 and "3 file(s) written" in proc.stdout, proc.stdout + proc.stderr
    assert not list(run_dir.glob("*.rank*.parquet"))
    show = aifbench_cli("show", "--results", str(root))
    assert show.returncode == 0 and "distribution over 8 ranks" in show.stdout, show.stderr
    val = aifbench_cli("validate", "--results", str(root), "--system", "local", "--format", "markdown")
    assert "slow rank 3 (n1 cuda:1" in val.stdout, val.stdout + val.stderr
    cmp_ = aifbench_cli("compare", str(root), "--no-reference")
    assert cmp_.returncode == 0 and "slow rank 3 (n1 cuda:1" in cmp_.stdout, cmp_.stderr
    rep = aifbench_cli("report", str(root), "--no-reference", "-o", str(tmp_path / "r.html"))
    assert rep.returncode == 0 and "Per-GPU distribution" in (tmp_path / "r.html").read_text(), rep.stderr
    exp = aifbench_cli("export", str(root), "-o", str(tmp_path / "b.parquet"))
    assert exp.returncode == 0 and "1 run(s)" in exp.stdout, exp.stderr
    again = aifbench_cli("compact", "--results", str(root))
    assert "nothing changed" in again.stdout
