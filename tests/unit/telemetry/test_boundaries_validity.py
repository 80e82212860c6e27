"""telemetry/validity.py on both sides of every boundary: the 1 W limit tolerance (inside, on,
outside), which limit a window reports (the lowest), idle samples kept out of the busy clock,
the low-clock fraction (just below, on, just above), no masks, no limits, no clocks, one sample.
Hand arithmetic in each test; the bits are NVML's: GpuIdle 0x1, SwPowerCap 0x4, SwThermal 0x20."""

from __future__ import annotations

import pytest

from aifbench.telemetry.sampling import Sample
from aifbench.telemetry.validity import power_state, window_validity

IDLE, CAP, THERMAL = 0x1, 0x4, 0x20


@pytest.mark.parametrize("limit, default, state", [
    (700.0, 700.0, "capped_at_default"),
    (699.5, 700.0, "capped_at_default"),     # 0.5 W apart: < 1 W, equal
    (700.999, 700.0, "capped_at_default"),   # 0.999 W above: equal
    (699.0, 700.0, "capped_below_default"),  # exactly 1 W below: not closer than 1 W
    (650.0, 700.0, "capped_below_default"),
    (701.0, 700.0, "capped_above_default"),  # exactly 1 W above
])
def test_power_state_tolerance_on_both_sides(limit, default, state):
    s = power_state([CAP, 0], limit, default, {})
    assert s.state == state
    assert s.why.startswith(f"SwPowerCap in 1 of 2 samples at the {limit:g} W limit")


def test_power_state_unknown_names_what_is_missing():
    s = power_state([], 700.0, 700.0, {"clocks_event_reasons": "not supported"})
    assert (s.state, s.why) == ("unknown", "no clock-event reasons: not supported")
    s = power_state([CAP], None, 700.0, {"power_limit_w": "NVML_ERROR_NO_PERMISSION"})
    assert s.state == "unknown" and s.why == "SwPowerCap in 1 of 1 samples; enforced limit unknown: NVML_ERROR_NO_PERMISSION"
    s = power_state([CAP], 700.0, None, {})
    assert s.state == "unknown" and s.why.endswith("default limit unknown: not read")


def test_no_swpowercap_is_uncapped_whatever_the_limits():
    assert power_state([0, IDLE, THERMAL], 500.0, 700.0, {}).state == "uncapped"
    assert power_state([0], None, None, {}).why == "SwPowerCap in 0 of 1 samples"


def _samples(*values: dict, dt: float = 1.0) -> list[Sample]:
    return [Sample(i * dt, v) for i, v in enumerate(values)]


def _by_name(metrics) -> dict:
    return {m.metric: m for m in metrics}


def test_the_window_reports_the_lowest_enforced_limit_and_the_last_default():
    """Limits read 700, 650, 700 W: the window ran under 650 W at some point -> 650 is reported,
    the state is judged at 650 (50 W below the default 700) and the window is flagged."""
    s = _samples({"power_limit_w": 700.0, "power_limit_default_w": 690.0, "clocks_event_reasons": CAP},
                 {"power_limit_w": 650.0, "power_limit_default_w": 700.0, "clocks_event_reasons": CAP},
                 {"power_limit_w": 700.0, "power_limit_default_w": 700.0, "clocks_event_reasons": CAP})
    metrics, flags = window_validity(s, None, {})
    m = _by_name(metrics)
    assert m["power_limit_w"].value == 650.0 and m["power_limit_w"].n_samples == 3
    assert "lowest read in the window; default 700 W; state=capped_below_default" in m["power_limit_w"].detail
    assert m["power_limit_default_w"].value == 700.0
    assert flags == ["power_limit_below_default"]
    assert m["power_capped_pct"].value == 100.0


@pytest.mark.parametrize("limit, flagged", [(699.5, False), (699.0, True), (698.9, True), (700.5, False)])
def test_below_default_flag_agrees_with_the_state(limit, flagged):
    """The flag is raised exactly when the state would say below default: 1 W or more below."""
    s = _samples({"power_limit_w": limit, "power_limit_default_w": 700.0, "clocks_event_reasons": CAP})
    metrics, flags = window_validity(s, None, {})
    assert ("power_limit_below_default" in flags) is flagged
    state = "capped_below_default" if flagged else "capped_at_default"
    assert f"state={state}" in _by_name(metrics)["power_limit_w"].detail


def test_the_state_is_judged_against_the_last_default_read():
    """Defaults read 650 then 700 W (the first read before the driver reported it right), limit
    650 W throughout: judged against 700, 50 W below."""
    s = _samples({"power_limit_w": 650.0, "power_limit_default_w": 650.0, "clocks_event_reasons": CAP},
                 {"power_limit_w": 650.0, "power_limit_default_w": 700.0, "clocks_event_reasons": CAP})
    metrics, flags = window_validity(s, None, {})
    assert flags == ["power_limit_below_default"]
    assert "state=capped_below_default" in _by_name(metrics)["power_capped_pct"].detail


