"""GPU sampler: power, energy, clocks, temperature, throttling and errors of the rank's GPU per window.

Reads go through a DeviceAccess (aifbench.telemetry.nvml_device) in NVML's vocabulary: live
NVIDIA GPUs, AMD GPUs through amdsmi, or a replayed trace, the same code above it.
Instantaneous power comes from the field API (NVML_FI_DEV_POWER_INSTANT;
nvmlDeviceGetPowerUsage is a 1 s average on Ampere and later and is only the fallback), each
field's return code checked. Energy: the total-energy counter delta when the window lasts
>= 1 s (it updates every 10-100 ms) and agrees with the power samples within 3x, else the
trapezoid integral of the power samples; the method and scope go into the metric's detail.
Any call the device does not support leaves its field empty and is not asked again.

Every poll reads every slot of the access (the rank's own GPU and, by policy, the other
visible GPUs; see aifbench.telemetry.gpus). Window metrics and validity flags describe the
own GPU (slot 0); the other GPUs only add rows to the telemetry table. The power state and
the invalidating flags follow aifbench.telemetry.validity.
"""

from __future__ import annotations

import logging
from typing import Any

from aifbench.measurement import Metric
from aifbench.telemetry import fields as F
from aifbench.telemetry.nvml_device import (PERMANENT_ERRORS, UINT_MAX, DeviceAccess, NvmlCallError,
                                            call_key)
from aifbench.telemetry.config import DEFAULT_INTERVAL_S, DEFAULT_MIN_CLOCK_FRACTION
from aifbench.telemetry.sampling import PollingSampler, Sample, Summary, integrate, rows_of, series, time_mean
from aifbench.telemetry.validity import window_validity

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MIN_CLOCK_FRACTION", "NvmlSampler"]

ENERGY_COUNTER_MIN_S = 1.0
PROCESS_EVERY_S = 1.0  # process lists are the costliest query (ms): once a second is enough (limits too)

# (field, NVML field id, scopeId, factor to the field's unit)
INSTANT_FIELDS = (
    ("power_w", 186, 0, 1e-3),                  # NVML_FI_DEV_POWER_INSTANT, NVML_POWER_SCOPE_GPU, mW
    ("module_power_w", 186, 1, 1e-3),           # ..., NVML_POWER_SCOPE_MODULE
    ("ecc_corrected_volatile", 3, 0, 1),        # NVML_FI_DEV_ECC_SBE_VOL_TOTAL
    ("ecc_uncorrected_volatile", 4, 0, 1),      # NVML_FI_DEV_ECC_DBE_VOL_TOTAL
    ("retired_pages_sbe", 29, 0, 1),            # NVML_FI_DEV_RETIRED_SBE
    ("retired_pages_dbe", 30, 0, 1),            # NVML_FI_DEV_RETIRED_DBE
    ("remapped_rows_correctable", 142, 0, 1),   # NVML_FI_DEV_REMAPPED_COR
    ("remapped_rows_uncorrectable", 143, 0, 1), # NVML_FI_DEV_REMAPPED_UNC
    ("remapped_rows_pending", 144, 0, 1),       # NVML_FI_DEV_REMAPPED_PENDING
)
# cumulative counters turned into rates: (field, id, scopeId, factor from counter unit to GB)
COUNTER_FIELDS = (
    ("pcie_tx_gbps", 197, 0, 1e-9),             # NVML_FI_DEV_PCIE_COUNT_TX_BYTES, bytes, may wrap
    ("pcie_rx_gbps", 198, 0, 1e-9),             # NVML_FI_DEV_PCIE_COUNT_RX_BYTES
    ("nvlink_tx_gbps", 138, UINT_MAX, 1024e-9), # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, KiB, all links
    ("nvlink_rx_gbps", 139, UINT_MAX, 1024e-9), # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX
)
# what one poll needs per field: (field, 'fieldId@scopeId', factor, is a counter)
_FIELD_SPECS = tuple((name, f"{fid}@{scope}", factor, counter) for fields, counter in
                     ((INSTANT_FIELDS, False), (COUNTER_FIELDS, True)) for name, fid, scope, factor in fields)
