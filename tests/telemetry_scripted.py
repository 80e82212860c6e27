"""Builds the shipped NVML traces in tests/data/telemetry/ (no GPU is lent to this project).

These traces are CONSTRUCTED, not recorded from hardware. `ScriptedDevice` answers the
sampler's NVML queries from a per-poll script that follows NVML's documented semantics:
power in mW (field NVML_FI_DEV_POWER_INSTANT, scopeId 0 GPU / 1 module), the total-energy
counter in mJ (the integral of the scripted power, monotonic), clocks in MHz, clock-event
reason bits as nvml.h's nvmlClocksEventReason* (pynvml constants), volatile ECC and
remapped-row counters that only grow, cumulative PCIe byte and NVLink KiB counters, and
NVML_ERROR_NOT_SUPPORTED (3) / NVML_ERROR_NO_PERMISSION (4) where a device lacks a feature.
The real NvmlSampler drives it through the real RecordingDevice, so each file is exactly
what the recorder writes. Device limits are from the datasheets: H100 SXM5 1980 MHz / 700 W,
H100 PCIe 1755 MHz / 350 W, A100 SXM4 1410 MHz / 400 W, GH200 1980 MHz. UUIDs and pids are made up.

Regenerate (a test checks the shipped files equal this output):
    .venv/bin/python tests/telemetry_scripted.py tests/data/telemetry
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aifbench.telemetry.nvml import NvmlSampler
from aifbench.telemetry.nvml_device import NvmlCallError, call_key
from aifbench.telemetry.trace import RecordingDevice

CREATED = "2025-01-01T00:00:00+00:00"
IDLE_W = 70.0
OWN_PID = 41237
# nvmlClocksEventReason* bits (nvml.h)
IDLE, APP_CLOCKS, SW_POWER, HW_SLOW, SW_THERMAL, HW_THERMAL = 0x1, 0x2, 0x4, 0x8, 0x20, 0x40


@dataclass
class Profile:
    name: str
    uuid: str
    index: int
    max_sm: int
    max_mem: int
    power_limit_mw: int
    errors: dict[str, int] = field(default_factory=dict)         # query key -> NVML error code
    field_errors: dict[str, int] = field(default_factory=dict)   # 'fid@scope' -> NVML error code


class ScriptedDevice:
    """A DeviceAccess answering from scripted states: list of windows of per-poll dicts."""

    live = False
    origin = "scripted"

    def __init__(self, profile: Profile, windows: list[tuple[str, list[dict]]]):
        self.p = profile
        self.windows = windows
        self._w = -1
        self._i = 0
        self._state: dict = {}
        self._energy_mj = 8_123_456_789.0  # since driver load
        self._last_t: float | None = None
        self._last_w = IDLE_W

    def begin_window(self, case_id: str) -> None:
        self._w += 1
        self._i = 0

    def end_window(self, case_id: str) -> None:
        pass

    def close(self) -> None:
        pass

    def poll_start(self) -> float | None:
        polls = self.windows[self._w][1]
        if self._i >= len(polls):
            return None
        s = polls[self._i]
        self._i += 1
        if self._last_t is not None:  # the counter integrates the power the GPU drew
            self._energy_mj += (s["t"] - self._last_t) * (self._last_w + s["power_w"]) / 2 * 1e3
        self._last_t, self._last_w = s["t"], s["power_w"]
        self._state = s
        return s["t"]

    def read(self, query: str, *args: Any) -> Any:
        key = call_key(query, args)
        if key in self.p.errors:
            raise NvmlCallError(self.p.errors[key])
        s, p = self._state, self.p
        static = {"name": p.name, "uuid": p.uuid, "index": p.index, "pid": OWN_PID,
                  "max_clock:1": p.max_sm, "max_clock:2": p.max_mem, "power_limit": p.power_limit_mw}
        if key in static:
            return static[key]
        if query == "fields":
            return {k: self._field(k) for k in args[0]}
        answers = {
            "energy": lambda: int(self._energy_mj), "power_usage": lambda: int(s["power_avg_w"] * 1e3),
            "clock:1": lambda: s["sm"], "clock:2": lambda: s["mem"], "temperature": lambda: s["temp"],
            "utilization": lambda: [s["util"], s["mem_util"]], "memory_used": lambda: s["mem_used"],
            "clocks_event_reasons": lambda: s["reasons"], "processes": lambda: list(s["pids"]),
        }
        return answers[key]()

    def _field(self, key: str) -> list:
        if key in self.p.field_errors:
            return [self.p.field_errors[key], None]
        s = self._state
        value = {"186@0": round(s["power_w"] * 1e3), "186@1": round(s.get("module_w", 0) * 1e3),
                 "3@0": s["ecc_c"], "4@0": s["ecc_u"], "29@0": 0, "30@0": 0,
                 "142@0": s["remap_c"], "143@0": 0, "144@0": s["remap_pending"],
                 "197@0": int(s["pcie_tx"]), "198@0": int(s["pcie_rx"]),
                 f"138@{0xFFFFFFFF}": int(s["nvl_tx"]), f"139@{0xFFFFFFFF}": int(s["nvl_rx"])}[key]
        return [0, value]


class Script:
    """Builds window states on one time line (windows 0.5 s apart), counters carried over."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.t = 100.0
        self.c = {"ecc_c": 0, "ecc_u": 0, "remap_c": 0, "remap_pending": 0,
                  "pcie_tx": 3.1e12, "pcie_rx": 2.7e12, "nvl_tx": 5.0e9, "nvl_rx": 5.0e9}

    def window(self, duration: float, state, interval: float = 0.1) -> list[dict]:
        """state(x, rel_t) -> dict of readings; x in 0..1 through the window."""
        times = [i * interval for i in range(int(math.ceil(duration / interval - 1e-9)))] + [duration]
        out, prev = [], 0.0
        for rel in times:
            s = {"util": 100, "mem_util": 60, "pids": [OWN_PID], "mem_used": 2_400_000_000, "reasons": 0,
                 "pcie_gbps": 1.2, "nvl_gbps": 0.0}
            s.update(state(rel / duration if duration else 1.0, rel, self.rng))
            for k in ("ecc_c", "remap_c", "remap_pending"):
                self.c[k] = max(self.c[k], s.pop(k, self.c[k]))
            dt = rel - prev
            self.c["pcie_tx"] += s["pcie_gbps"] * 1e9 * dt
            self.c["pcie_rx"] += s["pcie_gbps"] * 0.8e9 * dt
            self.c["nvl_tx"] += s["nvl_gbps"] * 1e9 / 1024 * dt
            self.c["nvl_rx"] += s["nvl_gbps"] * 1e9 / 1024 * dt
            s.setdefault("power_avg_w", s["power_w"])
            out.append(dict(s, **self.c, t=round(self.t + rel, 6)))
            prev = rel
        self.t += duration + 0.5
        return out


