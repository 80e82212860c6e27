"""analysis/intervals.py on both sides of every boundary: the band's bounds (inside, on, outside),
NaN, one-sided bands, fraction_of_peak, bounds missing, and the worst status naming its row.
Every expected value is worked out by hand in the test."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from aifbench.analysis import intervals as I


@pytest.mark.parametrize("low, high, status", [
    (10.0, 20.0, "pass"),            # exactly on both bounds: 10 <= 10 and 20 <= 20
    (10.0, 10.0, "pass"),            # a zero-width interval on the lower bound
    (9.999, 15.0, "inconclusive"),   # just below the lower bound, inside above it
    (15.0, 20.001, "inconclusive"),  # just above the upper bound
    (5.0, 10.0, "inconclusive"),     # its high touches the lower bound: not wholly outside
    (5.0, 9.999, "fail"),            # wholly below: 9.999 < 10
    (20.0, 25.0, "inconclusive"),    # its low touches the upper bound
    (20.001, 25.0, "fail"),          # wholly above: 20.001 > 20
    (5.0, 25.0, "inconclusive"),     # straddles both
    (math.nan, math.nan, "inconclusive"),  # no interval is never a pass, nor a fail
    (math.nan, 15.0, "inconclusive"),
])
def test_judge_on_both_sides_of_each_bound(low, high, status):
    assert I.judge(low, high, 10.0, 20.0) == status


def test_one_sided_bands_have_an_open_side():
    assert I.judge(-1e300, 20.0, None, 20.0) == "pass"     # no lower bound: -inf <= anything
    assert I.judge(20.0, 20.5, None, 20.0) == "inconclusive"
    assert I.judge(20.5, 21.0, None, 20.0) == "fail"
    assert I.judge(10.0, 1e300, 10.0, None) == "pass"      # no upper bound
    assert I.judge(9.5, 10.0, 10.0, None) == "inconclusive"
    assert I.judge(9.0, 9.5, 10.0, None) == "fail"
    assert I.judge(-5.0, 5.0, None, None) == "pass"        # no band at all


@pytest.mark.parametrize("lower, fraction, peak, expected", [
    (10.0, 0.5, 30.0, 15.0),   # 0.5 x 30 = 15 > 10: the fraction raises the lower bound
    (20.0, 0.5, 30.0, 20.0),   # 15 < 20: the stricter own bound stays
    (None, 0.5, 30.0, 15.0),   # no own bound: 15
    (10.0, 0.5, math.nan, 10.0),  # no peak recorded: unchanged
    (10.0, 0.5, None, 10.0),
    (10.0, 0.5, 0.0, 10.0),    # a zero peak is no peak
    (10.0, None, 30.0, 10.0),  # no fraction
])
def test_band_fraction_of_peak_only_raises_the_lower_bound(lower, fraction, peak, expected):
    assert I.band(lower, 40.0, fraction, peak) == (expected, 40.0)


def _rows(*intervals: tuple[int, float, float]) -> pd.DataFrame:
    return pd.DataFrame([{"rank": r, "value": (lo + hi) / 2, "unit": "%", "peak": math.nan, "ci_low": lo, "ci_high": hi}
                         for r, lo, hi in intervals])


def where(r) -> str:
    return f"rank {r.rank}"


def test_a_fail_beside_an_inconclusive_is_a_fail_naming_the_failing_rank():
    """rank 0 straddles 3 (inconclusive), rank 1 lies wholly above 3 (fail), rank 2 inside."""
    status, msg = I.judge_rows(_rows((0, 2.0, 4.0), (1, 3.5, 5.0), (2, -1.0, 1.0)), -3.0, 3.0, None, where)
    assert status == "fail"
    assert msg.startswith("1 of 3 interval(s) wholly outside the band: rank 1 4.25 %")
    assert "rank 0" not in msg and "rank 2" not in msg
    assert "[3.5, 5] vs band [-3, 3]" in msg


def test_an_inconclusive_beside_passes_is_inconclusive_naming_its_rank():
    status, msg = I.judge_rows(_rows((0, -1.0, 1.0), (1, 2.0, 3.0), (2, 2.5, 3.01)), -3.0, 3.0, None, where)
    assert status == "inconclusive"  # rank 1 ends exactly on 3 (inside); rank 2 at 3.01 (straddles)
    assert msg.startswith("1 of 3 interval(s) straddle a bound") and "rank 2 2.755 %" in msg
    assert "rank 1" not in msg


def test_all_inside_is_a_pass_listing_every_row():
    status, msg = I.judge_rows(_rows((0, -3.0, 3.0), (1, 0.0, 0.0)), -3.0, 3.0, None, where)
    assert status == "pass" and msg.startswith("2 interval(s) wholly inside the band: rank 0 0 %")
    assert "rank 1" in msg


def test_judge_rows_uses_each_rows_own_peak():
    """fraction 0.5 of peak: rank 0 (peak 30) gets lower 15; rank 1 (peak 10) keeps its lower 10."""
    rows = pd.DataFrame([{"rank": 0, "value": 14.0, "unit": "x", "peak": 30.0, "ci_low": 13.0, "ci_high": 14.5},
                         {"rank": 1, "value": 14.0, "unit": "x", "peak": 10.0, "ci_low": 13.0, "ci_high": 14.5}])
    status, msg = I.judge_rows(rows, 10.0, None, 0.5, where)
    assert status == "fail" and msg.startswith("1 of 2 interval(s) wholly outside the band: rank 0 14 x")
    assert "vs band [15, inf]" in msg and "rank 1" not in msg


def _metrics(stats_per_rank: dict[int, dict[str, float]], status: str = "ok") -> pd.DataFrame:
    return pd.DataFrame([{"run_id": "r", "case_id": "c", "rank": rank, "node": "n", "metric": "m", "stat": st,
                          "value": v, "status": status}
                         for rank, stats in stats_per_rank.items() for st, v in stats.items()])


def test_bounds_of_joins_the_interval_of_the_same_rank():
    m = _metrics({0: {"mean": 1.0, "ci_low": 0.5, "ci_high": 1.5}, 1: {"mean": 2.0, "ci_low": 1.8, "ci_high": 2.1}})
    rows = m[m["stat"] == "mean"]
    out = I.bounds_of(rows, m)
    assert out is not None
    assert out.set_index("rank")[["ci_low", "ci_high"]].to_dict("index") == {
        0: {"ci_low": 0.5, "ci_high": 1.5}, 1: {"ci_low": 1.8, "ci_high": 2.1}}


@pytest.mark.parametrize("stats", [
    {0: {"mean": 1.0, "ci_low": 0.5, "ci_high": 1.5}, 1: {"mean": 2.0}},           # rank 1 has no interval
    {0: {"mean": 1.0, "ci_low": 0.5}, 1: {"mean": 2.0, "ci_low": 1.8}},            # no ci_high at all
    {0: {"mean": 1.0}, 1: {"mean": 2.0}},                                          # no interval stored
])
def test_bounds_of_is_none_when_any_row_lacks_its_interval(stats):
    m = _metrics(stats)
    assert I.bounds_of(m[m["stat"] == "mean"], m) is None


def test_bounds_of_ignores_failed_interval_rows_and_empty_selections():
    m = _metrics({0: {"mean": 1.0, "ci_low": 0.5, "ci_high": 1.5}}, status="failed")
    assert I.bounds_of(m[m["stat"] == "mean"], m) is None
    ok = _metrics({0: {"mean": 1.0, "ci_low": 0.5, "ci_high": 1.5}})
    assert I.bounds_of(ok.iloc[0:0], ok) is None
