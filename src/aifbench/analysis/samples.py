"""Raw samples behind a metric row, in the metric's own unit.

A metric with samples of its own name (time_s, itl_s) uses them directly. A throughput from
`rate_metrics` (tflops, gbps, tokens_per_s, ...: derivation "from_time" in aifbench.metrics) is
work / median(t) by the dictionary's definition, so its per-repeat values are
rate_i = value * median(t) / t_i — exact, with the same work in every repeat. Which timing t a
rate came from is checked, not assumed: rate_metrics also stores stat max = work / min(t), so
max / median must equal median(t) / min(t) (to 1e-6) for a sampled time of the case; without a
max row only the time bases (role "time_base": time_s, step_time_s) are trusted, and only when
their count equals the row's n_samples. Rank tests (Mann-Whitney) are unchanged by this
monotone map; the bootstrap interval of the median ratio is stated in the metric's unit, so it
needs it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from aifbench import metrics as metric_dict

RATIO_TOLERANCE = 1e-6


class SampleIndex(dict[tuple[str, str, int, str], np.ndarray]):
    """(run_id, case_id, rank, metric) -> samples; `.names[(run_id, case_id, rank)]` the metrics sampled."""

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[tuple[str, str, int], list[str]] = {}

    def add(self, key: tuple[str, str, int, str], values: np.ndarray) -> None:
        self[key] = values
        self.names.setdefault(key[:3], []).append(key[3])


MaxIndex = dict[tuple[str, str, int, str], float]


def index(samples: pd.DataFrame) -> SampleIndex:
    """(run_id, case_id, rank, metric) -> sample values in index order."""
    out = SampleIndex()
    if not len(samples):
        return out
    df = samples.sort_values("sample_index")
    for key, part in df.groupby(["run_id", "case_id", "rank", "metric"], sort=False):
        run_id, case_id, rank, metric = key
        out.add((str(run_id), str(case_id), int(rank), str(metric)), part["value"].to_numpy(dtype=float))
    return out


def is_rate_of_time(metric: str) -> bool:
    """True when the metric's value is work / median time (so its repeats follow the time samples)."""
    d = metric_dict.METRICS.get(metric)
    return d is not None and d.derivation == "from_time"


def max_index(metrics: pd.DataFrame) -> MaxIndex:
    """(run_id, case_id, rank, metric) -> value of the stat 'max' row (rate at the fastest repeat)."""
    m = metrics[(metrics["stat"] == "max") & metrics["value"].notna()]
    return {(str(r.run_id), str(r.case_id), int(r.rank), str(r.metric)): float(r.value)
            for r in m.itertuples(index=False)}


def _time_candidates(idx: SampleIndex, key: tuple[str, str, int], max_value: float | None) -> list[str]:
    if max_value is None:
        return list(metric_dict.names(role="time_base"))
    return sorted(n for n in idx.names.get(key, []) if n in metric_dict.METRICS and metric_dict.METRICS[n].unit == "s")


def for_row(idx: SampleIndex, maxes: MaxIndex, run_id: str, case_id: str, rank: int, metric: str,
            value: float, n_samples: int | None) -> np.ndarray | None:
    """Samples of one headline row in the metric's unit, or None when none were recorded."""
    key = (str(run_id), str(case_id), int(rank))
    own = idx.get(key + (metric,))
    if own is not None:
        return own
    if not is_rate_of_time(metric) or value is None or math.isnan(value) or value <= 0:
        return None
    max_value = maxes.get(key + (metric,))
    for base in _time_candidates(idx, key, max_value):
        t = idx.get(key + (base,))
        if t is None or not len(t) or (t <= 0).any():
            continue
        if n_samples is not None and not pd.isna(n_samples) and int(n_samples) != len(t):
            continue
        med = float(np.median(t))
        if max_value is not None and abs(max_value / value - med / float(t.min())) > RATIO_TOLERANCE * max_value / value:
            continue
        return value * med / t
    return None


def pooled(idx: SampleIndex, maxes: MaxIndex, rows: pd.DataFrame) -> np.ndarray | None:
    """Samples of every row pooled; the row values themselves when any row has none."""
    parts = []
    for r in rows.itertuples(index=False):
        s = for_row(idx, maxes, r.run_id, r.case_id, r.rank, r.metric, r.value, r.n_samples)
        if s is None:
            values: np.ndarray = rows["value"].to_numpy(dtype=float)  # Any in pandas' annotations
            return values
        parts.append(s)
    return np.concatenate(parts) if parts else None
