"""All timing in aifbench: warm-up, then N timed repeats, raw samples kept, robust statistics.

GPU: one pair of CUDA events per repeat (device time of the enqueued work, no host jitter).
CPU: time.perf_counter_ns around each repeat. Tests inject a fake clock (`clock=`), as
torch.utils.benchmark's own tests do, so the statistics are checked without real time.

Telemetry regions: a Timer given a `regions` object (the runner's, aifbench.telemetry.regions)
samples timed work into named telemetry windows. `time()` puts its timed repeats (not its
warm-up) in region "main" (or `region=`) unless the caller is already inside a region; `with
timer.region("bare"):` scopes other timed work. `time_once` and `calls_lasting` open none.
Without a regions object (tests, benchmarks used directly) region() does nothing.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, Protocol, Sequence

from aifbench.units import NS_PER_S

NOISE_THRESHOLD = 0.10
"""A series is noisy when its spread or its drift, relative to its median, exceeds this:
- spread: IQR / median (p75 - p25 over the median);
- drift: |median(last third) - median(first third)| / median, with thirds of floor(n / 3)
  samples in the order they were taken (n >= 3; the machine got busier or quieter while timing,
  e.g. another job starting: a 200x slowdown halfway through is drift far above 10 %)."""

Clock = Callable[[], int]  # returns nanoseconds
MAIN_REGION = "main"
EXTEND_CAP = 100
"""extend=True adds at most this many times the configured repeats"""


class RegionSink(Protocol):
    """What a Timer needs of the runner's telemetry regions (aifbench.telemetry.regions.Regions)."""

    active: str | None
    min_timed_s: float

    def region(self, name: str) -> ContextManager[None]: ...


@dataclass(frozen=True, slots=True)
class TimingStats:
    """Statistics of raw per-repeat times, all in seconds."""

    samples_s: tuple[float, ...]
    median_s: float
    iqr_s: float
    p5_s: float
    p95_s: float
    min_s: float
    max_s: float
    mean_s: float

    @property
    def n(self) -> int:
        return len(self.samples_s)

    @property
    def noisy(self) -> bool:
        """Spread or drift above NOISE_THRESHOLD: the machine was busy or the operation too short to time."""
        return self.median_s > 0 and (self.rel_iqr > NOISE_THRESHOLD or self.rel_drift > NOISE_THRESHOLD)

    @property
    def rel_iqr(self) -> float:
        return self.iqr_s / self.median_s if self.median_s > 0 else float("nan")

    @property
    def rel_drift(self) -> float:
        """|median(last third) - median(first third)| / median, samples in time order; 0 below 3 samples."""
        third = len(self.samples_s) // 3
        if third == 0 or self.median_s <= 0:
            return 0.0
        first, last = statistics.median(self.samples_s[:third]), statistics.median(self.samples_s[-third:])
        return abs(last - first) / self.median_s

    def noisy_against(self, floor_s: float) -> bool:
        """Whether a comparison of this series with `floor_s`, a time that cannot honestly be slower
        than the series (the same work without the harness: a bare loop), is noise: the series is
        noisy, or floor_s > max_s * (1 + NOISE_THRESHOLD), slower than every timed sample by more
        than the threshold, which only a change of load between the two can explain."""
        return self.noisy or floor_s > self.max_s * (1 + NOISE_THRESHOLD)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default 'linear' method) of sorted values."""
    if not sorted_values:
        raise ValueError("quantile of no samples")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_s: Sequence[float]) -> TimingStats:
    """Median, IQR (p75 - p25), p5, p95, min, max, mean of raw samples in seconds."""
    s = sorted(float(x) for x in samples_s)
    if not s:
        raise ValueError("no timing samples")
    return TimingStats(
        samples_s=tuple(float(x) for x in samples_s),
        median_s=quantile(s, 0.5),
        iqr_s=quantile(s, 0.75) - quantile(s, 0.25),
        p5_s=quantile(s, 0.05),
        p95_s=quantile(s, 0.95),
        min_s=s[0],
        max_s=s[-1],
        mean_s=statistics.fmean(s),
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class FigureStats:
    """Median of per-repeat figures that are not times (TFLOP/s, polls/s), in the figures' own unit,
    with their count and TimingStats' noise rule (spread or drift above NOISE_THRESHOLD)."""

    median: float
    n: int
    noisy: bool


