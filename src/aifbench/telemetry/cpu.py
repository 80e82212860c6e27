"""CPU fallback sampler: process and system utilisation and memory (psutil), RAPL package energy.

RAPL comes from the powercap sysfs tree (/sys/class/powercap/intel-rapl:<N>/energy_uj, µJ,
wrapping at max_energy_range_uj; AMD Zen CPUs appear there too). Only top-level `package-*`
zones are summed: their sub-zones (core, uncore, dram) are parts of them. Since Linux 5.10
energy_uj is readable by root only, so on most machines energy stays empty and the sampler
says why. Module power of a GH200 is never added here: it is an NVML reading of its own.

CPU utilisation comes from the kernel's CPU-time counters (psutil's Process.cpu_times and
cpu_times: /proc/<pid>/stat and /proc/stat on Linux), which advance in clock ticks of
1/USER_HZ = 10 ms. A value is the counter delta over the wall time between two readings, so
its quantisation error is up to 2 ticks (user and system time are truncated separately)
divided by that time: 250 % of a core over an 8 ms window, 20 % over 0.1 s, 2 % over 1 s. Hence:

- the window means (process_cpu_util_mean_pct, system_cpu_util_mean_pct) are one delta over
  the whole window, not an average of per-poll ratios, and are not emitted at all for a window
  shorter than MIN_SPAN_S: a number whose error can exceed the quantity itself would sit in
  the results beside real measurements and be compared with them, and a clamp would only
  replace one meaningless value with another;
- per-sample values (the telemetry rows) cover at least MIN_SPAN_S each: a poll that comes
  sooner after the last value carries none, and the next value spans both intervals;
- every value is clamped to what is physically possible, [0, 100 x the CPUs this process may
  run on] for the process and [0, 100] for the node: the true value lies in that range, so
  clamping a quantised reading can only bring it closer. A window mean says in its detail
  when it was clamped (clamped_from=...).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from aifbench.measurement import Metric
from aifbench.telemetry import fields as F
from aifbench.telemetry.config import DEFAULT_INTERVAL_S
from aifbench.telemetry.sampling import PollingSampler, Sample, Summary, rows_of, series

POWERCAP_ROOT = Path("/sys/class/powercap")
MIN_SPAN_S = 0.095
"""shortest time one CPU-utilisation value may cover: ~10 ticks of 10 ms (error <= ~20 % of a
core), a little under 0.1 s so that polls on the default 10 Hz grid, which wake a few ms late
or early relative to each other, each still carry a value"""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a Slurm cpuset, taskset), else all."""
    try:
        return len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def clamp(value: float, high: float) -> float:
    return min(max(value, 0.0), high)


class Rapl:
    """Package energy counters of the RAPL powercap zones."""

    def __init__(self, zones: list[tuple[str, Path, int]]):
        self.zones = zones  # (name, energy_uj path, max_energy_range_uj)

    @classmethod
    def open(cls, root: Path = POWERCAP_ROOT) -> "tuple[Rapl | None, str]":
        """(Rapl, '') when readable, else (None, why energy stays empty)."""
        root = Path(root)
        if not root.is_dir():
            return None, f"{root} not present (no RAPL powercap driver)"
        zones = []
        for d in sorted(root.glob("intel-rapl:*")):
            if d.name.count(":") != 1:
                continue
            try:
                name = (d / "name").read_text().strip()
                if not name.startswith("package"):
                    continue
                int((d / "energy_uj").read_text())
                max_range = int((d / "max_energy_range_uj").read_text())
            except PermissionError:
                return None, f"{d / 'energy_uj'} not readable (RAPL energy is root-only since Linux 5.10)"
            except (OSError, ValueError) as exc:
                return None, f"{d}: unreadable RAPL zone ({exc})"
            zones.append((name, d / "energy_uj", max_range))
        if not zones:
            return None, f"no RAPL package zones under {root}"
        return cls(zones), ""

    def read_uj(self) -> list[int]:
        return [int(p.read_text()) for _, p, _ in self.zones]

    def delta_j(self, before: list[int], after: list[int]) -> float:
        """Energy in J between two readings, summed over packages, counter wrap handled."""
        total = 0
        for (_, _, max_range), a, b in zip(self.zones, before, after):
            d = b - a
            total += d + max_range if d < 0 else d
        return total * 1e-6


