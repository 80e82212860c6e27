"""Telemetry windows scoped to timed regions: one window per region of a case, not per case.

The runner binds a `Regions` to the rank's sampler and the case, and hands it to the Timer:

    regions = Regions(sampler, case_id)
    timer = Timer(device, timing, regions=regions)
    bench.measure(timer)          # Timer.time() samples its timed repeats into region "main";
                                  # `with timer.region("ref"):` samples into region "ref"
    for name, r in regions.results().items():   # RegionResult: metrics, flags, rows, ...

Only timed work is sampled: compilation, correctness checks and warm-up run outside every
window. Entering a region again in the same case adds a segment (one sampler window each);
the region's figures accumulate over its segments (the gaps between them are not in them):

    energy_j (module_energy_j)  sum of the segments' energies (only when every segment has one)
    *_mean_* (stat mean)        mean of the segments' means weighted by segment duration, which
                                for power is the integrated energy / the region's sampled time
    *_peak_*, *_max_* (max)     the highest; stat min and power_limit_w: the lowest
    (the sum and the lowest: a window metric's over_segments trait in aifbench.metrics)
    throttle_pct, other values  mean weighted by each segment's sample count
    flags                       union, first seen first
    telemetry_window_s          sampled seconds summed over the segments (n_samples: polls)

Every segment's raw rows are kept; each row names its region (`window`) and segment number
(`segment`, 0-based); t_s counts from the region's first poll.

A region too short to judge: fewer than MIN_POLLS polls in all, or fewer sampled seconds than
max(MIN_INTERVALS x the sampling interval, ENERGY_COUNTER_UPDATE_S) — its first poll would
still show the previous work's power and clock state. Such a region keeps its rows and its
telemetry_window_s (whose detail gives the reason) and gets the flag `telemetry_insufficient`
(a note, not a validity verdict) instead of any power, energy, clock or temperature figure and
instead of any flag derived from them: only event flags (EVENT_FLAGS) observed inside it stay.
Nothing is carried over from an earlier window. Where it is cheap a benchmark extends its
timed work instead (`Timer.time(..., extend=True)`: more repeats until the region lasts
`Regions.min_timed_s`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

from aifbench import metrics as metric_dict
from aifbench.measurement import Metric
from aifbench.telemetry.base import Sampler, Window

MAIN = metric_dict.MAIN
REGIONS = {MAIN: "the benchmark's own timed work (the figures without a prefix)", **metric_dict.REGIONS}
"""the region names (metrics.py defines R_<metric> for each); metrics of main keep their names"""
MIN_POLLS = 3
MIN_INTERVALS = 2
ENERGY_COUNTER_UPDATE_S = 0.1
"""slowest update period of NVML's total-energy counter (it updates every 10-100 ms)"""
MIN_TIMED_S = 1.0
"""what extend=True stretches a region's timed work to (>= NVML's counter window, nvml.ENERGY_COUNTER_MIN_S)"""
INSUFFICIENT = "telemetry_insufficient"
EVENT_FLAGS = ("ecc_errors", "other_processes", "telemetry_error", "telemetry_suspended", "power_limit_below_default")
"""flags of what was read inside the window (not a clock state lagging from before): kept when insufficient"""


@dataclass
class RegionResult:
    """One region's telemetry over all its segments (metric names without the region prefix)."""

    name: str
    metrics: list[Metric] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    insufficient: str = ""
    """why the region is too short to judge; empty when it is not"""


