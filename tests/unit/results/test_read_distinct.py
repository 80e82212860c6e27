"""store.load's `distinct` read: a table as the set of its distinct rows, reduced while read (loose
batches, compacted row groups, both), is exactly the full read's distinct rows in the order they
first occur; a bad file is still named and left out whole; `aifbench runs`' summary from it is
the summary from the full read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aifbench.analysis import runs as run_info
from aifbench.results import read
from aifbench.results.compact import compact
from aifbench.results.store import ShardWriter, load
from tests.unit.results.test_boundaries_read import _edit
from tests.unit.results.test_schema import metric_row

REPO = Path(__file__).resolve().parents[3]
SEED = REPO / "results" / "reference" / "20261204T182739Z-gpu-kernels-f495fd"  # the real H200 run, shipped

RUN = "20260105T120000Z-distinct-0000d1"
COLUMNS = {"metrics": ["case_id", "rank", "status", "world_size"]}


def _write(root: Path, ranks: range) -> None:
    """Per rank 3 cases x 2 metrics (the same (case, rank, status) twice), case c2 failed on odd ranks."""
    for rank in ranks:
        w = ShardWriter(root, RUN, rank=rank)
        rows = []
        for i in range(3):
            failed = i == 2 and rank % 2
            for metric in ("tflops", "time_s"):
                rows.append(metric_row(run_id=RUN, rank=rank, case_id=f"c{i}", metric=metric, world_size=64,
                                       unit="TFLOP/s" if metric == "tflops" else "s",
                                       status="failed" if failed else "ok", value=None if failed else 1.0 + rank,
                                       reason="boom" if failed else ""))
        w.add("metrics", rows)
        w.flush()


def _rows(df: pd.DataFrame) -> list[tuple]:
    return list(df[COLUMNS["metrics"]].astype(str).itertuples(index=False, name=None))


def _same_as_full(root: Path) -> pd.DataFrame:
    got = load([root / RUN], tables=("metrics",), columns=COLUMNS, categorical=True, distinct=("metrics",))
    full = load([root / RUN], tables=("metrics",), columns=COLUMNS, categorical=True)
    assert _rows(got.metrics) == _rows(full.metrics.drop_duplicates(COLUMNS["metrics"]))
    assert got.skipped == full.skipped
    return got.metrics


def test_loose_batches_reduced_while_read(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "LOOSE_BATCH", 8)  # several batches, as 10^5 shards make
    _write(tmp_path, range(30))
    got = _same_as_full(tmp_path)
    assert len(got) == 30 * 3  # 180 rows read, one per (case, rank, status)


@pytest.mark.parametrize("scanned", [True, False], ids=["run-file-scanned", "node-file-read-whole"])
def test_compacted_and_loose_files(tmp_path, monkeypatch, scanned):
    if scanned:  # the run's large file path: row groups scanned, reduced DISTINCT_ROWS at a time
        monkeypatch.setattr(read, "SMALL_COMPACTED", 0)
        monkeypatch.setattr(read, "DISTINCT_ROWS", 16)
    _write(tmp_path, range(20))
    compact(tmp_path / RUN)
    _write(tmp_path, range(20, 26))  # ranks writing after the compaction: loose again
    got = _same_as_full(tmp_path)
    assert len(got) == 26 * 3 and sorted(set(got["rank"])) == list(range(26))


def test_a_bad_shard_is_named_and_left_out_whole(tmp_path):
    _write(tmp_path, range(4))
    shard = tmp_path / RUN / "metrics.rank00001.main.parquet"
    _edit(shard, "run_id", ["another-run"] * 6)  # made another run's: the file breaks this run's rules
    got = _same_as_full(tmp_path)
    assert 1 not in set(got["rank"])
    res = load([tmp_path / RUN], tables=("metrics",), columns=COLUMNS, distinct=("metrics",))
    assert [p.name for p, _ in res.skipped] == [shard.name]


@pytest.mark.skipif(not SEED.is_dir(), reason="the shipped H200 reference run is missing")
@pytest.mark.parametrize("state", ["loose", "compacted"])
def test_runs_summary_from_distinct_rows_is_the_summary_from_all_rows(tmp_path, state):
    """The real 21-case H200 run replicated to 24 ranks (runs rows and metrics), loose or
    compacted: the same line as from every row (ok, 24 ranks, 21 cases), from a fifth of the rows."""
    extra = ["--compacted"] if state == "compacted" else []
    subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / "gen_ranks.py"), str(SEED), str(tmp_path),
                    "--ranks", "24", "--tables", "metrics,runs", "--jobs", "1", *extra], check=True, capture_output=True)
    full = load(sorted(p for p in tmp_path.rglob("*.parquet")), tables=("runs", "metrics"),
                columns=run_info.SUMMARY_COLUMNS, categorical=True)
    lean = run_info.load_store(tmp_path)
    assert len(lean.metrics) < len(full.metrics) / 5
    pd.testing.assert_frame_equal(run_info.summary(lean), run_info.summary(full))
    s = run_info.summary(lean).iloc[0]
    assert (s["status"], s["ranks"], s["cases"], s["ok"]) == ("ok", 24, 21, 21)
