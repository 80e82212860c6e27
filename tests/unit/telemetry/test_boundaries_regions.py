"""telemetry/regions.py on both sides of every boundary: the poll count (2 vs 3), the sampled-time
floor max(2 x interval, 0.1 s) (just below, on it, for a slow and a fast interval), energy only
when every segment has one, the lowest power limit, duration- and sample-weighted means, flags of
a short region, polls counted over segments, t_s of later segments. Expected values by hand.

The windows are built here: a sampler that hands out prepared windows stands in for the GPU."""

from __future__ import annotations

import contextlib

import pytest

from aifbench.measurement import Metric
from aifbench.telemetry import regions as R
from aifbench.telemetry.base import Window


class Prepared:
    """Hands out the prepared windows in order, one per window opened (interval_s as given)."""

    live = True

    def __init__(self, windows: list[Window], interval_s: float = 0.2):
        self.windows, self.interval_s, self.opened = list(windows), interval_s, []

    @contextlib.contextmanager
    def window(self, case_id: str):
        self.opened.append(case_id)
        yield self.windows.pop(0)


def win(duration_s: float, polls: int, *metrics: Metric, flags=(), t0_s: float = 0.0, rows=()) -> Window:
    return Window("c", list(metrics), [dict(r) for r in rows], list(flags), polls, duration_s, t0_s)


@pytest.mark.parametrize("interval, polls, span, why", [
    (0.2, 2, 10.0, "2 poll(s) < 3"),                       # one poll short, whatever the time
    (0.2, 3, 0.4, ""),                                      # 3 polls, exactly max(2 x 0.2, 0.1) = 0.4 s
    (0.2, 3, 0.399, "0.399 s sampled < 0.4 s (max of 2 x 0.2 s interval, energy counter update 0.1 s)"),
    (0.02, 3, 0.1, ""),                                     # fast polling: the floor is the counter's 0.1 s
    (0.02, 3, 0.099, "0.099 s sampled < 0.1 s (max of 2 x 0.02 s interval, energy counter update 0.1 s)"),
    (0.2, 0, 0.0, "0 poll(s) < 3"),
])
def test_insufficient_on_both_sides_of_polls_and_floor(interval, polls, span, why):
    assert R.Regions(Prepared([], interval), "c").insufficient_reason(polls, span) == why


def test_polls_and_time_count_over_all_segments():
    """Two segments of 2 polls and 0.25 s each: 4 polls >= 3 and 0.5 s >= 0.4 s: judged."""
    sampler = Prepared([win(0.25, 2, Metric("power_mean_w", 300.0, stat="mean", n_samples=2)),
                        win(0.25, 2, Metric("power_mean_w", 500.0, stat="mean", n_samples=2))])
    regions = R.Regions(sampler, "case")
    for _ in range(2):
        with regions.region("main"):
            pass
    res = regions.results()["main"]
    assert res.insufficient == "" and sampler.opened == ["case@main", "case@main"]
    m = {x.metric: x for x in res.metrics}
    assert m["power_mean_w"].value == 400.0  # (300 x 0.25 + 500 x 0.25) / 0.5
    assert (m["telemetry_window_s"].value, m["telemetry_window_s"].n_samples) == (0.5, 4)
    assert m["telemetry_window_s"].detail == "2 segment(s), 4 polls; flags=none"


def test_a_short_region_keeps_only_event_flags_and_its_window_time():
    """2 polls: insufficient. Its clock-state flags (thermal, low clock) go, ecc_errors and
    power_limit_below_default (read inside it) stay, after telemetry_insufficient."""
    sampler = Prepared([win(1.0, 2, Metric("power_mean_w", 300.0, stat="mean", n_samples=2), Metric("energy_j", 300.0, stat="value", n_samples=2),
                            flags=["thermal_throttle", "ecc_errors", "low_sm_clock", "power_limit_below_default"])])
    regions = R.Regions(sampler, "c")
    with regions.region("main"):
        pass
    res = regions.results()["main"]
    assert res.insufficient == "2 poll(s) < 3"
    assert res.flags == ["telemetry_insufficient", "ecc_errors", "power_limit_below_default"]
    assert [(m.metric, m.value, m.n_samples) for m in res.metrics] == [("telemetry_window_s", 1.0, 2)]
    assert "telemetry_insufficient: 2 poll(s) < 3" in res.metrics[0].detail


def test_a_region_without_polls_has_no_figures_but_keeps_its_flags():
    regions = R.Regions(Prepared([win(0.0, 0, flags=["telemetry_error"])]), "c")
    with regions.region("main"):
        pass
    res = regions.results()["main"]
    assert (res.metrics, res.flags, res.insufficient) == ([], ["telemetry_error"], "")


def test_a_sufficient_region_keeps_every_flag_first_seen_first():
    sampler = Prepared([win(1.0, 10, flags=["thermal_throttle"]), win(1.0, 10, flags=["ecc_errors", "thermal_throttle"])])
    regions = R.Regions(sampler, "c")
    for _ in range(2):
        with regions.region("main"):
            pass
    assert regions.results()["main"].flags == ["thermal_throttle", "ecc_errors"]


def _combined(*wins: Window) -> dict[str, Metric]:
    return {m.metric: m for m in R.combine(list(wins))}


