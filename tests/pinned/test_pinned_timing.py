"""Timing statistics pinned to values worked out by hand (and numpy's 'linear' percentile as an
independent reference), on a sample set where mean, median and every quantile differ."""

from __future__ import annotations

import numpy as np
import pytest

from aifbench.timing import Timer, TimingConfig, quantile, summarize

# sorted: 1, 2, 3, 4, 10 (n = 5, positions 0..4); given unsorted to check the sort
SAMPLES = [10.0, 3.0, 1.0, 4.0, 2.0]


def test_statistics_of_a_skewed_sample_set_by_hand():
    s = summarize(SAMPLES)
    assert s.samples_s == tuple(SAMPLES)          # raw samples kept in the order measured
    assert s.median_s == 3.0                      # middle of 1 2 3 4 10
    assert s.mean_s == 4.0                        # 20 / 5: differs from the median
    assert s.min_s == 1.0 and s.max_s == 10.0
    assert s.iqr_s == pytest.approx(2.0)          # p75 at position 3 (4) - p25 at position 1 (2)
    assert s.p5_s == pytest.approx(1.2)           # position 0.2: 1 + 0.2 * (2 - 1)
    assert s.p95_s == pytest.approx(8.8)          # position 3.8: 4 + 0.8 * (10 - 4)
    assert s.rel_iqr == pytest.approx(2.0 / 3.0) and s.noisy and s.n == 5


@pytest.mark.parametrize("q", [0.05, 0.25, 0.5, 0.75, 0.95, 0.0, 1.0])
def test_quantile_matches_numpy_linear(q):
    assert quantile(sorted(SAMPLES), q) == pytest.approx(float(np.percentile(SAMPLES, 100 * q)))


def test_a_quiet_sample_set_is_not_noisy():
    s = summarize([1.0, 1.01, 1.02, 1.03, 1.04])  # IQR 0.02 / median 1.02: about 2 %
    assert s.iqr_s == pytest.approx(0.02) and not s.noisy


def scripted_clock(times_ns):
    it = iter(times_ns)
    return lambda: next(it)


def test_a_sample_is_the_time_of_inner_calls_divided_by_inner():
    calls = []
    timer = Timer("cpu", TimingConfig(warmup=1, repeats=2, inner=4), clock=scripted_clock([0, 4000, 10000, 18000]))
    s = timer.time(lambda: calls.append(1))
    assert len(calls) == 1 + 2 * 4                # warm-up, then 2 repeats of 4 calls
    assert s.samples_s == pytest.approx((1e-6, 2e-6))  # 4000 ns / 4, 8000 ns / 4
    assert s.median_s == pytest.approx(1.5e-6) and s.min_s == pytest.approx(1e-6)


@pytest.mark.parametrize("kw", [dict(repeats=0), dict(inner=0), dict(warmup=-1), dict(repeats=-2)])
def test_guards_refuse_before_anything_is_called(kw):
    calls = []
    timer = Timer("cpu", TimingConfig(warmup=2, repeats=3, inner=1), clock=scripted_clock(range(0, 10**6, 1000)))
    with pytest.raises(ValueError, match=">= 1"):
        timer.time(lambda: calls.append(1), **kw)
    assert calls == []                            # refused up front, not failing later for another reason