def jitter(rng: random.Random, v: float, spread: float) -> float:
    return round(v + rng.uniform(-spread, spread), 1)


def h100_sxm() -> tuple[Profile, list, str]:
    p = Profile("NVIDIA H100 80GB HBM3", "GPU-5b0c3a2e-9f41-4d7e-8a66-1c2d3e4f5a6b", 3, 1980, 2619, 700_000,
                field_errors={"186@1": 3, "29@0": 3, "30@0": 3})
    sc = Script(1)
    clean = lambda x, t, r: {"power_w": jitter(r, 560, 15), "sm": 1980, "mem": 2619, "temp": round(52 + 8 * x),
                             "reasons": IDLE if t == 0 else 0, "nvl_gbps": 0.0}
    capped = lambda x, t, r: {"power_w": jitter(r, 697, 3) if t >= 0.4 else 640.0,
                              "sm": int(jitter(r, 1700, 45)) if t >= 0.4 else 1980, "mem": 2619,
                              "temp": round(60 + 11 * x), "reasons": SW_POWER if t >= 0.4 else 0}
    thermal = lambda x, t, r: {"power_w": jitter(r, 640, 10), "sm": 1395 if t >= 1.0 else 1830, "mem": 2619,
                               "temp": round(84 + 5 * x), "reasons": (HW_THERMAL | SW_THERMAL) if t >= 1.0 else 0}
    app_low = lambda x, t, r: {"power_w": jitter(r, 380, 8), "sm": 1005, "mem": 2619, "temp": 58,
                               "reasons": APP_CLOCKS}
    short = lambda x, t, r: {"power_w": jitter(r, 450, 20), "sm": 1980, "mem": 2619, "temp": 55, "reasons": 0,
                             "nvl_gbps": 310.0}
    windows = [("gemm-bf16-4096-clean", sc.window(2.0, clean)), ("gemm-bf16-16384-powercap", sc.window(3.0, capped)),
               ("gemm-bf16-16384-thermal", sc.window(2.5, thermal)), ("gemm-app-clocks-1005", sc.window(1.2, app_low)),
               ("allreduce-short", sc.window(0.35, short))]
    return p, windows, "power cap, thermal slowdown, application clocks, a sub-second window"


