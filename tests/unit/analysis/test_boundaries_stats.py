"""analysis/stats.py on both sides of every boundary: significance at alpha exactly and an
interval touching 1, the exact U distribution up to 25 per side and the normal one from 26 or with
ties, the MAD = 0 fallback, empty and NaN input, a zero median. Expected values by hand (the
exact p-values count arrangements; the normal one follows Lehmann's formula written out here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aifbench.analysis import stats as S


def diff(p: float, low: float, high: float) -> S.Difference:
    return S.Difference(5, 5, (low + high) / 2, low, high, 0.0, p, "exact")


@pytest.mark.parametrize("p, low, high, significant", [
    (0.01, 1.01, 1.2, True),
    (0.01, 0.8, 0.99, True),     # slower: the interval lies below 1
    (0.05, 1.01, 1.2, False),    # p exactly alpha: not below it
    (0.0499, 1.01, 1.2, True),
    (0.01, 1.0, 1.2, False),     # the interval touches 1
    (0.01, 0.8, 1.0, False),
    (0.2, 1.1, 1.2, False),      # the U test says no
])
def test_significant_needs_both_on_both_sides(p, low, high, significant):
    assert diff(p, low, high).significant() is significant


def test_exact_p_values_counted_by_hand():
    """[1 2 3] vs [4 5 6]: U = 6 - 3 x 4 / 2 = 0; 1 of C(6, 3) = 20 arrangements has U = 0, so
    p = 2 / 20 = 0.1. [1 3] vs [2 4]: ranks 1 3, U = 4 - 3 = 1; of C(4, 2) = 6 arrangements
    U = 0 and U = 1 one each: p = 2 x 2 / 6."""
    assert S.mann_whitney(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])) == (0.0, pytest.approx(0.1), "exact")
    assert S.mann_whitney(np.array([1.0, 3]), np.array([2.0, 4])) == (1.0, pytest.approx(4 / 6), "exact")
    assert S.mann_whitney(np.array([4.0, 5, 6]), np.array([1.0, 2, 3]))[0] == 9.0  # U of a = 15 - 6


@pytest.mark.parametrize("n, method", [(25, "exact"), (26, "normal")])
def test_exact_up_to_25_per_side(n, method):
    u, p, how = S.mann_whitney(np.arange(n, dtype=float), np.arange(n, dtype=float) + 1000)
    assert S.mann_whitney(np.arange(3, dtype=float), np.arange(n, dtype=float) + 1000)[2] == method  # the larger side decides
    assert (u, how) == (0.0, method)
    if method == "exact":  # U = 0 in 1 of C(50, 25) arrangements
        assert p == pytest.approx(2 / math.comb(50, 25), rel=1e-9)


def test_ties_use_the_normal_approximation_by_hand():
    """[1 1 2] vs [2 3 3]: mid-ranks 1.5 1.5 3.5 | 3.5 5.5 5.5, U = 6.5 - 6 = 0.5, mu = 4.5;
    tie groups 2 2 2: sum(t^3 - t) = 18, / (6 x 5) = 0.6; var = 9 / 12 x (7 - 0.6) = 4.8;
    z = (4 - 0.5) / sqrt 4.8; p = erfc(z / sqrt 2)."""
    u, p, how = S.mann_whitney(np.array([1.0, 1, 2]), np.array([2.0, 3, 3]))
    assert (u, how) == (0.5, "normal")
    assert p == pytest.approx(math.erfc(3.5 / math.sqrt(4.8) / math.sqrt(2)))


def test_a_u_at_its_mean_has_p_1():
    """[1 2] vs [1 2]: mid-ranks 1.5 3.5 | 1.5 3.5, U = 5 - 3 = 2 = mu = 2 x 2 / 2: the continuity
    correction takes |U - mu| - 1/2 below 0, so z = 0 and p = erfc(0) = 1."""
    assert S.mann_whitney(np.array([1.0, 2]), np.array([1.0, 2])) == (2.0, 1.0, "normal")


def test_identical_samples_are_no_evidence():
    assert S.mann_whitney(np.array([1.0, 1]), np.array([1.0, 1])) == (2.0, 1.0, "normal")


def test_an_empty_side_is_refused():
    with pytest.raises(ValueError, match="both sides"):
        S.mann_whitney(np.array([]), np.array([1.0]))
    with pytest.raises(ValueError, match="both sides"):
        S.compare_samples([math.nan, math.nan], [1.0, 2.0])  # nothing finite left


def test_compare_drops_nan_and_a_zero_median_has_no_ratio():
    d = S.compare_samples([1.0, 2.0, 3.0, math.nan], [4.0, 5.0, 6.0])
    assert (d.n_a, d.n_b, d.u, d.method) == (3, 3, 0.0, "exact")
    assert d.ratio == pytest.approx(2 / 5) and d.p_value == pytest.approx(0.1)
    zero = S.compare_samples([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert math.isnan(zero.ratio) and math.isnan(zero.ci_low) and math.isnan(zero.ci_high)


def test_bootstrap_interval_is_two_sided_95_percent():
    """a, b = 0 .. 999 (uniform, 1000 values): the median of n draws has sd about 1 / (2 f sqrt n)
    = 1000 / (2 sqrt 1000) = 15.8 (f = 1/1000, the density); a ratio of two such medians of 499.5
    has sd about sqrt 2 x 15.8 / 499.5 = 0.0448; the 2.5 .. 97.5 % interval's half-width is
    1.96 x 0.0448 = 0.088 (a 90 % one: 1.645 x 0.0448 = 0.074; 97.5 % one-sided: 0.100)."""
    x = np.arange(1000, dtype=float)
    low, high = S.bootstrap_median_ratio(x, x)
    assert 0.081 < (high - low) / 2 < 0.095
    assert low < 1.0 < high


def test_robust_z_by_hand():
    """1 2 3 4 100: median 3, |d| sorted 0 1 1 2 97 -> MAD 1: z = 0.6745 x (x - 3)."""
    assert S.robust_z([1, 2, 3, 4, 100]) == pytest.approx(0.6745 * np.array([-2, -1, 0, 1, 97]))


def test_robust_z_falls_back_to_the_scaled_mean_deviation_when_mad_is_0():
    """5 5 5 5 10: MAD 0; mean |d| = 5 / 5 = 1; z = d / (1.253314 x 1)."""
    assert S.robust_z([5, 5, 5, 5, 10]) == pytest.approx(np.array([0, 0, 0, 0, 5 / 1.253314]))
    assert S.robust_z([7, 7, 7]).tolist() == [0.0, 0.0, 0.0]
    assert S.robust_z([7]).tolist() == [0.0]


def test_thinning_only_above_2000_samples():
    """2000 samples pass as they are (order kept); 2001 are sorted and every ceil(2001 / 2000) = 2nd
    kept: 1001 values 0, 2, .., 2000; 4001: every 3rd, 1334 values."""
    down = np.arange(2000, dtype=float)[::-1]
    assert S._thin(down) is down
    assert S._thin(np.arange(2001, dtype=float)[::-1]).tolist() == list(range(0, 2001, 2))
    assert len(S._thin(np.arange(4001, dtype=float))) == 1334
