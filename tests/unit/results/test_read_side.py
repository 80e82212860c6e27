"""One pass over a run's files serves two views of a table (store.load's `side`): the second view
holds exactly what a read of its own returns, from loose shards, a compacted file and both;
a bad shard is named once and left out of both views. Shards are decoded by several threads:
the rows and their order are those of the files, sorted. find_shards lists what rglob lists."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from aifbench.results import read, store
from aifbench.results.compact import compact
from aifbench.results.store import ShardWriter, load
from tests.unit.results.test_schema import metric_row

RUN = "20260105T120000Z-side-0000d1"
SIDE = {"metrics": (["run_id", "case_id", "rank", "metric", "detail"], ds.field("metric") == "throttle_pct")}
MAIN = {"metrics": ["case_id", "rank", "metric", "value", "status"]}
FILTER = {"metrics": ds.field("metric") == "tflops"}


def _write(root: Path, ranks: range) -> None:
    for rank in ranks:
        w = ShardWriter(root, RUN, rank=rank)
        w.add("metrics", [metric_row(run_id=RUN, rank=rank, case_id=f"c{i}", value=float(rank + i + 1))
                          for i in range(3)]
              + [metric_row(run_id=RUN, rank=rank, case_id=f"c{i}", metric="throttle_pct", unit="%", value=0.0,
                            detail=f"reasons=SwPowerCap r{rank}") for i in range(3)])
        w.flush()


def _alone(root: Path) -> pd.DataFrame:
    cols, flt = SIDE["metrics"]
    return load([root / RUN], tables=("metrics",), columns={"metrics": cols}, filters={"metrics": flt}).metrics


def _check(root: Path) -> store.Results:
    res = load([root / RUN], tables=("metrics",), columns=MAIN, filters=FILTER, side=SIDE)
    alone = _alone(root)
    pd.testing.assert_frame_equal(res.side["metrics"], alone)
    main = load([root / RUN], tables=("metrics",), columns=MAIN, filters=FILTER).metrics
    pd.testing.assert_frame_equal(res.metrics, main)
    return res


def test_side_view_of_loose_shards_is_a_read_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "LOOSE_BATCH", 8)  # several batches of threads, as 10^5 shards make
    _write(tmp_path, range(30))
    res = _check(tmp_path)
    assert len(res.side["metrics"]) == 90 and set(res.side["metrics"]["metric"]) == {"throttle_pct"}
    assert list(res.side["metrics"]["rank"]) == [r for r in range(30) for _ in range(3)]  # the files' order
    assert list(res.metrics["rank"]) == [r for r in range(30) for _ in range(3)]


def test_side_view_of_compacted_and_loose_files(tmp_path):
    _write(tmp_path, range(4))
    compact(tmp_path / RUN)
    _write(tmp_path, range(4, 6))  # ranks writing after the compaction: loose again
    res = _check(tmp_path)
    assert sorted(set(res.side["metrics"]["rank"])) == list(range(6))


def test_a_bad_shard_is_named_once_and_left_out_of_both_views(tmp_path):
    _write(tmp_path, range(3))
    shard = tmp_path / RUN / "metrics.rank00001.main.parquet"
    t = pq.read_table(shard)
    i = t.schema.get_field_index("run_id")
    pq.write_table(t.set_column(i, "run_id", pa.array(["another-run"] * t.num_rows, t.schema.field(i).type)), shard)
    res = _check(tmp_path)
    assert 1 not in set(res.side["metrics"]["rank"]) and 1 not in set(res.metrics["rank"])
    assert [p.name for p, _ in res.skipped] == [shard.name]


def test_side_view_of_a_table_without_files_is_empty_with_its_columns(tmp_path):
    _write(tmp_path, range(2))
    res = load([tmp_path / RUN], tables=("runs",), side={"runs": (["rank"], None)})
    assert len(res.side["runs"]) == 0 and {"rank", "run_id"} <= set(res.side["runs"].columns)


def test_find_shards_lists_what_rglob_lists_in_path_order(tmp_path):
    for run in ("a", "a-b", "a.b"):
        (tmp_path / run / "sub").mkdir(parents=True)
        for name in ("metrics.rank00000.main.parquet", ".hidden.parquet", "notes.txt"):
            (tmp_path / run / name).write_bytes(b"")
        (tmp_path / run / "sub" / "runs.rank00001.main.parquet").write_bytes(b"")
    want = sorted(q for q in tmp_path.rglob("*.parquet") if not q.name.startswith("."))
    assert store.find_shards([tmp_path]) == want and len(want) == 6


def _rows_in_child(root: str) -> int:
    return len(load([Path(root) / RUN], tables=("metrics",)).metrics)


def test_reader_threads_are_made_again_in_a_forked_child(tmp_path):
    """A process forked after a read (node-level compaction's workers) inherits no threads: it
    makes its own pool and reads the same rows."""
    import multiprocessing

    _write(tmp_path, range(12))
    assert len(load([tmp_path / RUN], tables=("metrics",)).metrics) == 72  # the parent's pool exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_rows_in_child, (str(tmp_path),)).get(timeout=120) == 72


def test_the_public_parquet_wrapper_reads_what_the_direct_reader_reads(tmp_path, monkeypatch):
    """Where pyarrow has no direct reader class, ParquetFile reads the same rows (and a shard
    lacking a column reads it as empty either way)."""
    _write(tmp_path, range(3))
    t = pq.read_table(tmp_path / RUN / "metrics.rank00002.main.parquet")
    pq.write_table(t.drop_columns(["detail"]), tmp_path / RUN / "metrics.rank00002.main.parquet")
    direct = load([tmp_path / RUN], tables=("metrics",))
    monkeypatch.setattr(read, "_Reader", None)
    public = load([tmp_path / RUN], tables=("metrics",))
    pd.testing.assert_frame_equal(direct.metrics, public.metrics)
    assert direct.metrics["detail"].isna().sum() == 6 and direct.skipped == public.skipped == []