def h100_pcie_ecc() -> tuple[Profile, list, str]:
    nvl = 0xFFFFFFFF
    p = Profile("NVIDIA H100 PCIe", "GPU-0e7d1f55-3c2b-4a19-b6d0-77e8f9a0b1c2", 0, 1755, 1593, 350_000,
                field_errors={"186@1": 3, "29@0": 3, "30@0": 3, f"138@{nvl}": 3, f"139@{nvl}": 3})
    sc = Script(2)
    sc.c["ecc_c"] = 7  # corrected errors from before the run do not flag a window
    base = lambda r, x: {"power_w": jitter(r, 280, 10), "sm": 1755, "mem": 1593, "temp": round(48 + 6 * x),
                         "mem_util": 95, "pcie_gbps": 0.4}
    clean = lambda x, t, r: base(r, x)
    ecc = lambda x, t, r: dict(base(r, x), ecc_c=9 if t >= 0.9 else 7, remap_c=1 if t >= 1.5 else 0,
                               remap_pending=1 if t >= 1.5 else 0)
    shared = lambda x, t, r: dict(base(r, x), pids=[OWN_PID, 51877])
    windows = [("membw-clean", sc.window(1.5, clean)), ("membw-ecc", sc.window(2.0, ecc)),
               ("membw-shared-gpu", sc.window(1.5, shared))]
    return p, windows, "corrected ECC errors and a row remapping mid-window, another process on the GPU"


def a100_no_instant() -> tuple[Profile, list, str]:
    p = Profile("NVIDIA A100-SXM4-40GB", "GPU-a1b2c3d4-1111-2222-3333-444455556666", 1, 1410, 1215, 400_000,
                errors={"processes": 4}, field_errors={"186@0": 3, "186@1": 3, "197@0": 3, "198@0": 3})
    sc = Script(3)
    run = lambda x, t, r: {"power_w": jitter(r, 330, 12), "power_avg_w": 330.0, "sm": 1410, "mem": 1215,
                           "temp": round(45 + 5 * x), "nvl_gbps": 12.0}
    windows = [("gemm-fp16-clean", sc.window(1.5, run)), ("gemm-fp16-short", sc.window(0.5, run))]
    return p, windows, "no instantaneous power field (1 s average fallback), no PCIe counters, process list refused"


def gh200_module() -> tuple[Profile, list, str]:
    p = Profile("NVIDIA GH200 480GB", "GPU-9c8b7a69-5544-4332-a110-ffeeddccbbaa", 0, 1980, 2619, 900_000,
                field_errors={"29@0": 3, "30@0": 3})
    sc = Script(4)
    run = lambda x, t, r: (lambda g: {"power_w": g, "module_w": round(g + 150 + r.uniform(0, 60), 1), "sm": 1980,
                                      "mem": 2619, "temp": round(50 + 7 * x)})(jitter(r, 610, 20))
    return p, [("gemm-bf16-module", sc.window(2.0, run))], "module power (GPU + Grace CPU + LPDDR5X) beside GPU power"


SCENARIOS = {"h100_sxm_throttle": h100_sxm, "h100_pcie_ecc": h100_pcie_ecc,
             "a100_no_instant_power": a100_no_instant, "gh200_module_power": gh200_module}


def write_trace(name: str, out_dir: Path) -> Path:
    profile, windows, what = SCENARIOS[name]()
    path = Path(out_dir) / f"{name}.jsonl"
    origin = f"synthetic ({profile.name}: {what}); constructed from NVML's documented semantics, not recorded"
    device = RecordingDevice(ScriptedDevice(profile, windows), path, origin=origin, interval_s=0.1, created_utc=CREATED)
    sampler = NvmlSampler(device, 0.1)
    for case_id, _ in windows:
        with sampler.window(case_id):
            pass
    sampler.close()
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/telemetry")
    for scenario in SCENARIOS:
        print(write_trace(scenario, target))
