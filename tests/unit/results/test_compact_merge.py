"""What a merge writes. Compaction copies text columns as dictionary codes
(read.read_table(encoded=True)): every value comes back as it was written (nulls apart from "",
any text), through node files and the run's merge; the bad-row rules judge codes as they judge
texts. The merged rows follow their ranks whatever the node files' names, and import still finds
each file's ranks from its statistics."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifbench.analysis import exchange
from aifbench.results import compact, layout, read, store
from aifbench.results.store import ShardWriter

from tests.unit.results.test_schema import metric_row

RUN = "20260105T120000Z-codes-00000c"
TEXTS = ["", "plain", "ünïcødé · 🙂", "comma, and \"quotes\"", "x" * 300]


def _write(root, ranks: range) -> None:
    """Metrics shards whose optional texts run through TEXTS, with nulls and a failed case."""
    for rank in ranks:
        rows = []
        for i, text in enumerate(TEXTS):
            rows.append(metric_row(run_id=RUN, rank=rank, stat=f"p{i}", detail=text,
                                   peak_source=None if (rank + i) % 3 == 0 else text,
                                   flags="" if i % 2 else "throttle:power",
                                   node=f"n{rank // 2}", case_id=f"{i:04d}-gemm-{text[:8]}"))
        rows.append(metric_row(run_id=RUN, rank=rank, stat="median", metric="time_s", unit="s",
                               status="failed", value=math.nan, reason=f"RuntimeError on rank {rank}"))
        w = ShardWriter(root, RUN, rank)
        w.add("metrics", rows)
        w.flush()


def _codec(path) -> str:
    return pq.read_metadata(path).row_group(0).column(0).compression


def _metrics(run_dir) -> pd.DataFrame:
    df = store.load([run_dir]).tables["metrics"]
    return df.sort_values(["rank", "metric", "stat"]).reset_index(drop=True)


def test_node_files_and_the_runs_merge_give_back_every_text_and_null(tmp_path):
    _write(tmp_path, range(8))
    run_dir = tmp_path / RUN
    before = _metrics(run_dir)
    assert before["peak_source"].isna().any() and (before["peak_source"] == "").any()
    for node in range(4):  # node files, as each node's last task writes them
        files = [p for p in run_dir.glob("metrics.rank*.parquet") if int(layout.SHARD_RE.match(p.name)["rank"]) // 2 == node]
        compact.compact(run_dir, files=files, origin={"node": f"n{node}", "step": "test"})
    node_files = list(run_dir.glob("metrics.compact-*.parquet"))
    assert len(node_files) == 4
    assert {_codec(p) for p in node_files} == {"SNAPPY"}  # read once by the merge: cheap to open, as a shard
    pd.testing.assert_frame_equal(before, _metrics(run_dir))
    report = compact.compact(run_dir)  # the node files merged into one
    assert report.kept == {"metrics": 8 * (len(TEXTS) + 1)} and not report.bad
    after = _metrics(run_dir)
    assert {_codec(p) for p in run_dir.glob("metrics.compact-*.parquet")} == {"ZSTD"}  # the run's file: kept
    pd.testing.assert_frame_equal(before, after)
    assert after["peak_source"].isna().sum() == before["peak_source"].isna().sum()


def test_a_merged_file_records_its_ranks_for_import(tmp_path):
    _write(tmp_path, range(3, 9))
    run_dir = tmp_path / RUN
    compact.compact(run_dir)
    (merged,) = run_dir.glob("metrics.compact-*.parquet")
    assert exchange._rank_range(merged) == (3, 8, 6 * (len(TEXTS) + 1))


def test_node_files_merge_in_rank_order(tmp_path):
    _write(tmp_path, range(48))
    run_dir = tmp_path / RUN
    for node in range(24):  # node files named by digest: their names sort in no rank order
        compact.compact(run_dir, files=[run_dir / store.shard_name("metrics", r) for r in (2 * node, 2 * node + 1)])
    names = sorted(run_dir.glob("metrics.compact-*.parquet"))
    firsts = [min(layout.shard_id(n)[0] for n in layout.compact_meta(p)["sources"]) for p in names]
    assert firsts != sorted(firsts)  # the merge must order them itself
    compact.compact(run_dir, batch=5)
    (merged,) = run_dir.glob("metrics.compact-*.parquet")
    ranks = pq.read_table(merged, columns=["rank"])["rank"].to_pylist()
    assert ranks == sorted(ranks) and len(set(ranks)) == 48


def _plain_and_coded(rows: list[dict]) -> tuple[pa.Table, pa.Table]:
    """The rows as a plain read gives them, and as an encoded read does (every text a code)."""
    def typed(encoded: bool) -> pa.Schema:
        return pa.schema([read.arrow_schema("metrics", encoded=encoded).field(k) for k in rows[0]])
    plain = pa.Table.from_pylist(rows).cast(typed(False))
    return plain, plain.cast(typed(True))


@pytest.mark.parametrize("over", [
    {}, {"run_id": "another-run"}, {"status": "done"}, {"status": None}, {"value": None},
    {"value": -1.0}, {"value": -1.0, "metric": "harness_overhead_pct"}, {"value": -1.0, "stat": "ci_low"},
    {"metric": None}, {"stat": None}, {"value": math.inf}, {"status": "failed", "value": None},
])
def test_bad_row_rules_judge_codes_as_texts(over):
    rows = [metric_row(run_id=RUN), metric_row(**{"run_id": RUN, **over}), metric_row(run_id=RUN, stat="p95")]
    plain, coded = _plain_and_coded(rows)
    assert pa.types.is_dictionary(coded.schema.field("run_id").type)
    want = read._bad_rows(plain, "metrics", RUN).to_pylist()
    assert read._bad_rows(coded, "metrics", RUN).to_pylist() == want
    assert want[0] is False and want[2] is False
