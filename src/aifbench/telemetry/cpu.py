"""CPU fallback sampler: process and system utilisation and memory (psutil), RAPL package energy.

RAPL comes from the powercap sysfs tree (/sys/class/powercap/intel-rapl:<N>/energy_uj, µJ,
wrapping at max_energy_range_uj; AMD Zen CPUs appear there too). Only top-level `package-*`
zones are summed: their sub-zones (core, uncore, dram) are parts of them. Since Linux 5.10
energy_uj is readable by root only, so on most machines energy stays empty and the sampler
says why. Module power of a GH200 is never added here: it is an NVML reading of its own.
"""

from __future__ import annotations

import time
from pathlib import Path

from aifbench.benchmarks.base import Metric
from aifbench.telemetry import fields as F
from aifbench.telemetry.sampling import DEFAULT_INTERVAL_S, PollingSampler, Sample, Summary, rows_of, series, time_mean

POWERCAP_ROOT = Path("/sys/class/powercap")


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
        self._first = True
        self._rapl_start: list[int] | None = None
        self._rapl_prev: tuple[float, list[int]] | None = None

    def _begin(self, case_id: str) -> None:
        self._proc.cpu_percent(None)  # primes this Process object: the next call measures from here
        self._cpu_times = self._system_times()
        self._first = True
        self._rapl_start = self._rapl_prev = None

    def _poll(self) -> Sample:
        t = time.monotonic()
        v: dict[str, float] = {}
        if not self._first:
            v["process_cpu_pct"] = float(self._proc.cpu_percent(None))
            v["system_cpu_pct"] = self._system_pct()
        self._first = False
        v["process_rss_bytes"] = float(self._proc.memory_info().rss)
        v["system_memory_used_bytes"] = float(self._psutil.virtual_memory().used)
        if self.rapl is not None:
            self._read_rapl(t, v)
        return Sample(t, v)

    def _system_times(self) -> tuple[float, float]:
        """(busy + idle, idle) CPU seconds of the node since boot, all cores.

        Our own counters, not psutil.cpu_percent(None), whose module-wide state every other
        sampler in the process would reset. Linux counts guest time inside user time.
        """
        t = self._psutil.cpu_times()
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        return total, t.idle + getattr(t, "iowait", 0.0)

    def _system_pct(self) -> float:
        total, idle = self._system_times()
        d_total, d_idle = total - self._cpu_times[0], idle - self._cpu_times[1]
        self._cpu_times = (total, idle)
        return 100.0 * (1.0 - d_idle / d_total) if d_total > 0 else 0.0

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
        for field, metric in (("process_cpu_pct", "process_cpu_util_mean_pct"),
                              ("system_cpu_pct", "system_cpu_util_mean_pct")):
            ts, vs = series(samples, field)
            if vs:
                out.metrics.append(Metric(metric, time_mean(ts, vs), "mean", len(vs), detail="scope=" + F.FIELDS[field][1]))
        _, rss = series(samples, "process_rss_bytes")
        if rss:
            out.metrics.append(Metric("process_rss_max_bytes", max(rss), "max", len(rss), detail="scope=process"))
        ets, es = series(samples, "cpu_energy_counter_j")
        if len(es) >= 2 and ets[-1] > ets[0]:
            n = len(self.rapl.zones) if self.rapl else 0
            detail = f"method=counter scope=cpu-package source=rapl packages={n}"
            out.metrics.append(Metric("energy_j", es[-1] - es[0], "value", 2, detail=detail))
            out.metrics.append(Metric("power_mean_w", (es[-1] - es[0]) / (ets[-1] - ets[0]), "mean", len(es),
                                      detail=detail + " energy/duration"))
            _, ps = series(samples, "cpu_power_w")
            if ps:
                out.metrics.append(Metric("power_peak_w", max(ps), "max", len(ps), detail=detail + " per-interval"))
        return out

    def describe(self) -> str:
        energy = (f"RAPL energy of {len(self.rapl.zones)} package(s)" if self.rapl
                  else f"energy unavailable: {self.energy_reason}")
        return f"cpu: psutil process and system utilisation and memory every {self.interval_s:g} s; {energy}"
