"""Analysis steps that work once per distinct value give what the row-by-row rule gives: device
indices (plain and categorical columns, missing values), throttle reasons per (case, rank) (the
last row wins), devices per node (ranks or the GPUs the node reported, whichever is more)."""

from __future__ import annotations

import re

import pandas as pd

from aifbench.analysis.compare import devices_per_node
from aifbench.analysis.legacy import reasons, reasons_seen
from aifbench.analysis.outliers import gpu_index

DEVICES = ["cuda:3", "cpu", None, "cuda:10", "cuda:3", "cuda:x", "mps:0"]


def _row_by_row(device: pd.Series) -> list:
    out = []
    for d in device:
        m = None if pd.isna(d) else re.search(r"cuda:(\d+)$", str(d))
        out.append(int(m.group(1)) if m else pd.NA)
    return out


def test_gpu_index_of_plain_and_categorical_columns():
    for device in (pd.Series(DEVICES, dtype=object), pd.Series(DEVICES, dtype="string"),
                   pd.Series(DEVICES).astype("category")):
        got = gpu_index(device)
        assert got.dtype == "Int64" and list(got.index) == list(device.index)
        assert [None if pd.isna(v) else int(v) for v in got] == \
               [None if v is pd.NA else v for v in _row_by_row(device)]


def test_gpu_index_keeps_the_index_of_a_selection():
    device = pd.Series(DEVICES, index=range(10, 17)).astype("category")
    assert list(gpu_index(device[device.notna()]).index) == [10, 11, 13, 14, 15, 16]


def test_reasons_seen_per_case_and_rank_last_row_wins():
    rows = pd.DataFrame({"case_id": ["c1", "c1", "c2", "c2", "c3"], "rank": [0, 0, 0, 1, 0],
                         "metric": ["throttle_pct", "throttle_pct", "throttle_pct", "tflops", "throttle_pct"],
                         "detail": ["reasons=HwSlowdown", "reasons=SwPowerCap", None, "reasons=X", "reasons=none"]})
    rows["detail"] = rows["detail"].astype("string")
    assert reasons_seen(rows) == {("c1", 0): {"SwPowerCap"}, ("c2", 0): None, ("c3", 0): set()}
    assert reasons("reasons=SwPowerCap,HwSlowdown") == {"SwPowerCap", "HwSlowdown"}


def test_devices_per_node_is_ranks_or_reported_gpus():
    runs = pd.DataFrame({"run_id": ["r"] * 5 + ["s"], "node": ["n1", "n1", "n1", "n2", "n2", "n1"],
                         "rank": [0, 1, 1, 2, 3, 0], "gpu_count": pd.array([4, None, 4, None, None, None], "Int64")})
    assert devices_per_node(runs) == {("r", "n1"): 4, ("r", "n2"): 2, ("s", "n1"): 1}
    assert devices_per_node(runs.iloc[:0]) == {}
