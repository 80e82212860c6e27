"""analysis/legacy.py on both sides of every boundary: the recorded limit against the datasheet
TDP with its 1 W tolerance (on the TDP, 0.5 W below, exactly 1 W below, above), the reasons
(SwPowerCap alone, with another, none, not recorded), the reasons of the flagged row's own case
and rank, and a run without legacy flags left as it is."""

from __future__ import annotations

import pandas as pd
import pytest

from aifbench.analysis import legacy


@pytest.mark.parametrize("limit, capped", [
    (700.0, True),     # on the TDP
    (750.0, True),     # raised above it
    (699.5, True),     # 0.5 W below: closer than 1 W, equal
    (699.0, False),    # exactly 1 W below: a lowered limit (as validity.power_state says)
    (600.0, False),
])
def test_limit_against_tdp_with_its_tolerance(limit, capped):
    assert legacy.capped_at_default({"SwPowerCap"}, limit, 700.0) is capped


@pytest.mark.parametrize("seen, capped", [
    ({"SwPowerCap"}, True),
    (set(), True),                                        # no reason listed: nothing to invalidate
    ({"SwPowerCap", "HwPowerBrakeSlowdown"}, False),      # a power brake beside it: not told apart
    ({"SwThermalSlowdown"}, False),
    (None, False),                                        # reasons not recorded
])
def test_only_swpowercap_may_be_seen(seen, capped):
    assert legacy.capped_at_default(seen, 700.0, 700.0) is capped


def test_an_unknown_limit_or_tdp_is_not_judged():
    assert not legacy.capped_at_default({"SwPowerCap"}, None, 700.0)
    assert not legacy.capped_at_default({"SwPowerCap"}, 700.0, None)


def test_parsers_on_their_edges():
    assert legacy.limit_w("nvml: X (index 0, power limit 699.5 W; matched)") == 699.5
    assert legacy.limit_w(None) is None and legacy.limit_w(float("nan")) is None
    assert legacy.reasons("throttle reasons=SwPowerCap,none") == {"SwPowerCap"}
    assert legacy.reasons(None) is None


RUNS = pd.DataFrame({"rank": [0, 1], "node": ["n1", "n2"],
                     "telemetry": ["nvml: H200 (index 0, power limit 700 W; matched)",
                                   "nvml: H200 (index 0, power limit 699 W; matched)"]})
TDP = {(0, "n1"): 700.0, (1, "n2"): 700.0}


def _rows(reasons: dict[tuple[str, int], str]) -> pd.DataFrame:
    out = []
    for (case, rank), why in reasons.items():
        node = "n1" if rank == 0 else "n2"
        out.append(dict(case_id=case, rank=rank, node=node, metric="tflops", flags="power_throttle", detail=""))
        out.append(dict(case_id=case, rank=rank, node=node, metric="throttle_pct", flags="power_throttle",
                        detail=f"reasons={why}"))
    return pd.DataFrame(out)


def _tflops_flags(df: pd.DataFrame) -> dict[tuple[str, int], str]:
    t = df[df["metric"] == "tflops"]
    return {(c, r): f for c, r, f in zip(t["case_id"], t["rank"], t["flags"])}


def test_each_row_is_judged_on_its_own_case_and_rank():
    """Rank 0 (700 W of 700): case a saw SwPowerCap alone -> note; case b saw a power brake -> stays.
    Rank 1 (699 W, 1 W below the TDP): SwPowerCap alone but a lowered limit -> stays."""
    df = _rows({("a", 0): "SwPowerCap", ("b", 0): "SwPowerCap,HwPowerBrakeSlowdown", ("a", 1): "SwPowerCap"})
    assert _tflops_flags(legacy.translate(df, RUNS, TDP)) == {
        ("a", 0): "power_capped_legacy", ("b", 0): "power_throttle", ("a", 1): "power_throttle"}


def test_categorical_columns_as_analysis_reads_them_give_the_same_flags():
    """load_analysis holds text columns as categories: the flags are remapped by their codes, a
    row's text the same as from plain texts, the column still a sorted categorical, other flags
    texts (one beside the legacy flag, one without it) kept."""
    from aifbench.analysis.data import categorical

    df = _rows({("a", 0): "SwPowerCap", ("b", 0): "SwPowerCap,HwPowerBrakeSlowdown", ("a", 1): "SwPowerCap"})
    df.loc[0, "flags"] = "noisy,power_throttle"
    df = pd.concat([df, df.iloc[[0]].assign(case_id="c", flags="")], ignore_index=True)
    plain = legacy.translate(df, RUNS, TDP)
    cat = legacy.translate(categorical(df.copy()), RUNS, TDP)
    assert isinstance(cat["flags"].dtype, pd.CategoricalDtype)
    assert list(cat["flags"].cat.categories) == sorted(cat["flags"].cat.categories)
    assert cat["flags"].astype(str).tolist() == plain["flags"].astype(str).tolist()
    assert plain["flags"].tolist()[0] == "noisy,power_capped_legacy" and plain["flags"].tolist()[-1] == ""
    assert df["flags"].tolist()[0] == "noisy,power_throttle"  # the caller's frame is not changed


def test_the_reasons_passed_in_win_over_the_rows_own():
    df = _rows({("a", 0): "SwPowerCap"})
    seen = {("a", 0): {"SwPowerCap", "HwSlowdown"}}
    assert _tflops_flags(legacy.translate(df, RUNS, TDP, seen)) == {("a", 0): "power_throttle"}


def test_a_run_without_the_legacy_flag_is_returned_unchanged():
    df = pd.DataFrame([dict(case_id="a", rank=0, node="n1", metric="tflops", flags="", detail="")])
    assert legacy.translate(df, RUNS, TDP) is df
    assert not legacy.has_legacy_flags(df.iloc[0:0])


def test_reasons_with_an_empty_entry_are_swpowercap_alone():
    assert legacy.reasons("reasons=SwPowerCap,") == {"SwPowerCap"}
    assert legacy.reasons("reasons=,none") == set()


def test_read_reasons_of_a_stored_run_reads_its_throttle_rows(tmp_path):
    """A stored run whose ranks 0 and 1 have a throttle_pct row with its detail (an array task's
    shard beside the run's own): read back per (case, rank); the run's other metrics ignored."""
    import pyarrow.parquet as pq

    from aifbench.results.store import ShardWriter
    from tests._analysis_data import RunSpec, gemm, write_run

    spec = RunSpec(run_id="20260105T120000Z-leg-0000c1", nodes=("n1",), gpus_per_node=2, cases=[gemm(1024)], repeats=3)
    run_dir = write_run(tmp_path, spec)
    for rank, why in ((0, "SwPowerCap"), (1, "SwPowerCap,HwSlowdown")):
        row = pq.read_table(run_dir / f"metrics.rank{rank:05d}.main.parquet").to_pylist()[0]
        w = ShardWriter(tmp_path, spec.run_id, rank, part="a1")
        w.add("metrics", [dict(row, metric="throttle_pct", stat="value", value=10.0, unit="%", peak=None,
                               pct_of_peak=None, peak_source="", detail=f"reasons={why}")])
        w.flush()
    case = row["case_id"]
    assert legacy.read_reasons(run_dir) == {(case, 0): {"SwPowerCap"}, (case, 1): {"SwPowerCap", "HwSlowdown"}}
