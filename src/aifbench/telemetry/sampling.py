"""The sampling machinery shared by every backend: a poll thread per window, suspension.

A backend implements `_begin()`, `_poll() -> Sample | None` and `_summarize(samples)`. The
window polls once synchronously when it opens, then a daemon thread polls every interval
until the window closes, then once more: so even a window shorter than the interval has a
first and a last sample. A non-live backend (a replayed trace) is drained instead: every
recorded sample of the window is polled at exit, independent of wall time, so replays are
deterministic. The runner opens one window per segment of a timed region (see
aifbench.telemetry.regions), never one around a whole case; each filled window also carries
its poll count, sampled duration and first poll's time, from which regions accumulate.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterator

from aifbench.measurement import Metric
from aifbench.telemetry.base import Window
from aifbench.telemetry.config import DEFAULT_INTERVAL_S, check_interval

log = logging.getLogger(__name__)

_samplers: "weakref.WeakSet[PollingSampler]" = weakref.WeakSet()
_pause_lock = threading.Lock()


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Pause the poll threads of every sampler that exists now (their windows get
    telemetry_suspended); samplers opened inside the block are not paused by it."""
    with _pause_lock:
        paused = list(_samplers)
        for s in paused:
            s._paused += 1
    try:
        yield
    finally:
        with _pause_lock:
            for s in paused:
                s._paused -= 1


@dataclass
class Sample:
    """One poll: time in s (monotonic; recorded time in a replay) and field -> value; `others`:
    the same poll's readings of further devices (the other visible GPUs), in slot order."""

    t: float
    values: dict[str, float] = field(default_factory=dict)
    others: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Summary:
    metrics: list[Metric] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


class PollingSampler:
    """Base class: window() around a timed region, a poll thread inside it."""

    source = "none"
    live = True
    """False: no thread; the window is drained from recorded samples at exit"""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.interval_s = check_interval(interval_s, f"a {type(self).__name__}", off=False)  # off: no sampler
        self.clock = clock
        """seconds, monotonic: the poll grid's clock (tests inject a fake one, as the Timer's)"""
        self._errors = 0
        self._paused = 0
        _samplers.add(self)
        self.polls = 0
        """polls taken in the last window (the overhead benchmark reports the achieved rate)"""

    # --- backend hooks --------------------------------------------------------------------
    def _begin(self, case_id: str) -> None:
        """Reset per-window state before the first poll."""

    def _end(self, case_id: str) -> None:
        """After the last poll of the window."""

    def _poll(self) -> Sample | None:
        raise NotImplementedError

    def _summarize(self, samples: list[Sample]) -> Summary:
        raise NotImplementedError

    def describe(self) -> str:
        return self.source

    def close(self) -> None:
        pass

    # --- the window -----------------------------------------------------------------------
    @contextlib.contextmanager
    def window(self, case_id: str) -> Iterator[Window]:
        win = Window(case_id)
        samples: list[Sample] = []
        state = {"paused": False}
        self._errors = 0
        self._hook(self._begin, case_id)
        self._take(samples)
        stop = threading.Event()
        thread = None
        if self.live:
            thread = threading.Thread(target=self._loop, args=(stop, samples, state),
                                      name=f"aifbench-telemetry-{self.source}", daemon=True)
            thread.start()
        try:
            yield win
        finally:
            stop.set()
            if thread is not None:
                thread.join()
                self._take(samples)  # the closing sample
            else:
                while self._take(samples):
                    pass
            self._hook(self._end, case_id)
            self.polls = len(samples)
            self._fill(win, samples, state["paused"])

    def _loop(self, stop: threading.Event, samples: list[Sample], state: dict) -> None:
        """Poll on a fixed grid (start + k * interval), so the time a poll takes does not
        stretch the interval; a poll that overruns skips the grid points it missed."""
        next_t = self.clock()
        while True:
            now = self.clock()
            next_t += self.interval_s * max(1, math.ceil((now - next_t) / self.interval_s))
            if stop.wait(next_t - now):
                return
            if self._paused:
                state["paused"] = True
                continue
            self._take(samples)

    def _hook(self, fn, case_id: str) -> None:
        """_begin/_end, whose failure (a trace file that cannot be written) costs telemetry only."""
        try:
            fn(case_id)
        except Exception as exc:
            self._errors += 1
            log.warning("%s telemetry of %s: %s", self.source, case_id, exc, exc_info=log.isEnabledFor(logging.DEBUG))

    def _take(self, samples: list[Sample]) -> bool:
        """Poll once into samples; False when a non-live source has no more samples."""
        try:
            sample = self._poll()
        except Exception as exc:  # telemetry must never break a measurement
            self._errors += 1
            if self._errors == 1:
                log.warning("%s telemetry poll failed: %s", self.source, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return False
        if sample is None:
            return False
        samples.append(sample)
        return True

    def _fill(self, win: Window, samples: list[Sample], paused: bool) -> None:
        try:
            summary = self._summarize(samples)
        except Exception as exc:
            log.warning("%s telemetry summary of %s failed: %s", self.source, win.case_id, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))
            summary = Summary(flags=["telemetry_error"])
        win.metrics, win.rows, win.flags = summary.metrics, summary.rows, list(summary.flags)
        win.polls = len(samples)
        if samples:
            win.t0_s, win.duration_s = samples[0].t, samples[-1].t - samples[0].t
        if paused and "telemetry_suspended" not in win.flags:
            win.flags.append("telemetry_suspended")
        if self._errors and "telemetry_error" not in win.flags:
            win.flags.append("telemetry_error")


# --- helpers for summaries ------------------------------------------------------------------

def series(samples: list[Sample], name: str) -> tuple[list[float], list[float]]:
    """(times, values) of the samples that have field `name`."""
    pts = [(s.t, s.values[name]) for s in samples if s.values.get(name) is not None]
    return [float(p[0]) for p in pts], [float(p[1]) for p in pts]


def integrate(ts: list[float], vs: list[float]) -> float:
    """Trapezoid integral of v over t (W over s -> J)."""
    return sum((ts[i + 1] - ts[i]) * (vs[i] + vs[i + 1]) / 2 for i in range(len(ts) - 1))


def time_mean(ts: list[float], vs: list[float]) -> float:
    """Time-weighted mean (trapezoid); the plain mean when the samples span no time."""
    span = ts[-1] - ts[0] if ts else 0.0
    if span <= 0:
        return sum(vs) / len(vs)
    return integrate(ts, vs) / span


def rows_of(samples: list[Sample], source: str, scopes: dict[str, tuple[str, str]],
            gpu_index: int | None = None, gpu_uuid: str | None = None) -> list[dict]:
    """Telemetry-table rows (t_s relative to the first sample) of every sampled value."""
    if not samples:
        return []
    t0 = samples[0].t
    rows = []
    for s in samples:
        for name, value in s.values.items():
            unit, scope = scopes[name]
            rows.append({"source": source, "gpu_index": gpu_index, "gpu_uuid": gpu_uuid, "scope": scope,
                         "t_s": round(s.t - t0, 6), "field": name,
                         "value": None if value is None else float(value), "unit": unit})
    return rows
