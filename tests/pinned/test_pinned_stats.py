"""The statistics behind outlier and drift verdicts, pinned by hand: robust z (Iglewicz &
Hoaglin: 0.6745 (x - median) / MAD; MAD = 0 -> mean absolute deviation x 1.253314), the exact
Mann-Whitney p-value of fully separated samples, and "significant" needing BOTH the U test and
a bootstrap interval that excludes 1."""

from __future__ import annotations

import pytest

from aifbench.analysis.stats import Difference, mann_whitney, robust_z


def test_robust_z_by_hand():
    # median 3, deviations -2 -1 0 1 97, MAD = median(0 1 1 2 97) = 1
    assert robust_z([1, 2, 3, 4, 100]).tolist() == pytest.approx([-1.349, -0.6745, 0.0, 0.6745, 65.4265])
    # MAD 0: mean absolute deviation 4 / 5 = 0.8; z = 4 / (1.253314 * 0.8) = 3.98942
    assert robust_z([5, 5, 5, 5, 9]).tolist() == pytest.approx([0, 0, 0, 0, 3.98942], abs=1e-5)


@pytest.mark.parametrize("a, b, u, p", [
    ([1, 2, 3], [4, 5, 6], 0.0, 2 / 20),           # 1 of C(6,3) = 20 arrangements has U = 0; two-sided
    ([5, 6, 7, 8], [1, 2, 3, 4], 16.0, 2 / 70),     # U = 4 * 4 at the other end of C(8,4) = 70
])
def test_exact_p_value_of_separated_samples(a, b, u, p):
    assert mann_whitney(a, b)[:2] == pytest.approx((u, p))


def _difference(p: float, low: float, high: float) -> Difference:
    return Difference(n_a=10, n_b=10, ratio=(low + high) / 2, ci_low=low, ci_high=high, u=0.0, p_value=p,
                      method="exact")


def test_significant_needs_the_test_and_the_interval():
    assert _difference(0.01, 1.05, 1.20).significant(0.05)          # both agree
    assert not _difference(0.01, 0.95, 1.10).significant(0.05)      # interval holds 1: not a difference
    assert not _difference(0.20, 1.05, 1.20).significant(0.05)      # test not significant at 0.05
    assert _difference(0.20, 1.05, 1.20).significant(0.25)          # ... but at 0.25
