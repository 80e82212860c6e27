"""aifbench.ab on both sides of every boundary: no rounds, one round, two rounds, the noisy
threshold exactly on the half-width, the confidence level, the t quantile's degrees of freedom,
ABBA order over an odd number of rounds, bounds of a decreasing transform, the argument guards.
Expected values by hand: the t quantile with df = 1 is the Cauchy quantile tan(pi (p - 1/2)), with
df = 2 it is (2p - 1) sqrt(2 / (4 p (1 - p))) (closed forms of Student's t CDF)."""

from __future__ import annotations

import math

import pytest

from aifbench.ab import ABResult, Interval, interval_metrics, paired_t_interval, run_ab, t_quantile
from aifbench.timing import Timer

T975_DF1 = math.tan(math.pi * 0.475)                           # 12.70620
T975_DF2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))          # 4.30265
T95_DF1 = math.tan(math.pi * 0.45)                             # 6.31375 (a 90 % interval)


def test_t_quantile_closed_forms_at_95_and_90_percent():
    assert t_quantile(1) == pytest.approx(T975_DF1, rel=1e-6)
    assert t_quantile(2) == pytest.approx(T975_DF2, rel=1e-6)
    assert t_quantile(1, 0.90) == pytest.approx(T95_DF1, rel=1e-6)


def test_t_quantile_needs_one_degree_of_freedom():
    with pytest.raises(ValueError, match="at least 2 rounds"):
        t_quantile(0)


def test_no_rounds_is_an_error_and_one_round_has_no_interval():
    with pytest.raises(ValueError, match="no rounds"):
        paired_t_interval([])
    one = paired_t_interval([5.0])
    assert (one.mean, one.n) == (5.0, 1) and math.isnan(one.low) and math.isnan(one.high)
    assert one.noisy(1e9)  # no interval is noisy whatever the tolerance


def test_two_rounds_interval_by_hand():
    """[1, 3]: mean 2, sd sqrt(((1-2)^2 + (3-2)^2) / 1) = sqrt 2, half = t(0.975, 1) sqrt 2 / sqrt 2."""
    i = paired_t_interval([1.0, 3.0])
    assert (i.mean, i.n) == (2.0, 2)
    assert (i.low, i.high) == pytest.approx((2 - T975_DF1, 2 + T975_DF1), rel=1e-6)


def test_three_rounds_interval_by_hand():
    """[1, 2, 6]: mean 3, sd sqrt((4 + 1 + 9) / 2) = sqrt 7, half = t(0.975, 2) sqrt 7 / sqrt 3."""
    i = paired_t_interval([1.0, 2.0, 6.0])
    half = T975_DF2 * math.sqrt(7) / math.sqrt(3)  # 6.57243
    assert (i.low, i.high) == pytest.approx((3 - half, 3 + half), rel=1e-6)


@pytest.mark.parametrize("tol, noisy", [(1.0, False), (1.0 + 1e-9, False), (1.0 - 1e-9, True), (0.0, True)])
def test_noisy_is_a_half_width_above_the_tolerance(tol, noisy):
    """Interval [-1, 1]: half-width 1; noisy only when 1 > tol (on the tolerance: not noisy)."""
    assert Interval(0.0, -1.0, 1.0, 5).noisy(tol) is noisy


def _result(values, interval: Interval) -> ABResult:
    return ABResult(tuple(1.0 for _ in values), tuple(1.0 for _ in values), tuple(values), interval, 1, 1)


@pytest.mark.parametrize("tol, noisy", [(2.0, False), (2.0 - 1e-9, True)])
def test_interval_metrics_noisy_on_both_sides_of_the_tolerance(tol, noisy):
    rows = interval_metrics("m", _result([1.0, 2.0], Interval(3.0, 1.0, 5.0, 2)), tol).metrics
    assert [(r.stat, r.value) for r in rows] == [("mean", 3.0), ("ci_low", 1.0), ("ci_high", 5.0)]
    assert {r.noisy for r in rows} == {noisy} and {r.n_samples for r in rows} == {2}


def test_interval_metrics_of_one_round_is_the_mean_only_and_noisy():
    m = interval_metrics("m", _result([4.0], Interval(4.0, math.nan, math.nan, 1)), 1e9)
    assert [(r.stat, r.value, r.noisy) for r in m.metrics] == [("mean", 4.0, True)]
    assert m.samples == {"m": (4.0,)}


def test_a_decreasing_transform_reorders_the_bounds():
    """ratio -> loss % = 100 (1 - v): interval [0.9, 1.2] of mean 1.05 -> [-20, 10], mean -5;
    raw values 0.95, 1.15 -> 5, -15."""
    m = interval_metrics("loss", _result([0.95, 1.15], Interval(1.05, 0.9, 1.2, 2)), 20.0,
                         transform=lambda v: 100 * (1 - v))
    got = {r.stat: r.value for r in m.metrics}
    assert got == pytest.approx({"mean": -5.0, "ci_low": -20.0, "ci_high": 10.0})
    assert m.samples["loss"] == pytest.approx((5.0, -15.0))
    assert not m.metrics[0].noisy  # half-width 15 <= 20


class StepClock:
    """A fake ns clock advanced only by the timed calls; records which side ran, in order."""

    def __init__(self):
        self.t, self.order = 0, []

    def __call__(self) -> int:
        return self.t

    def side(self, name: str, ns: int):
        def call():
            self.t += ns
            self.order.append(name)
        return call


def test_abba_over_three_rounds_and_per_call_seconds():
    """Rounds 0 and 2 run A first, round 1 B first; A: 2 calls of 1000 ns, B: 1 call of 3000 ns
    per round -> a_s = 1e-6 s per call, b_s = 3e-6, paired b / a = 3 each round."""
    clock = StepClock()
    r = run_ab(Timer("cpu", clock=clock), clock.side("A", 1000), clock.side("B", 3000), rounds=3,
               paired=lambda a, b: b / a, calls_a=2, calls_b=1)
    assert clock.order == ["A", "A", "B", "B", "A", "A", "A", "A", "B"]
    assert r.a_s == pytest.approx((1e-6,) * 3) and r.b_s == pytest.approx((3e-6,) * 3)
    assert r.values == pytest.approx((3.0,) * 3) and (r.calls_a, r.calls_b) == (2, 1)
    assert r.interval.n == 3 and r.interval.half_width == pytest.approx(0.0, abs=1e-9)


def test_a_single_round_ab_is_noisy_with_no_bounds():
    clock = StepClock()
    r = run_ab(Timer("cpu", clock=clock), clock.side("A", 1000), clock.side("B", 2000), rounds=1,
               paired=lambda a, b: b / a, calls_a=1)
    assert clock.order == ["A", "B"] and r.values == pytest.approx((2.0,))
    rows = interval_metrics("speedup", r, 1e9).metrics
    assert [(x.stat, x.noisy) for x in rows] == [("mean", True)]


@pytest.mark.parametrize("kw", [dict(rounds=0, calls_a=1), dict(rounds=1, calls_a=0), dict(rounds=1, calls_a=1, calls_b=0)])
def test_rounds_and_calls_below_one_are_refused(kw):
    clock = StepClock()
    with pytest.raises(ValueError, match=">= 1"):
        run_ab(Timer("cpu", clock=clock), clock.side("A", 1), clock.side("B", 1), paired=lambda a, b: b / a, **kw)
    assert clock.order == []