class Regions:
    """The timed regions of one case, each sampled into its own telemetry window(s)."""

    def __init__(self, sampler: Sampler, case_id: str):
        self.sampler, self.case_id = sampler, case_id
        self.active: str | None = None
        self._segments: dict[str, list[Window]] = {}
        self.interval_s = float(sampler.interval_s)
        live = sampler.live and self.interval_s > 0
        self.min_timed_s = MIN_TIMED_S if live else 0.0
        """seconds extend=True stretches timed work to: 0 without live telemetry (off, or a replay)"""

    @contextlib.contextmanager
    def region(self, name: str) -> Iterator[None]:
        """Sample the block into region `name` (a new segment when entered before); no nesting."""
        if name not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}, got {name!r}")
        if self.active is not None:
            raise ValueError(f"region {name!r} opened inside region {self.active!r}: regions do not nest")
        self.active = name
        segments = self._segments.setdefault(name, [])
        try:
            with self.sampler.window(f"{self.case_id}@{name}") as win:
                try:
                    yield
                finally:
                    segments.append(win)
        finally:
            self.active = None

    @property
    def names(self) -> list[str]:
        """Regions entered so far, in order of first entry."""
        return list(self._segments)

    def results(self) -> dict[str, RegionResult]:
        """Each region's accumulated telemetry (filled once its windows have closed)."""
        return {name: self._result(name, wins) for name, wins in self._segments.items()}

    def _result(self, name: str, wins: list[Window]) -> RegionResult:
        out = RegionResult(name, rows=_rows(name, wins))
        polls = sum(w.polls for w in wins)
        if polls == 0:  # telemetry off or unavailable: nothing to judge, nothing to flag
            out.flags = _union(w.flags for w in wins)
            return out
        span = sum(w.duration_s for w in wins)
        out.insufficient = self.insufficient_reason(polls, span)
        flags = _union(w.flags for w in wins)
        detail = f"{len(wins)} segment(s), {polls} polls"
        if out.insufficient:
            out.flags = [INSUFFICIENT] + [f for f in flags if f in EVENT_FLAGS]
            detail += f"; {INSUFFICIENT}: {out.insufficient}"
        else:
            out.flags = flags
            out.metrics = combine(wins)
        detail += f"; flags={','.join(out.flags) or 'none'}"
        out.metrics.append(Metric("telemetry_window_s", span, stat="value", n_samples=polls, detail=detail))
        return out

    def insufficient_reason(self, polls: int, span_s: float) -> str:
        """Why `polls` samples over `span_s` sampled seconds are too few to judge; '' if enough."""
        floor_s = max(MIN_INTERVALS * self.interval_s, ENERGY_COUNTER_UPDATE_S)
        if polls < MIN_POLLS:
            return f"{polls} poll(s) < {MIN_POLLS}"
        if span_s < floor_s:
            return (f"{span_s:.3g} s sampled < {floor_s:g} s (max of {MIN_INTERVALS} x {self.interval_s:g} s "
                    f"interval, energy counter update {ENERGY_COUNTER_UPDATE_S:g} s)")
        return ""


def combine(wins: list[Window]) -> list[Metric]:
    """One region's metrics from its segments' (see the module doc for each rule)."""
    if len(wins) == 1:
        return list(wins[0].metrics)
    order: dict[tuple[str, str], list[tuple[Metric, float]]] = {}
    for w in wins:
        for m in w.metrics:
            order.setdefault((m.metric, m.stat), []).append((m, w.duration_s))
    out = []
    for (name, stat), found in order.items():
        merged = _merge(name, stat, found, len(wins))
        if merged is not None:
            out.append(merged)
    return out


def _merge(name: str, stat: str, found: list[tuple[Metric, float]], segments: int) -> Metric | None:
    ms = [m for m, _ in found]
    n = sum(m.n_samples or 0 for m in ms)
    details = " | ".join(dict.fromkeys(m.detail for m in ms if m.detail))
    d = metric_dict.METRICS.get(name)
    over = d.over_segments if d is not None else "by_stat"
    if over == "sum":
        if len(ms) < segments:  # a segment without energy would make the sum too small
            return None
        value, rule = sum(m.value for m in ms), "sum"
    elif stat == "max":
        value, rule = max(m.value for m in ms), "max"
    elif stat == "min" or over == "lowest":
        value, rule = min(m.value for m in ms), "min"
    elif stat == "mean" and sum(d for _, d in found) > 0:
        value = sum(m.value * d for m, d in found) / sum(d for _, d in found)
        rule = "duration-weighted mean"
    else:
        weights = [max(m.n_samples or 0, 1) for m in ms]
        value, rule = sum(m.value * w for m, w in zip(ms, weights)) / sum(weights), "sample-weighted mean"
    detail = f"{rule} of {len(ms)} segments; {details}"
    return Metric(name, value, stat=stat, n_samples=n, noisy=any(m.noisy for m in ms), detail=detail[:500])


def _union(flag_lists) -> list[str]:
    return list(dict.fromkeys(f for flags in flag_lists for f in flags))


def _rows(name: str, wins: list[Window]) -> list[dict]:
    """Every segment's rows, tagged with region and segment, t_s from the region's first poll."""
    t0 = next((w.t0_s for w in wins if w.polls), 0.0)  # a segment without polls has no rows, no t0
    rows = []
    for k, w in enumerate(wins):
        rows += [dict(r, window=name, segment=k, t_s=round(r["t_s"] + w.t0_s - t0, 6)) for r in w.rows]
    return rows


def prefixed(region: str, metric: str) -> str:
    """The stored name of a region's metric: unchanged for main, else '<region>_<metric>'."""
    return metric if region == MAIN else f"{region}_{metric}"