class CpuSampler(PollingSampler):
    """psutil utilisation and memory of this process and the node, RAPL energy when readable."""

    source = "cpu"

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, powercap_root: Path = POWERCAP_ROOT):
        super().__init__(interval_s)
        import psutil

        self._psutil = psutil
        self._proc = psutil.Process()
        self.rapl, self.energy_reason = Rapl.open(powercap_root)
        self._cpus = usable_cpus()
        self._start = self._last = self._ref = self._cpu_counters()
        self._rapl_start: list[int] | None = None
        self._rapl_prev: tuple[float, list[int]] | None = None

    def _begin(self, case_id: str) -> None:
        self._cpus = usable_cpus()
        self._start = self._last = self._ref = self._cpu_counters()
        self._rapl_start = self._rapl_prev = None

    def _poll(self) -> Sample:
        now = self._cpu_counters()
        t = now[0]
        v: dict[str, float] = {}
        self._last = now
        if t - self._ref[0] >= MIN_SPAN_S:  # sooner: this poll carries no utilisation (module docstring)
            (v["process_cpu_pct"], _), (v["system_cpu_pct"], _) = self._utilisation(self._ref, now)
            self._ref = now
        v["process_rss_bytes"] = float(self._proc.memory_info().rss)
        v["system_memory_used_bytes"] = float(self._psutil.virtual_memory().used)
        if self.rapl is not None:
            self._read_rapl(t, v)
        return Sample(t, v)

    def _cpu_counters(self) -> tuple[float, float, float, float]:
        """(monotonic time, this process's CPU s, node busy + idle CPU s, node idle CPU s).

        The node's counters are our own, not psutil.cpu_percent(None), whose module-wide state
        every other sampler in the process would reset. Linux counts guest time inside user time.
        """
        t = time.monotonic()
        p = self._proc.cpu_times()
        c = self._psutil.cpu_times()
        total = sum(c) - getattr(c, "guest", 0.0) - getattr(c, "guest_nice", 0.0)
        return t, p.user + p.system, total, c.idle + getattr(c, "iowait", 0.0)

    def _utilisation(self, a: tuple, b: tuple) -> tuple[tuple[float, float], tuple[float, float]]:
        """((process %, unclamped), (system %, unclamped)) between counter readings a and b
        (b at least MIN_SPAN_S later). Process: % of one core, at most 100 x usable CPUs;
        system: % of all the node's cores (iowait counts as idle; it can step backwards)."""
        proc = 100.0 * (b[1] - a[1]) / (b[0] - a[0])
        d_total = b[2] - a[2]
        system = 100.0 * (1.0 - (b[3] - a[3]) / d_total) if d_total > 0 else 0.0
        return (clamp(proc, 100.0 * self._cpus), proc), (clamp(system, 100.0), system)

    def _read_rapl(self, t: float, v: dict[str, float]) -> None:
        try:
            now = self.rapl.read_uj()
        except (OSError, ValueError):
            return
        if self._rapl_start is None:
            self._rapl_start = now
        v["cpu_energy_counter_j"] = self.rapl.delta_j(self._rapl_start, now)
        if self._rapl_prev is not None and t > self._rapl_prev[0]:
            v["cpu_power_w"] = self.rapl.delta_j(self._rapl_prev[1], now) / (t - self._rapl_prev[0])
        self._rapl_prev = (t, now)

    def _summarize(self, samples: list[Sample]) -> Summary:
        out = Summary(rows=rows_of(samples, self.source, F.FIELDS))
        span = self._last[0] - self._start[0]
        if samples and span >= MIN_SPAN_S:  # shorter: no value worth recording (module docstring)
            proc, system = self._utilisation(self._start, self._last)
            for metric, (value, raw), detail in (
                    ("process_cpu_util_mean_pct", proc, f"scope=process usable_cpus={self._cpus}"),
                    ("system_cpu_util_mean_pct", system, "scope=system")):
                detail += f" method=counter window_s={span:.3f}"
                if raw != value:
                    detail += f" clamped_from={raw:.1f}"
                out.metrics.append(Metric(metric, value, stat="mean", n_samples=2, detail=detail))
        _, rss = series(samples, "process_rss_bytes")
        if rss:
            out.metrics.append(Metric("process_rss_max_bytes", max(rss), stat="max", n_samples=len(rss), detail="scope=process"))
        ets, es = series(samples, "cpu_energy_counter_j")
        if len(es) >= 2 and ets[-1] > ets[0]:
            n = len(self.rapl.zones) if self.rapl else 0
            detail = f"method=counter scope=cpu-package source=rapl packages={n}"
            out.metrics.append(Metric("energy_j", es[-1] - es[0], stat="value", n_samples=2, detail=detail))
            out.metrics.append(Metric("power_mean_w", (es[-1] - es[0]) / (ets[-1] - ets[0]), stat="mean", n_samples=len(es),
                                      detail=detail + " energy/duration"))
            _, ps = series(samples, "cpu_power_w")
            if ps:
                out.metrics.append(Metric("power_peak_w", max(ps), stat="max", n_samples=len(ps), detail=detail + " per-interval"))
        return out

    def describe(self) -> str:
        energy = (f"RAPL energy of {len(self.rapl.zones)} package(s)" if self.rapl
                  else f"energy unavailable: {self.energy_reason}")
        return f"cpu: psutil process and system utilisation and memory every {self.interval_s:g} s; {energy}"
