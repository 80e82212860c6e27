"""The sampler protocol: one window around one stretch of timed work.

    sampler = sampler_for(device, plan.telemetry)    # once per rank (aifbench.telemetry.select)
    with sampler.window(label) as win:               # around one segment of a timed region
        ...                                          # (aifbench.telemetry.regions opens these)
    win.metrics  -> list[Metric]  (energy_j, power_mean_w, ... of this window)
    win.rows     -> list[dict]    (telemetry table rows: the full time series, t_s from win.t0_s)
    win.flags    -> list[str]     (validity flags: 'thermal_throttle', 'ecc_errors', ...)
    win.polls, win.duration_s, win.t0_s  (polls taken; s from first to last poll; first poll's time)
    sampler.describe() -> str     (runs.telemetry: 'nvml', 'cpu' or 'unavailable: <reason>')
    sampler.close()
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from aifbench.measurement import Metric


@dataclass
class Window:
    """What one timed window yielded; filled when the `with` block exits."""

    case_id: str
    metrics: list[Metric] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    polls: int = 0
    """samples taken in the window (its opening and closing polls included)"""
    duration_s: float = 0.0
    """seconds from the first to the last poll (recorded time in a replay)"""
    t0_s: float = 0.0
    """time of the first poll (monotonic s; recorded s in a replay): orders segments of a region"""


class Sampler(Protocol):
    """What the runner and aifbench.telemetry.regions use of a sampler."""

    interval_s: float
    """seconds between polls (0: no polling)"""
    live: bool
    """True: polls a device in real time; False: off, or a replay of recorded samples"""

    def window(self, case_id: str) -> contextlib.AbstractContextManager[Window]: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


class NullSampler:
    """No telemetry: windows stay empty and the run records why."""

    interval_s: float = 0.0
    live: bool = False

    def __init__(self, reason: str = "telemetry disabled"):
        self.reason = reason

    @contextlib.contextmanager
    def window(self, case_id: str) -> Iterator[Window]:
        yield Window(case_id)

    def describe(self) -> str:
        return f"unavailable: {self.reason}"

    def close(self) -> None:
        pass
