"""The store: atomic shards, many concurrent writers, invalid shards skipped and named."""

import logging
import multiprocessing as mp
from pathlib import Path

import pandas as pd
import pytest

from aifbench.errors import ConfigError
from aifbench.results.store import ShardWriter, load, new_run_id, resolve_run
from tests.unit.results.test_schema import metric_row

WRITERS = 8
REWRITES = 15


def _writer_process(root: str, rank: int) -> None:
    w = ShardWriter(Path(root), "run-concurrent", rank=rank)
    for i in range(REWRITES):  # the runner rewrites its shard after every case
        w.add("metrics", [metric_row(run_id="run-concurrent", rank=rank, case_id=f"case{i:03d}", value=float(i + 1))])
        w.flush()


def test_many_processes_write_at_once_and_nothing_is_lost_or_torn(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer_process, args=(str(tmp_path), r)) for r in range(WRITERS)]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):  # a reader during the writes never sees a torn file
        res = load([tmp_path])
        assert not res.skipped, res.skipped
        reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    res = load([tmp_path])
    assert not res.skipped
    assert len(res.metrics) == WRITERS * REWRITES
    assert set(res.metrics["rank"]) == set(range(WRITERS))
    assert not list(tmp_path.rglob("*.tmp"))  # no temp files left behind


def test_corrupt_and_invalid_shards_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    w = ShardWriter(tmp_path, "r1")
    w.add("metrics", [metric_row()])
    w.flush()
    bad = tmp_path / "r1" / "metrics.rank00001.main.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    wrong = tmp_path / "r1" / "metrics.rank00002.main.parquet"
    pd.DataFrame([{"x": 1}]).to_parquet(wrong)
    with caplog.at_level(logging.WARNING):
        res = load([tmp_path])
    assert len(res.metrics) == 1
    assert {p.name for p, _ in res.skipped} == {bad.name, wrong.name}
    assert bad.name in caplog.text and wrong.name in caplog.text


def test_resolve_run_latest_prefix_and_errors(tmp_path):
    for rid in ("20260101T000000Z-smoke-aaaaaa", "20260102T000000Z-smoke-bbbbbb"):
        w = ShardWriter(tmp_path, rid)
        w.add("metrics", [metric_row(run_id=rid)])
        w.flush()
    assert resolve_run(tmp_path, None).name.endswith("bbbbbb")
    assert resolve_run(tmp_path, "20260101").name.endswith("aaaaaa")
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_run(tmp_path, "2026")
    with pytest.raises(ConfigError, match="no run 'nope'"):
        resolve_run(tmp_path, "nope")
    with pytest.raises(ConfigError, match="no such results directory"):
        resolve_run(tmp_path / "absent", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no runs under"):
        resolve_run(tmp_path / "empty", None)


def test_run_ids_sort_by_time_and_are_unique():
    ids = {new_run_id("smoke") for _ in range(50)}
    assert len(ids) == 50
    assert all("-smoke-" in i for i in ids)


def test_shards_get_the_permissions_of_a_plain_file(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        w = ShardWriter(tmp_path, "r1")
        w.add("metrics", [metric_row()])
        (path,) = w.flush()
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the project, not mkstemp's 0600


def test_flush_rewrites_only_changed_tables_and_removes_emptied_ones(tmp_path):
    w = ShardWriter(tmp_path, "r1")
    w.add("metrics", [metric_row()])
    (path,) = w.flush()
    before = path.stat().st_mtime_ns
    assert w.flush() == []  # nothing changed: nothing rewritten
    assert path.stat().st_mtime_ns == before
    w.replace("metrics", [])  # e.g. a resume that keeps none of an earlier attempt's rows
    w.flush()
    assert not path.exists()