FIELD_KEYS = tuple(spec[1] for spec in _FIELD_SPECS)
ERROR_COUNTERS = ("ecc_corrected_volatile", "ecc_uncorrected_volatile", "retired_pages_sbe", "retired_pages_dbe",
                  "remapped_rows_correctable", "remapped_rows_uncorrectable")
CLOCK_SM, CLOCK_MEM = 1, 2  # nvmlClockType_t
# (field, query, args, factor to the field's unit, the call's trace key)
SIMPLE_READS = tuple((name, query, args, factor, call_key(query, args)) for name, query, args, factor in (
    ("energy_counter_j", "energy", (), 1e-3), ("sm_clock_mhz", "clock", (CLOCK_SM,), 1),
    ("mem_clock_mhz", "clock", (CLOCK_MEM,), 1), ("temperature_c", "temperature", (), 1),
    ("memory_used_bytes", "memory_used", (), 1), ("clocks_event_reasons", "clocks_event_reasons", (), 1)))
# read on the first poll of a window and once a second after (with the process list)
SLOW_READS = tuple((name, query, (), 1e-3, query) for name, query in
                   (("power_limit_w", "power_limit"), ("power_limit_default_w", "power_limit_default")))
_MISSING = (None, None)


class _Gpu:
    """What the sampler keeps per slot: static info, reads that failed for good, counter history."""

    def __init__(self, dev: DeviceAccess, slot: int):
        self.dev, self.slot = dev, slot
        self.unsupported: dict[str, str] = {}  # field or query -> why it stays empty
        self.prev: dict[str, tuple[float, float]] = {}
        self.info = {q: self.read(q) for q in ("name", "uuid", "index", "pid", "power_limit")}
        self.info["max_sm_clock"] = self.read("max_clock", CLOCK_SM)

    def read(self, query: str, *args: Any, key: str | None = None) -> Any:
        """One read (`key`: its call_key when known); None when it fails. Permanent failures
        are remembered and not retried."""
        key = key or call_key(query, args)
        if key in self.unsupported:
            return None
        try:
            return self.dev.read(query, *args, slot=self.slot)
        except NvmlCallError as exc:
            if exc.code in PERMANENT_ERRORS:
                self.unsupported[key] = exc.why
            else:
                log.debug("%s %s (slot %d) failed: %s", self.dev.source, key, self.slot, exc)
            return None


