"""The A/B protocol (aifbench.ab) with an injected clock: order, interval, noisy flag, drift."""

from __future__ import annotations

import contextlib

import pytest

from aifbench.ab import _t_two_sided_prob, interval_metrics, paired_t_interval, run_ab, t_quantile
from aifbench.timing import Timer


class SideClock:
    """A fake ns clock; side X's call in round r advances it by durations[X][r] (per call)."""

    def __init__(self, a_ns, b_ns, calls=1):
        self.t, self.calls = 0, calls
        self.durations = {"A": list(a_ns), "B": list(b_ns)}
        self.segments: list[str] = []  # the side of every call, in order

    def __call__(self) -> int:
        return self.t

    def op(self, side: str):
        def call():
            r = sum(1 for s in self.segments if s == side) // self.calls
            self.t += self.durations[side][r]
            self.segments.append(side)
        return call


def pct(a_s: float, b_s: float) -> float:
    return 100 * (1 - b_s / a_s)


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (3, 3.182), (7, 2.365), (9, 2.262),
                                       (30, 2.042), (100, 1.984)])
def test_t_quantile_matches_the_nist_table(df, table):
    """NIST/SEMATECH e-Handbook 1.3.6.7.2, upper 0.025 critical values of Student's t."""
    assert t_quantile(df) == pytest.approx(table, abs=6e-4)
    assert _t_two_sided_prob(t_quantile(df), df) == pytest.approx(0.95, abs=1e-9)


def test_t_cdf_closed_forms():
    assert _t_two_sided_prob(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| < 1) = 1/2
    assert _t_two_sided_prob(2.0, 2) == pytest.approx(2 / 6 ** 0.5)  # df 2: t / sqrt(2 + t^2)
    with pytest.raises(ValueError):
        t_quantile(0)


def test_abba_order_and_the_paired_interval_pinned_by_hand():
    # A (harness) 1 ms per call every round; B (bare) 0.99, 0.98, 0.99, 0.96 ms -> 1, 2, 1, 4 %
    clock = SideClock([1_000_000] * 4, [990_000, 980_000, 990_000, 960_000], calls=2)
    timer = Timer("cpu", clock=clock)
    ab = run_ab(timer, clock.op("A"), clock.op("B"), rounds=4, calls_a=2, paired=pct)
    assert "".join(clock.segments) == "AABB" "BBAA" "AABB" "BBAA"  # ABBA, 2 calls per segment
    assert ab.a_s == pytest.approx((1e-3,) * 4)
    assert ab.values == pytest.approx((1.0, 2.0, 1.0, 4.0))
    # mean 2, sd sqrt(6/3) = 1.41421, se 0.70711, t(0.975, 3) = 3.18245: half-width 2.25033
    i = ab.interval
    assert (i.mean, i.low, i.high) == pytest.approx((2.0, -0.250329, 4.250329), abs=1e-5)
    assert not i.noisy(3.0) and i.noisy(2.0)


def test_interval_metrics_rows_samples_and_noisy_flag():
    clock = SideClock([1_000_000] * 8, [990_000, 988_000, 992_000, 990_000, 989_000, 991_000, 990_000, 990_000])
    ab = run_ab(Timer("cpu", clock=clock), clock.op("A"), clock.op("B"), rounds=8, calls_a=1, paired=pct)
    # values 1.0 1.2 0.8 1.0 1.1 0.9 1.0 1.0: sd sqrt(0.1 / 7), t(0.975, 7) = 2.36462 -> half 0.09992
    out = interval_metrics("harness_overhead_pct", ab, tol=3.0, detail="m=8")
    rows = {m.stat: m for m in out.metrics}
    assert set(rows) == {"mean", "ci_low", "ci_high"}
    assert [rows[k].value for k in ("mean", "ci_low", "ci_high")] == pytest.approx([1.0, 0.900076, 1.099924], abs=1e-5)
    assert all(r.n_samples == 8 and r.noisy is False and "8 rounds in ABBA order" in r.detail for r in rows.values())
    assert out.samples["harness_overhead_pct"] == pytest.approx((1.0, 1.2, 0.8, 1.0, 1.1, 0.9, 1.0, 1.0))
    assert all(r.noisy for r in interval_metrics("x", ab, tol=0.05).metrics)
    # a decreasing map (ratio -> loss %) flips the bounds
    loss = {m.stat: m.value for m in interval_metrics("loss", ab, 1.0, transform=lambda v: 10 - v).metrics}
    assert [loss["mean"], loss["ci_low"], loss["ci_high"]] == pytest.approx([9.0, 8.900076, 9.099924], abs=1e-5)


def test_abba_cancels_a_linear_drift_that_ab_order_would_report():
    """Both sides identical, every segment 1 % slower than the one before (clocks sagging): the
    ABBA mean difference is 0; timing A always first would show B 1 % slower in every round."""
    class Drift:
        t, n = 0, 0

        def __call__(self):
            return self.t

        def op(self):
            self.t += int(1_000_000 * 1.01 ** (self.n // 10))  # 10 calls per segment
            self.n += 1

    d = Drift()
    ab = run_ab(Timer("cpu", clock=d), d.op, d.op, rounds=6, calls_a=10, paired=lambda a, b: 100 * (b / a - 1))
    assert ab.interval.mean == pytest.approx(0.0, abs=0.01)
    assert all(abs(v) == pytest.approx(1.0, abs=0.01) for v in ab.values)


def test_each_side_is_timed_inside_its_region_and_context():
    seen = []

    class RegionTimer(Timer):  # a stand-in for the telemetry regions of Timer (the sampler is absent here)
        @contextlib.contextmanager
        def region(self, name):
            seen.append(name)
            yield

    clock = SideClock([10] * 3, [10] * 3)
    opened = []

    @contextlib.contextmanager
    def window():
        opened.append(clock.t)
        yield

    run_ab(RegionTimer("cpu", clock=clock), clock.op("A"), clock.op("B"), rounds=3, calls_a=1, paired=pct,
           regions=("harness", "bare_loop"), around=(contextlib.nullcontext, window))
    assert seen == ["harness", "bare_loop", "bare_loop", "harness", "harness", "bare_loop"]
    assert len(opened) == 3


def test_fewer_than_two_rounds_has_no_interval_and_is_noisy():
    i = paired_t_interval([1.5])
    assert i.mean == 1.5 and i.noisy(100.0)
    with pytest.raises(ValueError):
        paired_t_interval([])
    with pytest.raises(ValueError):
        run_ab(Timer("cpu"), lambda: None, lambda: None, rounds=0, calls_a=1, paired=pct)


def test_speedup_vs_ref_is_reference_time_over_own_time():
    from aifbench.ab import speedup_vs_ref

    clock = SideClock([1_000_000] * 4, [1_250_000, 1_260_000, 1_240_000, 1_250_000])
    ab = speedup_vs_ref(Timer("cpu", clock=clock), clock.op("A"), clock.op("B"), rounds=4, calls=1, regions=None)
    assert ab.values == pytest.approx((1.25, 1.26, 1.24, 1.25))
    # sd sqrt(0.0002 / 3), t(0.975, 3) = 3.18245: half-width 0.012992
    assert (ab.interval.low, ab.interval.high) == pytest.approx((1.237008, 1.262992), abs=1e-6)
