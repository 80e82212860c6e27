"""Analysis steps that work once per distinct value give what the row-by-row rule gives: device
indices (plain and categorical columns, missing values), throttle reasons per (case, rank) (the
last row wins), devices per node (ranks or the GPUs the node reported, whichever is more), texts
from category codes, a function per distinct value, a run summary kept while its tables stay."""

from __future__ import annotations

import re

import pandas as pd

from aifbench.analysis.compare import devices_per_node
from aifbench.analysis.data import per_distinct, text_values
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


TEXTS = ["b", "a", None, "b", "c"]


def test_text_values_of_plain_and_categorical_columns():
    """A categorical's texts by its codes are what astype(str) gives; with a missing value the
    row-by-row conversion is used (its spelling of a missing value kept)."""
    whole = ["b", "a", "b", "c"]
    for col in (pd.Series(whole, dtype=object), pd.Series(whole, dtype="string"), pd.Series(whole).astype("category")):
        got = text_values(col)
        assert got.dtype == object and list(got) == whole and all(type(v) is str for v in got)
    gaps = pd.Series(TEXTS).astype("category")
    assert list(text_values(gaps)) == list(gaps.astype(str).to_numpy(dtype=object))


def test_per_distinct_calls_once_per_value_and_keeps_the_rows():
    calls = []
    def fn(v):
        calls.append(v)
        return f"<{v}>"
    for col in (pd.Series(TEXTS * 3, dtype=object), pd.Series(TEXTS * 3).astype("category")):
        calls.clear()
        got = per_distinct(col, fn)
        rows = TEXTS * 3
        assert [g for g, v in zip(got, rows) if v is not None] == [f"<{v}>" for v in rows if v is not None]
        assert len({g for g, v in zip(got, rows) if v is None}) == 1  # every missing row: fn of a missing value
        assert len(calls) == 4  # b, a, the missing value, c
    calls.clear()
    cols = [pd.Series(["s", "s", "t", "s", "t"]).astype("category"), pd.Series(["x", "x", "y", "y", "y"], dtype=object),
            pd.Series([1, 1, 2, 2, 2], dtype="Int64")]
    got = per_distinct(cols, lambda k: fn("+".join(map(str, k))))
    assert list(got) == ["<s+x+1>", "<s+x+1>", "<t+y+2>", "<s+y+2>", "<t+y+2>"] and len(calls) == 3


def test_run_summary_is_kept_while_the_tables_are_the_same_frames(tmp_path):
    """report asks summary() up to five times: the second answer is the kept one (a copy), and a
    table replaced since is summarised again."""
    from aifbench.analysis import runs as run_info
    from aifbench.results.store import Results

    runs = pd.DataFrame({"run_id": ["r1"] * 2, "rank": [0, 1], "task": [0, 1], "status": ["ok", "ok"],
                         "world_size": [2, 2], "config": ["{}"] * 2, "suite": ["s"] * 2, "system": ["local"] * 2,
                         "started_utc": pd.to_datetime(["2026-01-01T00:00:00Z"] * 2),
                         "ended_utc": pd.to_datetime(["2026-01-01T00:01:00Z"] * 2), "device_name": ["cpu"] * 2})
    metrics = pd.DataFrame({"run_id": ["r1"] * 2, "case_id": ["c0"] * 2, "rank": [0, 1], "status": ["ok", "ok"],
                            "world_size": [2, 2]})
    res = Results({"runs": runs, "metrics": metrics})
    first = run_info.summary(res)
    first.loc[0, "status"] = "changed by a caller"
    assert run_info.summary(res).loc[0, "status"] == "ok"  # the kept table is not the caller's copy
    res.tables["metrics"] = metrics.assign(status=["ok", "failed"])
    assert run_info.summary(res).loc[0, "status"] == "failed"