def test_energy_sums_only_when_every_segment_has_a_reading():
    both = _combined(win(1.0, 10, Metric("energy_j", 100.0, stat="value", n_samples=10)), win(2.0, 20, Metric("energy_j", 50.0, stat="value", n_samples=20)))
    assert both["energy_j"].value == 150.0 and both["energy_j"].n_samples == 30
    assert both["energy_j"].detail.startswith("sum of 2 segments")
    one_lacks = _combined(win(1.0, 10, Metric("energy_j", 100.0, stat="value", n_samples=10)), win(2.0, 20, Metric("power_mean_w", 25.0, stat="mean", n_samples=20)))
    assert "energy_j" not in one_lacks  # 100 J alone would be too small for 3 s


def test_the_lowest_power_limit_and_the_highest_peak():
    c = _combined(win(1.0, 10, Metric("power_limit_w", 700.0, stat="value", n_samples=10), Metric("power_peak_w", 400.0, stat="max", n_samples=10)),
                  win(1.0, 10, Metric("power_limit_w", 650.0, stat="value", n_samples=10), Metric("power_peak_w", 650.0, stat="max", n_samples=10)),
                  win(1.0, 10, Metric("power_limit_w", 690.0, stat="value", n_samples=10), Metric("power_peak_w", 500.0, stat="max", n_samples=10)))
    assert c["power_limit_w"].value == 650.0 and c["power_limit_w"].detail.startswith("min of 3 segments")
    assert c["power_peak_w"].value == 650.0


def test_means_weighted_by_duration_and_values_by_samples():
    """power_mean_w 300 W over 1 s, 600 W over 3 s: (300 + 1800) / 4 = 525 W (not 450).
    throttle_pct 10 % of 10 samples, 40 % of 30: (100 + 1200) / 40 = 32.5 % (not 25)."""
    c = _combined(win(1.0, 10, Metric("power_mean_w", 300.0, stat="mean", n_samples=10), Metric("throttle_pct", 10.0, stat="value", n_samples=10)),
                  win(3.0, 30, Metric("power_mean_w", 600.0, stat="mean", n_samples=30), Metric("throttle_pct", 40.0, stat="value", n_samples=30)))
    assert c["power_mean_w"].value == 525.0 and c["power_mean_w"].detail.startswith("duration-weighted mean")
    assert c["throttle_pct"].value == 32.5 and c["throttle_pct"].detail.startswith("sample-weighted mean")


def test_a_mean_over_segments_without_duration_is_sample_weighted():
    """Zero-length segments: 300 W of 3 samples, 600 W of 1: (900 + 600) / 4 = 375 W."""
    c = _combined(win(0.0, 3, Metric("power_mean_w", 300.0, stat="mean", n_samples=3)), win(0.0, 1, Metric("power_mean_w", 600.0, stat="mean", n_samples=1)))
    assert c["power_mean_w"].value == 375.0


def test_one_segment_is_passed_through_and_noisy_is_any():
    only = win(1.0, 5, Metric("power_mean_w", 123.0, stat="mean", n_samples=5, noisy=True, detail="d"))
    assert R.combine([only]) == only.metrics
    c = _combined(win(1.0, 5, Metric("throttle_pct", 0.0, stat="value", n_samples=5, noisy=False)),
                  win(1.0, 5, Metric("throttle_pct", 0.0, stat="value", n_samples=5, noisy=True)))
    assert c["throttle_pct"].noisy is True


def test_rows_of_later_segments_count_from_the_regions_first_poll():
    sampler = Prepared([win(1.0, 3, t0_s=4.0, rows=[{"t_s": 0.0}, {"t_s": 1.0}]),
                        win(1.0, 3, t0_s=10.0, rows=[{"t_s": 0.0}, {"t_s": 0.5}])])
    regions = R.Regions(sampler, "c")
    for _ in range(2):
        with regions.region("main"):
            pass
    rows = regions.results()["main"].rows
    assert [(r["segment"], r["t_s"], r["window"]) for r in rows] == [(0, 0.0, "main"), (0, 1.0, "main"),
                                                                     (1, 6.0, "main"), (1, 6.5, "main")]


def test_a_first_segment_without_polls_does_not_shift_the_others():
    """Segment 0 took no poll (its t0 is unset: 0); segment 1 polled from t 10 s, segment 2 from
    12 s: their rows count from 10 s, the region's first poll."""
    sampler = Prepared([win(0.0, 0), win(1.0, 3, t0_s=10.0, rows=[{"t_s": 0.0}, {"t_s": 1.0}]),
                        win(1.0, 3, t0_s=12.0, rows=[{"t_s": 0.0}])])
    regions = R.Regions(sampler, "c")
    for _ in range(3):
        with regions.region("main"):
            pass
    rows = regions.results()["main"].rows
    assert [(r["segment"], r["t_s"]) for r in rows] == [(1, 0.0), (1, 1.0), (2, 2.0)]


def test_regions_do_not_nest_and_names_are_checked():
    regions = R.Regions(Prepared([win(1.0, 3), win(1.0, 3)]), "c")
    with pytest.raises(ValueError, match="region must be one of"):
        with regions.region("nope"):
            pass
    with pytest.raises(ValueError, match="regions do not nest"):
        with regions.region("main"):
            with regions.region("main"):
                pass
    assert regions.active is None


def test_extend_only_with_live_telemetry():
    assert R.Regions(Prepared([], 0.1), "c").min_timed_s == R.MIN_TIMED_S == 1.0
    assert R.Regions(Prepared([], 0.0), "c").min_timed_s == 0.0
    replay = Prepared([], 0.1)
    replay.live = False
    assert R.Regions(replay, "c").min_timed_s == 0.0
