"""results/read.py on its boundaries: a shard of an older or a newer schema version is not read as
the current one; a shard with one bad row among good ones is skipped whole (not half counted);
each is named with why. Shards written with the real ShardWriter, then edited with pyarrow."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifbench import SCHEMA_VERSION
from aifbench.results.store import ShardWriter, load
from tests.unit.results.test_schema import metric_row

RUN = "20260105T120000Z-read-0000d1"


def _store(tmp_path):
    for rank in (0, 1):
        w = ShardWriter(tmp_path, RUN, rank=rank)
        w.add("metrics", [metric_row(run_id=RUN, rank=rank, case_id=f"c{i}", value=float(i + 1)) for i in range(3)])
        w.flush()
    return tmp_path / RUN / "metrics.rank00001.main.parquet"


def _edit(path, column: str, values: list) -> None:
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.schema.get_field_index(column), column, pa.array(values, t.schema.field(column).type)), path)


@pytest.mark.parametrize("version, why", [
    (0, f"schema version 0: no migration to version {SCHEMA_VERSION}"),  # v1 is read (test_schema.py)
    (SCHEMA_VERSION + 1, f"schema version {SCHEMA_VERSION + 1} is newer than this aifbench reads ({SCHEMA_VERSION})"),
])
def test_another_schema_version_is_not_read_as_current(tmp_path, version, why):
    shard = _store(tmp_path)
    _edit(shard, "schema_version", [version] * 3)
    res = load([tmp_path / RUN])
    assert sorted(res.metrics["rank"]) == [0, 0, 0]  # rank 1's 3 rows not counted
    assert [(p.name, w.split(";")[0]) for p, w in res.skipped] == [(shard.name, why)]


def test_one_bad_row_skips_its_whole_file(tmp_path):
    """Rank 1's shard: rows c0 c1 fine, c2 status ok with no value: the file is damaged, none of
    its 3 rows are counted (not the 2 good ones)."""
    shard = _store(tmp_path)
    _edit(shard, "value", [1.0, 2.0, None])
    res = load([tmp_path / RUN])
    assert sorted(res.metrics["rank"]) == [0, 0, 0]
    assert [p.name for p, _ in res.skipped] == [shard.name]
    assert res.skipped[0][1] .endswith(f"breaks schema v{SCHEMA_VERSION}")


def test_the_current_version_is_read_whole(tmp_path):
    _store(tmp_path)
    res = load([tmp_path / RUN])
    assert sorted(res.metrics["rank"]) == [0, 0, 0, 1, 1, 1] and res.skipped == []
