"""Timing statistics with an injected fake clock: no real time involved."""

import pytest

from aifbench.timing import TimingConfig, Timer, quantile, summarize


class FakeClock:
    """Each call to fn advances time by the next duration; the clock reads the current time."""

    def __init__(self, durations_ns):
        self.t = 0
        self.durations = list(durations_ns)
        self.calls = 0

    def __call__(self):
        return self.t

    def op(self):
        self.t += self.durations[self.calls % len(self.durations)]
        self.calls += 1


def test_summary_statistics_match_hand_computed_values():
    s = summarize([5.0, 1.0, 2.0, 4.0, 3.0])
    assert s.median_s == 3.0 and s.min_s == 1.0 and s.max_s == 5.0 and s.mean_s == 3.0
    assert s.iqr_s == pytest.approx(4.0 - 2.0)  # p75 = 4, p25 = 2 (linear interpolation)
    assert s.p5_s == pytest.approx(1.2) and s.p95_s == pytest.approx(4.8)
    assert s.samples_s == (5.0, 1.0, 2.0, 4.0, 3.0)  # raw order kept


def test_quantile_interpolates_like_numpy_linear():
    assert quantile([0.0, 10.0], 0.25) == 2.5
    assert quantile([7.0], 0.9) == 7.0
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_timer_excludes_warmup_and_keeps_every_sample():
    clock = FakeClock([1_000_000_000] * 2 + [1_000_000, 2_000_000, 3_000_000])  # warm-ups take 1 s each
    timer = Timer("cpu", TimingConfig(warmup=2, repeats=3), clock=clock)
    stats = timer.time(clock.op)
    assert clock.calls == 5
    assert stats.samples_s == pytest.approx((1e-3, 2e-3, 3e-3))
    assert stats.median_s == pytest.approx(2e-3)


def test_inner_loops_divide_the_sample():
    clock = FakeClock([500])
    stats = Timer("cpu", TimingConfig(warmup=0, repeats=4, inner=10), clock=clock).time(clock.op)
    assert stats.samples_s == pytest.approx((500e-9,) * 4)
    assert clock.calls == 40


def test_noise_flag_above_ten_percent_iqr():
    steady = summarize([1.0, 1.01, 0.99, 1.0, 1.02])
    jittery = summarize([1.0, 1.5, 0.7, 1.3, 0.9])
    assert not steady.noisy
    assert jittery.noisy and jittery.rel_iqr > 0.10


def test_before_each_runs_outside_the_timed_region():
    clock = FakeClock([100])
    resets = []

    def reset():
        clock.t += 10**9  # would dominate if it were timed
        resets.append(1)

    stats = Timer("cpu", TimingConfig(warmup=1, repeats=3), clock=clock).time(clock.op, before_each=reset)
    assert len(resets) == 4
    assert stats.max_s == pytest.approx(100e-9)


def test_bad_repeat_counts_are_rejected():
    with pytest.raises(ValueError):
        Timer("cpu", TimingConfig(repeats=0)).time(lambda: None)


def test_drift_between_first_and_last_third_flags_noisy_even_with_a_tight_iqr():
    """The CPU case of issue 13: another job starts while timing and the fp32 128^3 GEMM gets
    200x slower for the last few repeats. Too few slow samples to move the IQR; the drift rule
    (|median(last third) - median(first third)| / median) sees them."""
    fast = [1e-5 * (1 + 0.001 * (i % 3)) for i in range(16)]
    stats = summarize(fast + [2e-3] * 4)  # 20 samples: thirds of 6, the last holds all 4 slow ones
    assert stats.rel_iqr < 0.10
    assert stats.rel_drift > 100  # (2e-3 - 1e-5) / 1e-5
    assert stats.noisy


def test_drift_rule_is_order_aware_and_needs_three_samples():
    steady = summarize([1.0, 1.01, 0.99, 1.0, 1.02, 1.0])
    assert steady.rel_drift == pytest.approx(abs(1.01 - 1.005) / 1.0, abs=0.01) and not steady.noisy
    # the same values sorted ascending drift by 2 %: under the 10 % threshold
    assert not summarize(sorted([1.0, 1.01, 0.99, 1.0, 1.02, 1.0])).noisy
    assert summarize([1.0, 9.0]).rel_drift == 0.0  # two samples: no thirds (the IQR rule still applies)
    creep = summarize([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.15, 1.15, 1.15])
    assert creep.rel_drift == pytest.approx(0.15) and creep.noisy


def test_a_bare_loop_slower_than_every_harness_sample_is_noise():
    """harness_overhead_pct read -118.9 % on a loaded CPU: the bare loop (one sample) ran 2.19x
    slower than the harness median, which only a change of load explains."""
    harness = summarize([1.0, 1.01, 0.99, 1.0, 1.02])
    assert not harness.noisy
    assert harness.noisy_against(2.189)  # overhead = 1 - 2.189 / 1.0 = -118.9 %
    assert not harness.noisy_against(0.9)  # a real 10 % harness overhead is a finding, not noise
    assert not harness.noisy_against(1.05)  # within the threshold of the slowest sample


def test_figures_that_are_not_times_have_their_own_median():
    """TFLOP/s per repeat: the median in TFLOP/s (not a field named _s), the count, the noise rule."""
    from aifbench.timing import summarize_figures

    st = summarize_figures([400.0, 410.0, 390.0, 405.0])
    assert (st.median, st.n, st.noisy) == (402.5, 4, False)
    assert summarize_figures([100.0, 100.0, 100.0, 200.0, 200.0, 200.0]).noisy  # drift of 100 %
