"""results/compact.py on its boundary: a loose shard is removed only when it is, byte size and
modification time, the one a compacted file recorded; rewritten since (newer rows), it stays."""

from __future__ import annotations

import os

from aifbench.results import compact, layout
from aifbench.results.store import ShardWriter, load
from tests.unit.results.test_schema import metric_row

RUN = "20260105T120000Z-comp-0000e1"


def _shard(tmp_path, value: float):
    w = ShardWriter(tmp_path, RUN, rank=0)
    w.add("metrics", [metric_row(run_id=RUN, rank=0, case_id="c0", value=value)])
    w.flush()
    return tmp_path / RUN / "metrics.rank00000.main.parquet"


def test_a_shard_as_recorded_is_removed(tmp_path):
    p = _shard(tmp_path, 1.0)
    recorded = {tmp_path / "x.compact.parquet": {p.name: layout.signature(p)}}
    assert compact._remove_loose([p], recorded) == 1 and not p.exists()


def test_a_shard_rewritten_since_it_was_recorded_stays(tmp_path):
    p = _shard(tmp_path, 1.0)
    recorded = {tmp_path / "x.compact.parquet": {p.name: layout.signature(p)}}
    size, mtime_ns = layout.signature(p)
    _shard(tmp_path, 2.0)
    os.utime(p, ns=(mtime_ns + 10**9, mtime_ns + 10**9))  # a later write (same size: the value only changed)
    assert compact._remove_loose([p], recorded) == 0 and p.exists()
    assert load([tmp_path / RUN]).metrics["value"].tolist() == [2.0]


def test_a_shard_the_compaction_did_not_record_stays(tmp_path):
    p = _shard(tmp_path, 1.0)
    assert compact._remove_loose([p], {tmp_path / "x.compact.parquet": {}}) == 0 and p.exists()
