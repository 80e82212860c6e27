"""The one A/B protocol of aifbench: two sides of a same-run comparison, interleaved in rounds.

Used by every comparison made inside one run: gemm's harness vs a bare torch.matmul loop
(harness_overhead_pct), llm_train's aifbench vs the transformers reference (speedup_vs_ref),
telemetry_overhead's sampler off vs on, and llm_infer's reference once it has one.

Protocol:
- Rounds in ABBA order (round 0: A then B, round 1: B then A, ...), so a linear drift of clocks,
  power or temperature over two rounds hits both sides alike.
- In each round each side is one timed segment of `calls` back-to-back calls (Timer.time_once:
  one CUDA event pair or clock pair around all of them), sized by the caller, typically with
  Timer.calls_lasting(fn, round_s), so a round is long enough to be timed cleanly. A side's
  per-round figure is seconds per call.
- The paired value of a round is `paired(a_s, b_s)` (a ratio or a difference of that round's two
  times). The figure reported is the mean of the paired values with a two-sided 95 % **paired t
  interval**: mean ± t(0.975, n-1) · sd / √n over rounds (Student 1908; any statistics text,
  e.g. NIST/SEMATECH e-Handbook §7.2.3.3 / §1.3.6.7.2 for the quantile). Why t and not a bootstrap:
  rounds are few (5-20), and the percentile bootstrap under-covers at such n, while each round's
  value is itself a mean over many calls, so near-normal; the t interval is also deterministic,
  which lets tests pin it to hand-computed values.
- `noisy`: the interval is wider than the band it will be judged against, i.e. its half-width
  exceeds the tolerance `tol` of that band (harness ±3 % -> tol 3): such an interval can never lie
  wholly inside the band, so the comparison cannot pass whatever its mean. With fewer than two
  rounds there is no interval: bounds are NaN and the result is noisy.

Raw per-round values (both sides' seconds per call and the paired values) go to the samples
table (`interval_metrics`). No torch here: the timer does the device work.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from dataclasses import dataclass
from typing import Callable, ContextManager

from aifbench.measurement import Measurement, Metric
from aifbench.timing import Timer

CONFIDENCE = 0.95


def _t_two_sided_prob(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df > 0 (Abramowitz & Stegun 26.7.3-26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        term, total = c, c if df > 1 else 0.0
        for k in range(3, df - 1, 2):
            term *= (k - 1) / k * c * c
            total += term
        return 2 / math.pi * (theta + s * total)
    term = total = 1.0
    for k in range(2, df - 1, 2):
        term *= (k - 1) / k * c * c
        total += term
    return s * total


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student t critical value t((1 + confidence) / 2, df): bisection of the exact
    integer-df CDF (A&S 26.7.3-26.7.4) to float precision, the same with or without scipy."""
    if df < 1:
        raise ValueError("a t interval needs at least 2 rounds (df >= 1)")
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided_prob(mid, df) < confidence else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True, slots=True)
class Interval:
    """Mean of paired per-round values with its paired t interval, in the values' unit."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def noisy(self, tol: float) -> bool:
        """Wider than a band of ±tol: cannot lie wholly inside it (always, with < 2 rounds)."""
        return not self.half_width <= tol


def paired_t_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t(df = n-1) · sd / √n of per-round paired values (NaN bounds below 2 rounds)."""
    if not values:
        raise ValueError("no rounds")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, math.nan, math.nan, len(values))
    half = t_quantile(len(values) - 1, confidence) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


@dataclass(frozen=True, slots=True)
class ABResult:
    """Per-round seconds per call of each side, the paired values and their interval."""

    a_s: tuple[float, ...]
    b_s: tuple[float, ...]
    values: tuple[float, ...]
    interval: Interval
    calls_a: int
    calls_b: int

    def describe(self) -> str:
        """Protocol text for a metric's detail column."""
        return (f"A/B: {self.interval.n} rounds in ABBA order, {self.calls_a}/{self.calls_b} calls per side per "
                f"round; mean of the per-round values with a 95 % paired t interval")


