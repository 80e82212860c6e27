"""The sampler protocol the runner uses around every timed region.

    sampler = open_sampler(ctx, interval_s)          # once per rank
    with sampler.window(case_id) as win:             # around Benchmark.measure()
        measurement = bench.measure(timer)
    win.metrics  -> list[Metric]  (energy_j, power_mean_w, ... attached to the case)
    win.rows     -> list[dict]    (telemetry table rows: the full time series)
    win.flags    -> list[str]     (validity flags: 'thermal_throttle', 'ecc_errors', ...)
    sampler.describe() -> str     (runs.telemetry: 'nvml', 'cpu' or 'unavailable: <reason>')
    sampler.close()
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from aifbench.benchmarks.base import Metric


@dataclass
class Window:
    """What one timed window yielded; filled when the `with` block exits."""

    case_id: str
    metrics: list[Metric] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


class Sampler(Protocol):
    def window(self, case_id: str) -> contextlib.AbstractContextManager[Window]: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class NullSampler:
    """No telemetry: windows stay empty and the run records why."""

    def __init__(self, reason: str = "telemetry disabled"):
        self.reason = reason

    @contextlib.contextmanager
    def window(self, case_id: str) -> Iterator[Window]:
        yield Window(case_id)

    def describe(self) -> str:
        return f"unavailable: {self.reason}"

    def close(self) -> None:
        pass
