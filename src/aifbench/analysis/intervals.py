"""Judging a reference on a confidence interval (A/B metrics, aifbench.ab), not on a point.

A metric measured by the A/B protocol is stored as stat `mean` with stats `ci_low` and
`ci_high` (its 95 % interval) in the same case and rank. A reference's band [lower, upper]
(fraction_of_peak x peak raises lower) then judges the interval:
  pass          the whole interval lies inside the band
  fail          the whole interval lies outside it
  inconclusive  it straddles a bound: the run cannot say (not a pass: validate is not PASS)
Rows without interval bounds are judged on their value as before (validate._bound_failures).
"""

from __future__ import annotations

import math
from typing import Callable

import pandas as pd

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
CI_STATS = ("ci_low", "ci_high")
_KEY = ["run_id", "case_id", "rank", "node", "metric"]


def judge(low: float, high: float, lower: float | None, upper: float | None) -> str:
    """pass / fail / inconclusive of the interval [low, high] against the band [lower, upper]."""
    lo_b = -math.inf if lower is None else lower
    hi_b = math.inf if upper is None else upper
    if lo_b <= low and high <= hi_b:
        return PASS
    if high < lo_b or low > hi_b:
        return FAIL
    return INCONCLUSIVE


def bounds_of(rows: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame | None:
    """`rows` with ci_low / ci_high columns from the same run, case, rank, node and metric, or
    None when any of them has no interval stored (then the point is judged)."""
    ci = metrics[metrics["stat"].isin(CI_STATS) & (metrics["status"] == "ok")]
    if not len(ci) or not len(rows):
        return None
    wide = ci.pivot_table(index=_KEY, columns="stat", values="value", aggfunc="first")
    if not set(CI_STATS) <= set(wide.columns):
        return None
    out = rows.join(wide[list(CI_STATS)], on=_KEY)
    return None if out[list(CI_STATS)].isna().any().any() else out


def band(lower: float | None, upper: float | None, fraction_of_peak: float | None,
         peak: float | None) -> tuple[float | None, float | None]:
    """The reference's band for one row: fraction_of_peak x peak raises the lower bound."""
    if fraction_of_peak is not None and peak is not None and not pd.isna(peak) and peak:
        f_low = fraction_of_peak * float(peak)
        lower = f_low if lower is None else max(lower, f_low)
    return lower, upper


def judge_rows(rows: pd.DataFrame, lower: float | None, upper: float | None, fraction_of_peak: float | None,
               where: Callable[[object], str]) -> tuple[str, str]:
    """(status, message) of every row's interval (rows from bounds_of); the worst status wins:
    fail, then inconclusive, then pass."""
    texts: dict[str, list[str]] = {PASS: [], FAIL: [], INCONCLUSIVE: []}
    for r in rows.itertuples(index=False):
        lo_b, hi_b = band(lower, upper, fraction_of_peak, r.peak)
        ends = (float(r.value), float(r.ci_low), float(r.ci_high))
        status = judge(*ends[1:], lo_b, hi_b) if all(map(math.isfinite, ends)) else FAIL  # never a non-finite PASS
        texts[status].append(f"{where(r)} {float(r.value):.4g} {r.unit}, 95 % interval "
                             f"[{float(r.ci_low):.4g}, {float(r.ci_high):.4g}] vs band "
                             f"[{'-inf' if lo_b is None else f'{lo_b:g}'}, {'inf' if hi_b is None else f'{hi_b:g}'}]")
    n = len(rows)
    if texts[FAIL]:
        return FAIL, f"{len(texts[FAIL])} of {n} interval(s) wholly outside the band: " + "; ".join(texts[FAIL])
    if texts[INCONCLUSIVE]:
        return INCONCLUSIVE, (f"{len(texts[INCONCLUSIVE])} of {n} interval(s) straddle a bound (neither pass "
                              "nor fail; rerun with more A/B rounds): " + "; ".join(texts[INCONCLUSIVE]))
    return PASS, f"{n} interval(s) wholly inside the band: " + "; ".join(texts[PASS])