def test_a_lowered_limit_is_flagged_without_swpowercap_too():
    _, flags = window_validity(_samples({"power_limit_w": 500.0, "power_limit_default_w": 700.0,
                                         "clocks_event_reasons": 0}), None, {})
    assert flags == ["power_limit_below_default"]


def test_idle_samples_are_not_busy():
    """Busy samples at 1100 MHz of 2000 (0.55 < 0.6: low); two idle samples at 1980 MHz would lift
    the mean to (2 x 1100 + 2 x 1980) / 4 = 1540 (0.77) if counted."""
    s = _samples({"sm_clock_mhz": 1100.0, "clocks_event_reasons": 0}, {"sm_clock_mhz": 1980.0, "clocks_event_reasons": IDLE},
                 {"sm_clock_mhz": 1100.0, "clocks_event_reasons": 0}, {"sm_clock_mhz": 1980.0, "clocks_event_reasons": IDLE})
    metrics, flags = window_validity(s, 2000.0, {})
    assert flags == ["low_sm_clock"]
    assert "busy mean 1100 MHz = 0.55 x max < 0.6 x max" in _by_name(metrics)["sm_clock_mean_mhz"].detail


@pytest.mark.parametrize("busy_mhz, low", [(1199.0, True), (1200.0, False), (1201.0, False)])
def test_low_clock_threshold_on_both_sides(busy_mhz, low):
    """0.6 x 2000 MHz = 1200 MHz: below is low, on it is not."""
    s = _samples({"sm_clock_mhz": busy_mhz, "clocks_event_reasons": 0}, {"sm_clock_mhz": busy_mhz, "clocks_event_reasons": 0})
    _, flags = window_validity(s, 2000.0, {})
    assert ("low_sm_clock" in flags) is low


def test_low_clock_fraction_is_configurable():
    s = _samples({"sm_clock_mhz": 1500.0})
    assert window_validity(s, 2000.0, {}, min_clock_fraction=0.8)[1] == ["low_sm_clock"]  # 0.75 < 0.8
    assert window_validity(s, 2000.0, {}, min_clock_fraction=0.75)[1] == []               # 0.75 on it


def test_no_low_clock_verdict_without_a_max_or_busy_samples():
    s = _samples({"sm_clock_mhz": 100.0, "clocks_event_reasons": 0})
    metrics, flags = window_validity(s, None, {})
    assert flags == [] and _by_name(metrics)["sm_clock_mean_mhz"].detail == "max unknown"
    idle = _samples({"sm_clock_mhz": 100.0, "clocks_event_reasons": IDLE})
    assert window_validity(idle, 2000.0, {})[1] == []


def test_clock_mean_is_time_weighted_over_every_sample():
    """Clocks 1000, 1000, 2000 MHz at t 0, 2, 3 s: trapezoid 2 x 1000 + 1 x 1500 = 3500 MHz s over
    3 s = 1166.67 MHz (the plain mean of the samples would be 1333.33)."""
    s = [Sample(0.0, {"sm_clock_mhz": 1000.0}), Sample(2.0, {"sm_clock_mhz": 1000.0}), Sample(3.0, {"sm_clock_mhz": 2000.0})]
    m = _by_name(window_validity(s, None, {})[0])["sm_clock_mean_mhz"]
    assert m.value == pytest.approx(3500.0 / 3) and (m.stat, m.n_samples) == ("mean", 3)


def test_throttle_and_capped_shares_and_reason_flags():
    """Masks SwPowerCap, SwThermal, none, SwPowerCap|SwThermal: throttled (thermal) 2 of 4 = 50 %,
    capped 2 of 4 = 50 %, flag thermal_throttle from the union."""
    s = _samples(*({"clocks_event_reasons": m} for m in (CAP, THERMAL, 0, CAP | THERMAL)))
    metrics, flags = window_validity(s, None, {})
    m = _by_name(metrics)
    assert m["throttle_pct"].value == 50.0 and m["power_capped_pct"].value == 50.0
    assert m["throttle_pct"].detail == "reasons=SwPowerCap,SwThermalSlowdown"
    assert flags == ["thermal_throttle"]


def test_an_empty_window_has_no_figures_and_no_flags():
    metrics, flags = window_validity([], 2000.0, {})
    assert (metrics, flags) == ([], [])


def test_a_single_sample_window():
    s = _samples({"sm_clock_mhz": 1000.0, "temperature_c": 61.0, "clocks_event_reasons": 0})
    two = _by_name(window_validity(_samples({"temperature_c": 61.0}, {"temperature_c": 58.0}), None, {})[0])
    assert two["temperature_max_c"].value == 61.0
    m = _by_name(window_validity(s, 2000.0, {})[0])
    assert m["sm_clock_mean_mhz"].value == 1000.0
    assert (m["temperature_max_c"].value, m["temperature_max_c"].stat) == (61.0, "max")
    assert m["throttle_pct"].value == 0.0 and "state=uncapped" in m["power_capped_pct"].detail
