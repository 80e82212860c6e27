"""Statistics on raw samples: Mann-Whitney U, bootstrap interval of a median ratio, robust z.

No scipy: the formulas are written out here with their sources.

- Mann-Whitney U (Mann & Whitney 1947, Ann. Math. Statist. 18:50-60): U_a = R_a - n_a(n_a+1)/2,
  R_a the rank sum of sample a in the pooled sample (mid-ranks for ties). Without ties and with
  n_a, n_b <= EXACT_MAX the two-sided p-value is exact, from the null distribution of U: the
  number of arrangements with U = u is the coefficient of q^u in the Gaussian binomial
  [n_a + n_b choose n_a]_q (Mann & Whitney's recursion). Otherwise the normal approximation
  with tie correction (Lehmann 1975, *Nonparametrics*, eq. 1.45):
  mu = n_a n_b / 2, sigma^2 = n_a n_b / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))),
  z = (|U_a - mu| - 1/2) / sigma (continuity correction), p = erfc(z / sqrt 2).
- Bootstrap percentile interval (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*,
  ch. 13): resample a and b independently with replacement, B times; the 2.5 and 97.5
  percentiles of median(a*) / median(b*) bound the 95 % interval. Seeded: reproducible.
- Robust z-score (Iglewicz & Hoaglin 1993, *How to Detect and Handle Outliers*, p. 12):
  z_i = 0.6745 (x_i - median) / MAD, |z| > 3.5 an outlier. When MAD is 0, the mean absolute
  deviation scaled by 1.253314 stands in (the same book's fallback; both estimate sigma).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

EXACT_MAX = 25          # exact U distribution up to this many samples per side (no ties)
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_MAX_N = 2000  # larger samples are thinned (every k-th sorted value) before resampling
DEFAULT_SEED = 20240601
OUTLIER_Z = 3.5


@dataclass(frozen=True, slots=True)
class Difference:
    """a against b: ratio of medians with its bootstrap interval, and the U test."""

    n_a: int
    n_b: int
    ratio: float        # median(a) / median(b)
    ci_low: float
    ci_high: float
    u: float            # U statistic of a
    p_value: float      # two-sided
    method: str         # 'exact' or 'normal'

    def significant(self, alpha: float = 0.05) -> bool:
        """Different at level alpha by the U test and the interval excludes 1."""
        return self.p_value < alpha and not (self.ci_low <= 1.0 <= self.ci_high)


def rankdata(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid-ranks (1-based, ties share their mean rank) and the sizes of the tie groups."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    _, first, counts = np.unique(xs, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0  # mean of 1-based ranks first+1 .. first+count
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.repeat(mid, counts)
    return ranks, counts


def _u_null_counts(n_a: int, n_b: int) -> np.ndarray:
    """counts[u] = arrangements of n_a a's and n_b b's with U_a = u (Gaussian binomial coeffs)."""
    # table[j][i] = counts for (i a's, j b's); recursion c(i, j) = c(i-1, j) shifted by j + c(i, j-1)
    prev = [np.ones(1, dtype=float) for _ in range(n_a + 1)]  # j = 0: only u = 0
    for j in range(1, n_b + 1):
        cur = [np.ones(1, dtype=float)]
        for i in range(1, n_a + 1):
            size = i * j + 1
            c = np.zeros(size)
            left = cur[i - 1]        # (i-1, j): the last element is an a above all j b's: +j
            c[j:j + len(left)] += left
            up = prev[i]             # (i, j-1): the last element is a b
            c[:len(up)] += up
            cur.append(c)
        prev = cur
    return prev[n_a]


def mann_whitney(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    """(U of a, two-sided p-value, 'exact' | 'normal')."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        raise ValueError("Mann-Whitney needs samples on both sides")
    ranks, ties = rankdata(np.concatenate([a, b]))
    u = float(ranks[:n_a].sum() - n_a * (n_a + 1) / 2.0)
    mu = n_a * n_b / 2.0
    if (ties == 1).all() and max(n_a, n_b) <= EXACT_MAX:
        counts = _u_null_counts(n_a, n_b)
        probs = counts / counts.sum()
        k = int(round(u))
        tail = probs[: min(k, n_a * n_b - k) + 1].sum()  # the distribution is symmetric about mu
        return u, float(min(1.0, 2.0 * tail)), "exact"
    n = n_a + n_b
    tie_term = float((ties.astype(float) ** 3 - ties).sum()) / (n * (n - 1))  # n >= 2: both sides non-empty
    var = n_a * n_b / 12.0 * ((n + 1) - tie_term)
    if var <= 0:  # every value identical: no evidence of a difference
        return u, 1.0, "normal"
    z = max(abs(u - mu) - 0.5, 0.0) / math.sqrt(var)
    return u, float(math.erfc(z / math.sqrt(2.0))), "normal"


def _thin(x: np.ndarray) -> np.ndarray:
    if len(x) <= BOOTSTRAP_MAX_N:
        return x
    step = math.ceil(len(x) / BOOTSTRAP_MAX_N)
    return np.sort(x)[::step]


def bootstrap_median_ratio(a: np.ndarray, b: np.ndarray, *, resamples: int = BOOTSTRAP_RESAMPLES,
                           level: float = 0.95, seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of median(a) / median(b) at `level`."""
    a = _thin(np.asarray(a, dtype=float))
    b = _thin(np.asarray(b, dtype=float))
    rng = np.random.default_rng(seed)
    med_a = np.median(a[rng.integers(0, len(a), size=(resamples, len(a)))], axis=1)
    med_b = np.median(b[rng.integers(0, len(b), size=(resamples, len(b)))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = med_a / med_b
    ratios = ratios[np.isfinite(ratios)]
    if not len(ratios):
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(ratios, [tail, 100.0 - tail])
    return float(low), float(high)


def compare_samples(a: ArrayLike, b: ArrayLike, *, seed: int = DEFAULT_SEED) -> Difference:
    """Difference of sample a against sample b (both in the same unit)."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    u, p, method = mann_whitney(xa, xb)
    med_b = float(np.median(xb))
    ratio = float(np.median(xa)) / med_b if med_b else math.nan
    low, high = bootstrap_median_ratio(xa, xb, seed=seed)
    return Difference(len(xa), len(xb), ratio, low, high, u, p, method)


def robust_z(values: ArrayLike) -> np.ndarray:
    """Robust z-scores 0.6745 (x - median) / MAD (MeanAD fallback); zeros when no spread."""
    x = np.asarray(values, dtype=float)
    med = np.median(x)
    dev = x - med
    mad = np.median(np.abs(dev))
    z: np.ndarray  # numpy's stubs give Any for an array over a numpy scalar
    if mad > 0:
        z = 0.6745 * dev / mad
        return z
    mean_ad = np.mean(np.abs(dev))
    if mean_ad > 0:
        z = dev / (1.253314 * mean_ad)
        return z
    return np.zeros_like(x)