class NvmlSampler(PollingSampler):
    """Samples the GPUs of one DeviceAccess (NVML, amdsmi or a replay); metrics and flags per
    window describe slot 0, the rank's own device; the other slots add telemetry rows only."""

    def __init__(self, device: DeviceAccess, interval_s: float = DEFAULT_INTERVAL_S, *,
                 min_clock_fraction: float = DEFAULT_MIN_CLOCK_FRACTION):
        super().__init__(interval_s)
        self.dev = device
        self.live = device.live
        self.source = getattr(device, "source", "nvml")
        self.min_clock_fraction = float(min_clock_fraction)
        self.gpus = [_Gpu(device, slot) for slot in range(max(1, int(getattr(device, "slots", 1))))]
        self.info, self.unsupported = self.gpus[0].info, self.gpus[0].unsupported
        self._last_processes_t: float | None = None

    def _begin(self, case_id: str) -> None:
        for g in self.gpus:
            g.prev.clear()
        self._last_processes_t = None
        self.dev.begin_window(case_id)

    def _end(self, case_id: str) -> None:
        self.dev.end_window(case_id)

    def _poll(self) -> Sample | None:
        t = self.dev.poll_start()
        if t is None:
            return None
        processes = self._last_processes_t is None or t - self._last_processes_t >= PROCESS_EVERY_S
        if processes:
            self._last_processes_t = t
        values = [self._read_gpu(g, t, processes) for g in self.gpus]
        return Sample(t, values[0], others=values[1:])

    def _read_gpu(self, g: _Gpu, t: float, processes: bool) -> dict[str, float]:
        v: dict[str, float] = {}
        self._read_fields(g, t, v)
        if "power_w" not in v:
            mw = g.read("power_usage")
            if mw is not None:
                v["power_avg_1s_w"] = mw * 1e-3
        for name, query, args, factor, key in SIMPLE_READS + (SLOW_READS if processes else ()):
            raw = g.read(query, *args, key=key)
            if raw is not None:
                v[name] = raw * factor
        util = g.read("utilization")
        if util is not None:
            v["gpu_util_pct"], v["mem_util_pct"] = float(util[0]), float(util[1])
        if processes:
            self._read_processes(g, v)
        return v

    def _read_fields(self, g: _Gpu, t: float, v: dict[str, float]) -> None:
        # every poll asks for every field (so a recording is the same whatever the device refuses);
        # the live device leaves the ones it refused for good out of the NVML request
        got = g.read("fields", FIELD_KEYS, key="fields") or {}
        for name, key, factor, counter in _FIELD_SPECS:
            ret, raw = got.get(key, _MISSING)
            if ret != 0 or raw is None:
                if ret in PERMANENT_ERRORS:
                    g.unsupported.setdefault(name, f"NVML error {ret}")
                elif ret == 0:
                    g.unsupported.setdefault(name, "value not available")
                continue
            if not counter:
                v[name] = raw * factor
                continue
            prev = g.prev.get(name)
            g.prev[name] = (t, raw)
            if prev is not None and t > prev[0] and raw >= prev[1]:  # a wrapped counter gives no rate
                v[name] = (raw - prev[1]) * factor / (t - prev[0])

    @staticmethod
    def _read_processes(g: _Gpu, v: dict[str, float]) -> None:
        pids = g.read("processes")
        if pids is None:
            return
        v["processes"] = len(pids)
        if g.slot == 0:
            # Every listed process but one is another one: ours holds a context on this GPU. NVML
            # lists host pids, so inside a container's pid namespace our own pid may be absent.
            v["other_processes"] = max(len(pids) - 1, 0)

    # --- summary --------------------------------------------------------------------------
    def _summarize(self, samples: list[Sample]) -> Summary:
        out = Summary()
        for g in self.gpus:  # the own device's rows first, then each other visible GPU's
            mine = samples if g.slot == 0 else [Sample(s.t, s.others[g.slot - 1]) for s in samples]
            out.rows += self._rows(g, mine)
        if samples:
            out.metrics += self._power_metrics(samples)
            state, flags = window_validity(samples, self.info.get("max_sm_clock"), self._missing(),
                                           self.min_clock_fraction)
            out.metrics += state
            out.flags += flags + self._event_flags(samples)
        return out

    def _rows(self, g: _Gpu, samples: list[Sample]) -> list[dict]:
        uuid, index = g.info.get("uuid"), g.info.get("index")
        rows = rows_of(samples, self.source, F.FIELDS, index, uuid)
        seen = {name for s in samples for name in s.values}
        for name in sorted(n for n in g.unsupported if n in F.FIELDS and n not in seen):
            unit, scope = F.FIELDS[name]  # an unsupported field: one empty row says so
            rows.append({"source": self.source, "gpu_index": index, "gpu_uuid": uuid, "scope": scope,
                         "t_s": 0.0, "field": name, "value": None, "unit": unit})
        return rows

    def _power_metrics(self, samples: list[Sample]) -> list[Metric]:
        out: list[Metric] = []
        name = "power_w" if any("power_w" in s.values for s in samples) else "power_avg_1s_w"
        source = "instant" if name == "power_w" else "average_1s"
        ts, ps = series(samples, name)
        if ps:
            detail = f"scope=gpu source={source}"
            out += [Metric("power_mean_w", time_mean(ts, ps), stat="mean", n_samples=len(ps), detail=detail + " time-weighted"),
                    Metric("power_peak_w", max(ps), stat="max", n_samples=len(ps), detail=detail)]
        energy = self._energy(samples, ts, ps, source)
        if energy:
            out.append(energy)
        mts, mps = series(samples, "module_power_w")
        if mps:
            d = "scope=module source=instant (GH200: GPU + Grace CPU + memory)"
            out += [Metric("module_power_mean_w", time_mean(mts, mps), stat="mean", n_samples=len(mps), detail=d + " time-weighted"),
                    Metric("module_power_peak_w", max(mps), stat="max", n_samples=len(mps), detail=d)]
            if len(mps) >= 2:
                out.append(Metric("module_energy_j", integrate(mts, mps), stat="value", n_samples=len(mps),
                                  detail="method=integrated scope=module"))
        return out

    def _energy(self, samples: list[Sample], ts: list[float], ps: list[float], source: str) -> Metric | None:
        """Counter delta over >= 1 s, else (or when the counter disagrees with the power samples:
        a counter that stalls, or amdsmi's on some GPUs) the trapezoid integral of the samples."""
        ets, es = series(samples, "energy_counter_j")
        integral = integrate(ts, ps) if len(ps) >= 2 else None
        if len(es) >= 2 and ets[-1] - ets[0] >= ENERGY_COUNTER_MIN_S and es[-1] >= es[0]:
            delta = es[-1] - es[0]
            if _agrees(delta, integral):
                return Metric("energy_j", delta, stat="value", n_samples=2,
                              detail=f"method=counter scope=gpu window_s={ets[-1] - ets[0]:.3f}")
            why = f"counter delta {delta:.4g} J disagrees with the power samples"
        else:
            why = "window < 1 s" if len(es) >= 2 else "no energy counter"
        if integral is None:
            return None
        return Metric("energy_j", integral, stat="value", n_samples=len(ps),
                      detail=f"method=integrated scope=gpu source={source} ({why})")

    def _missing(self) -> dict[str, str]:
        """Why the own GPU's state readings are absent: field -> reason (see validity.power_state)."""
        keys = {"clocks_event_reasons": "clocks_event_reasons", "power_limit_w": "power_limit",
                "power_limit_default_w": "power_limit_default"}
        return {field: self.unsupported[key] for field, key in keys.items() if key in self.unsupported}

    def _event_flags(self, samples: list[Sample]) -> list[str]:
        flags = []
        if any(s.values.get("other_processes", 0) > 0 for s in samples):
            flags.append("other_processes")
        for name in ERROR_COUNTERS:
            _, vs = series(samples, name)
            if len(vs) >= 2 and vs[-1] > vs[0]:
                flags.append("ecc_errors")
                break
        return flags

    def describe(self) -> str:
        i = self.info
        where = getattr(self.dev, "origin", self.source)
        text = f"{where}: {i.get('name') or '?'} {i.get('uuid') or '?'} (index {i.get('index')}"
        text += f", power limit {i['power_limit'] / 1e3:g} W" if i.get("power_limit") else ""
        note = getattr(self.dev, "note", "")
        text += f"; {note})" if note else ")"
        if len(self.gpus) > 1:
            text += "; also sampled: " + ", ".join(f"index {g.info.get('index')} {g.info.get('uuid') or '?'}"
                                                    for g in self.gpus[1:])
        text += f" every {self.interval_s:g} s" if self.live else ""
        empty = sorted(k for k in self.unsupported if k in F.FIELDS)
        return text + (f"; unsupported: {', '.join(empty)}" if empty else "")

    def close(self) -> None:
        try:
            self.dev.close()
        except Exception as exc:  # e.g. the trace file's disk filled up: the run still ends cleanly
            log.warning("closing %s telemetry: %s", self.source, exc)


def _agrees(counter_j: float, integral_j: float | None) -> bool:
    """A counter delta is trusted unless the power samples integrate to more than 3x off it
    (loose: 1 s-average power lags a step; a broken counter is off by far more)."""
    if integral_j is None or integral_j <= 0:
        return True
    return 1 / 3 <= counter_j / integral_j <= 3.0