def _nothing(_: str) -> ContextManager[None]:
    return contextlib.nullcontext()


def region_of(timer: Timer) -> Callable[[str], ContextManager[None]]:
    """timer.region (telemetry windows named per side) where the timer has it, else no-op."""
    return getattr(timer, "region", _nothing)


Around = Callable[[], ContextManager[None]]


def run_ab(timer: Timer, a: Callable[[], object], b: Callable[[], object], *, rounds: int,
           paired: Callable[[float, float], float], calls_a: int, calls_b: int | None = None,
           regions: tuple[str, str] | None = None, around: tuple[Around, Around] | None = None) -> ABResult:
    """Time `rounds` ABBA rounds of `calls_a` calls of `a` and `calls_b` (default calls_a) of `b`.

    `paired(a_s, b_s)` turns one round's seconds per call into its paired value. `regions`:
    telemetry region names of the two sides (Timer.region), so each side's power and clocks are
    kept apart. `around`: a context per side entered around each of its timed segments (e.g. a
    sampler window), after the region. Warm-up is the caller's: both sides must be warm."""
    if rounds < 1 or calls_a < 1 or (calls_b is not None and calls_b < 1):
        raise ValueError("rounds and calls must be >= 1")
    calls_b = calls_a if calls_b is None else calls_b
    region = region_of(timer) if regions else _nothing
    names = regions or ("", "")
    arounds = around or (contextlib.nullcontext, contextlib.nullcontext)
    sides = ((a, calls_a), (b, calls_b))
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for side in (0, 1) if r % 2 == 0 else (1, 0):
            fn, calls = sides[side]
            with region(names[side]), arounds[side]():
                seconds = timer.time_once(fn, calls) / calls
            times[side].append(seconds)
    values = [paired(x, y) for x, y in zip(*times)]
    return ABResult(tuple(times[0]), tuple(times[1]), tuple(values), paired_t_interval(values), calls_a, calls_b)


def interval_metrics(metric: str, result: ABResult, tol: float, detail: str = "",
                     transform: Callable[[float], float] | None = None) -> Measurement:
    """Rows `metric` stat mean, ci_low, ci_high (no bounds below 2 rounds; noisy: half-width > tol,
    the band it is judged against) and the per-round paired values as its raw samples.
    `transform`: an increasing or decreasing linear map of the paired values into `metric`'s unit
    (e.g. ratio -> loss %); the interval maps with it, its bounds re-ordered."""
    f = transform or (lambda v: v)
    i = result.interval
    lo, hi = sorted((f(i.low), f(i.high))) if not math.isnan(i.low) else (math.nan, math.nan)
    noisy = not (hi - lo) / 2 <= tol
    text = f"{result.describe()}; noisy when the half-width exceeds {tol:g}" + (f"; {detail}" if detail else "")
    rows = [Metric(metric, v, stat=stat, n_samples=i.n, noisy=noisy, detail=text)
            for stat, v in (("mean", f(i.mean)), ("ci_low", lo), ("ci_high", hi)) if not math.isnan(v)]
    return Measurement(rows, {metric: tuple(f(v) for v in result.values)})


def speedup_vs_ref(timer: Timer, own: Callable[[], object], ref: Callable[[], object], *, rounds: int,
                   calls: int, regions: tuple[str, str] | None = ("main", "ref")) -> ABResult:
    """aifbench (A) vs a reference implementation (B) of the same work: per round ref s/call /
    own s/call (> 1: aifbench faster). What llm_train's speedup_vs_ref uses, and what an inference
    reference calls; report it with interval_metrics(name, result, tol)."""
    return run_ab(timer, own, ref, rounds=rounds, calls_a=calls, paired=lambda own_s, ref_s: ref_s / own_s,
                  regions=regions)
