"""A run's compacted file scanned for analysis (text columns as dictionaries, int16 indices per
batch where they fit, else int32 in every batch of that column) gives the frame the whole-file
read gives, alone and beside loose shards written after it; the run id, statistic and status
come as categories."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from aifbench.analysis import data
from aifbench.results import read
from aifbench.results.compact import compact
from aifbench.results.store import ShardWriter, load
from tests.unit.results.test_schema import metric_row

RUN = "20260105T120000Z-narrow-0000d1"


def _write(root: Path, ranks: range) -> None:
    for rank in ranks:
        w = ShardWriter(root, RUN, rank=rank)
        w.add("metrics", [metric_row(run_id=RUN, rank=rank, case_id=f"c{i}", value=float(rank + i + 1),
                                     node=f"node{rank // 4:03d}", stat=stat, flags="noisy" if rank == 5 else "")
                          for i in range(3) for stat in ("median", "mean")])
        w.flush()


def _read(root: Path) -> pd.DataFrame:
    cols = {"metrics": data.analysis_columns("metrics")}
    df = load([root / RUN], tables=("metrics",), columns=cols, categorical=True,
              filters={"metrics": data.analysis_filter()}).metrics
    assert all(isinstance(df[c].dtype, pd.CategoricalDtype) for c in ("run_id", "stat", "status", "node"))
    return df.astype(str)


@pytest.mark.parametrize("narrow_max", [read.NARROW_MAX, 2], ids=["int16", "int32-fallback"])
@pytest.mark.parametrize("loose_after", [False, True])
def test_scanned_compacted_file_reads_as_the_whole_file_read(tmp_path, monkeypatch, narrow_max, loose_after):
    from aifbench.results import compact as compaction

    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 32)  # batches of 2 or 3 nodes: mixed index types at narrow_max 2
    _write(tmp_path, range(40))
    compact(tmp_path / RUN)
    if loose_after:
        _write(tmp_path, range(40, 44))  # ranks writing after the compaction: loose again
    whole = _read(tmp_path)  # a small compacted file: read whole, as node files are
    monkeypatch.setattr(read, "SMALL_COMPACTED", 0)  # as a run's large file: scanned batch by batch
    monkeypatch.setattr(read, "NARROW_MAX", narrow_max)  # 2: node (10 distinct) needs int32 in every batch
    pd.testing.assert_frame_equal(_read(tmp_path), whole)
    assert len(whole) == (44 if loose_after else 40) * 6