def summarize_figures(values: Sequence[float]) -> FigureStats:
    """FigureStats of per-repeat figures in any unit (the quantiles of `summarize` do not depend on it)."""
    st = summarize(values)
    return FigureStats(median=st.median_s, n=st.n, noisy=st.noisy)


@dataclass(frozen=True, kw_only=True, slots=True)
class TimingConfig:
    warmup: int = 3
    """untimed calls before timing (compilation, caches, clocks ramping up)"""
    repeats: int = 10
    """timed repeats; each is one sample"""
    inner: int = 1
    """calls per repeat; the sample is their total time / inner (for operations shorter than a clock tick)"""


class Timer:
    """Times a callable on `device` ('cpu' or 'cuda[:i]')."""

    def __init__(self, device: str = "cpu", config: TimingConfig | None = None, clock: Clock | None = None,
                 regions: RegionSink | None = None):
        self.device = str(device)
        self.config = config or TimingConfig()
        self.clock = clock or time.perf_counter_ns
        self.uses_cuda_events = self.device.startswith("cuda") and clock is None
        self.regions = regions

    @contextlib.contextmanager
    def region(self, name: str) -> Iterator[None]:
        """Sample the block's work into telemetry region `name` (entering it again accumulates);
        the device is synchronised on entry and exit so only the block's work is inside. A
        region inside a region is a ValueError. No-op without a regions object."""
        if self.regions is None:
            yield
            return
        self.synchronize()
        with self.regions.region(name):
            try:
                yield
            finally:
                self.synchronize()

    def time(self, fn: Callable[[], object], *, warmup: int | None = None, repeats: int | None = None,
             inner: int | None = None, before_each: Callable[[], object] | None = None,
             extend: bool = False, region: str | None = None) -> TimingStats:
        """Warm up, then time `repeats` samples of `inner` calls each; returns their statistics.

        `before_each` runs before every repeat, outside the timed region (e.g. to reset state).
        The repeats (not the warm-up) run in telemetry region `region` (default "main", and
        none when already inside a region; naming a region there is the nesting ValueError).
        `extend`: add repeats (up to EXTEND_CAP x repeats) until they last the regions object's
        min_timed_s, so a short operation's telemetry window is long enough to judge.
        """
        warmup = self.config.warmup if warmup is None else warmup
        repeats = self.config.repeats if repeats is None else repeats
        inner = self.config.inner if inner is None else inner
        if repeats < 1 or inner < 1 or warmup < 0:
            raise ValueError("repeats and inner must be >= 1, warmup >= 0")
        for _ in range(warmup):
            if before_each:
                before_each()
            fn()
        self.synchronize()
        own = self.regions is not None and (self.regions.active is None or region is not None)
        with self.region(region or MAIN_REGION) if own else contextlib.nullcontext():
            samples = [self.time_once(fn, inner, before_each) for _ in range(repeats)]
            floor_s = self.regions.min_timed_s if extend and self.regions is not None else 0.0
            while sum(samples) < floor_s and len(samples) < EXTEND_CAP * repeats:
                samples.append(self.time_once(fn, inner, before_each))
        return summarize([s / inner for s in samples])

    def time_once(self, fn: Callable[[], object], inner: int = 1,
                  before_each: Callable[[], object] | None = None) -> float:
        """Seconds of `inner` back-to-back calls as one sample (one event or clock pair around
        all of them), no warm-up; `before_each` runs first, untimed."""
        if before_each:
            before_each()
        if self.uses_cuda_events:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.synchronize()
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            seconds: float = start.elapsed_time(end) / 1e3  # ms -> s
            return seconds
        self.synchronize()
        t0 = self.clock()
        for _ in range(inner):
            fn()
        self.synchronize()
        return (self.clock() - t0) / NS_PER_S

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    def calls_lasting(self, fn: Callable[[], object], seconds: float, floor: int = 1,
                      cap: int | None = None) -> int:
        """Back-to-back calls of `fn` that last about `seconds` (at least `floor`, at most `cap`),
        from one call to warm up, then one sample of 4 calls."""
        fn()
        per_call = self.time_once(fn, 4) / 4
        calls = max(floor, math.ceil(seconds / max(per_call, 1e-9)))
        return min(cap, calls) if cap else calls
