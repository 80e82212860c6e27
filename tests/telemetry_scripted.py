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
from types import SimpleNamespace
from typing import Any

from aifbench.telemetry.amdsmi_device import AmdSmiDevice
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


class Cursor:
    """Steps through scripted windows (one time line): the states of every GPU at each poll,
    and the energy each GPU drew so far (trapezoid of its power between polls, gaps included)."""

    def __init__(self, windows: list[tuple[str, list[dict]]]):
        self.windows, self._w, self._i = windows, -1, 0
        self.energy_j: list[float] = []
        self._last: list[dict] = []

    def begin(self) -> None:
        self._w, self._i = self._w + 1, 0

    def next(self) -> list[dict] | None:
        polls = self.windows[self._w][1]
        if self._i >= len(polls):
            return None
        s = polls[self._i]
        self._i += 1
        states = [s] + s.get("others", [])
        self._last = self._last or list(states)
        self.energy_j = self.energy_j or [0.0] * len(states)
        for k, (a, b) in enumerate(zip(self._last, states)):
            self.energy_j[k] += (b["t"] - a["t"]) * (a["power_w"] + b["power_w"]) / 2
        self._last = states
        return states


class ScriptedDevice:
    """A DeviceAccess answering from scripted states: list of windows of per-poll dicts, one
    profile per GPU (slot); a poll's "others" holds the states of slots 1.. at the same time."""

    live = False
    source = "nvml"
    origin = "scripted"

    def __init__(self, profiles: Profile | list[Profile], windows: list[tuple[str, list[dict]]]):
        self.profiles = profiles if isinstance(profiles, list) else [profiles]
        self.slots = len(self.profiles)
        self.windows = windows
        self.cursor = Cursor(windows)
        self._state: list[dict] = [{} for _ in self.profiles]

    def begin_window(self, case_id: str) -> None:
        self.cursor.begin()

    def end_window(self, case_id: str) -> None:
        pass

    def close(self) -> None:
        pass

    def poll_start(self) -> float | None:
        states = self.cursor.next()
        if states is None:
            return None
        self._state = states
        return states[0]["t"]

    def read(self, query: str, *args: Any, slot: int = 0) -> Any:
        key = call_key(query, args)
        p, s = self.profiles[slot], self._state[slot]
        if key in p.errors:
            raise NvmlCallError(p.errors[key])
        static = {"name": p.name, "uuid": p.uuid, "index": p.index, "pid": OWN_PID,
                  "max_clock:1": p.max_sm, "max_clock:2": p.max_mem, "power_limit": p.power_limit_mw,
                  "power_limit_default": p.power_limit_mw}  # every scripted GPU runs at its default limit
        if key in static:
            return static[key]
        if query == "fields":
            return {k: self._field(slot, k) for k in args[0]}
        answers = {
            "energy": lambda: int(8_123_456_789.0 + 1e9 * slot + self.cursor.energy_j[slot] * 1e3),  # mJ since load
            "power_usage": lambda: int(s["power_avg_w"] * 1e3),
            "clock:1": lambda: s["sm"], "clock:2": lambda: s["mem"], "temperature": lambda: s["temp"],
            "utilization": lambda: [s["util"], s["mem_util"]], "memory_used": lambda: s["mem_used"],
            "clocks_event_reasons": lambda: s["reasons"], "processes": lambda: list(s["pids"]),
        }
        return answers[key]()

    def _field(self, slot: int, key: str) -> list:
        if key in self.profiles[slot].field_errors:
            return [self.profiles[slot].field_errors[key], None]
        s = self._state[slot]
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


def h100_sxm() -> tuple[ScriptedDevice, list, str]:
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
    return ScriptedDevice(p, windows), windows, "power cap, thermal slowdown, application clocks, a sub-second window"


def h100_pcie_ecc() -> tuple[ScriptedDevice, list, str]:
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
    return ScriptedDevice(p, windows), windows, "corrected ECC errors and a row remapping mid-window, another process on the GPU"


def a100_no_instant() -> tuple[ScriptedDevice, list, str]:
    p = Profile("NVIDIA A100-SXM4-40GB", "GPU-a1b2c3d4-1111-2222-3333-444455556666", 1, 1410, 1215, 400_000,
                errors={"processes": 4}, field_errors={"186@0": 3, "186@1": 3, "197@0": 3, "198@0": 3})
    sc = Script(3)
    run = lambda x, t, r: {"power_w": jitter(r, 330, 12), "power_avg_w": 330.0, "sm": 1410, "mem": 1215,
                           "temp": round(45 + 5 * x), "nvl_gbps": 12.0}
    windows = [("gemm-fp16-clean", sc.window(1.5, run)), ("gemm-fp16-short", sc.window(0.5, run))]
    return ScriptedDevice(p, windows), windows, "no instantaneous power field (1 s average fallback), no PCIe counters, process list refused"


def gh200_module() -> tuple[ScriptedDevice, list, str]:
    p = Profile("NVIDIA GH200 480GB", "GPU-9c8b7a69-5544-4332-a110-ffeeddccbbaa", 0, 1980, 2619, 900_000,
                field_errors={"29@0": 3, "30@0": 3})
    sc = Script(4)
    run = lambda x, t, r: (lambda g: {"power_w": g, "module_w": round(g + 150 + r.uniform(0, 60), 1), "sm": 1980,
                                      "mem": 2619, "temp": round(50 + 7 * x)})(jitter(r, 610, 20))
    windows = [("gemm-bf16-module", sc.window(2.0, run))]
    return ScriptedDevice(p, windows), windows, "module power (GPU + Grace CPU + LPDDR5X) beside GPU power"


def h100_node() -> tuple[ScriptedDevice, list, str]:
    """One process alone on a 4-GPU node: its own GPU (NVML index 2) first, then 0, 1 and 3."""
    profiles = [Profile("NVIDIA H100 80GB HBM3", f"GPU-7f3e1c20-0a4b-4c5d-9e6f-00000000000{k}", k, 1980, 2619, 700_000,
                        field_errors={"186@1": 3, "29@0": 3, "30@0": 3}) for k in (2, 0, 1, 3)]
    busy = lambda x, t, r: {"power_w": jitter(r, 560, 15), "sm": 1980, "mem": 2619, "temp": round(50 + 8 * x)}
    capped = lambda x, t, r: {"power_w": jitter(r, 697, 3) if t >= 0.4 else 640.0, "sm": 1700 if t >= 0.4 else 1980,
                              "mem": 2619, "temp": 66, "reasons": SW_POWER if t >= 0.4 else 0}
    idle = lambda x, t, r: {"power_w": jitter(r, 70, 2), "sm": 345, "mem": 2619, "temp": 33, "reasons": IDLE,
                            "util": 0, "mem_util": 0, "pids": [], "pcie_gbps": 0.0}
    hot = lambda x, t, r: {"power_w": jitter(r, 650, 10), "sm": 1395, "mem": 2619, "temp": 88, "pids": [77001],
                           "reasons": HW_THERMAL | SW_THERMAL}  # another job's GPU, thermally throttled
    windows = []
    scripts = [Script(10 + k) for k in range(4)]
    for case_id, duration, own in (("gemm-bf16-8192", 2.0, busy), ("gemm-bf16-16384-powercap", 1.5, capped)):
        per_gpu = [sc.window(duration, state) for sc, state in zip(scripts, (own, idle, hot, idle))]
        windows.append((case_id, [dict(p, others=list(o)) for p, *o in zip(*per_gpu)]))
    return ScriptedDevice(profiles, windows), windows, "4 GPUs sampled by one process; another job's GPU throttles"


# --- AMD: amdsmi's Python API, scripted ----------------------------------------------------

class FakeAmdSmi:
    """The part of amdsmi's Python API that AmdSmiDevice calls, replying with the shapes of
    amdsmi 7.0's amdsmi_interface.py ("N/A" for unsupported values, W / MHz / uJ units),
    answering from the scripted state of each GCD (no ROCm here: amdsmi cannot load)."""

    class AmdSmiLibraryException(Exception):
        def __init__(self, err_code: int):
            super().__init__(f"Error code: {err_code}")
            self.err_code = err_code

    AmdSmiClkType = SimpleNamespace(GFX=0, MEM=4)
    AmdSmiTemperatureType = SimpleNamespace(HOTSPOT=1)
    AmdSmiTemperatureMetric = SimpleNamespace(CURRENT=0)
    AmdSmiMemoryType = SimpleNamespace(VRAM=0)
    RESOLUTION_UJ = 15.259  # energy counter resolution, uJ per count

    def __init__(self, gcds: list[dict], first: list[dict]):
        self.gcds, self.state = gcds, list(first)
        self.handles = [f"gcd{k}" for k in range(len(gcds))]
        self.energy_uj = [4.2e12 + 1e9 * k for k in range(len(gcds))]

    def _k(self, h: str) -> int:
        return self.handles.index(h)

    def amdsmi_init(self) -> None:
        pass

    def amdsmi_shut_down(self) -> None:
        pass

    def amdsmi_get_processor_handles(self) -> list[str]:
        return list(self.handles)

    def amdsmi_get_gpu_device_bdf(self, h: str) -> str:
        return self.gcds[self._k(h)]["bdf"]

    def amdsmi_get_gpu_device_uuid(self, h: str) -> str:
        return self.gcds[self._k(h)]["uuid"]

    def amdsmi_get_gpu_asic_info(self, h: str) -> dict:
        return {"market_name": "AMD Instinct MI250X", "vendor_id": "0x1002", "device_id": "0x740c"}

    def amdsmi_get_power_cap_info(self, h: str) -> dict:
        return {"power_cap": 560_000_000, "default_power_cap": 560_000_000, "dpm_cap": 1700,
                "min_power_cap": 0, "max_power_cap": 560_000_000}

    def amdsmi_get_power_info(self, h: str) -> dict:
        w = self.state[self._k(h)]["power_w"]
        return {"socket_power": w, "current_socket_power": "N/A", "average_socket_power": w,
                "gfx_voltage": 806, "soc_voltage": 843, "mem_voltage": 1200, "power_limit": 560}

    def amdsmi_get_energy_count(self, h: str) -> dict:
        return {"energy_accumulator": int(self.energy_uj[self._k(h)] / self.RESOLUTION_UJ),
                "counter_resolution": self.RESOLUTION_UJ, "timestamp": 0}

    def amdsmi_get_clock_info(self, h: str, kind: int) -> dict:
        s, gcd = self.state[self._k(h)], self.gcds[self._k(h)]
        gfx = kind == self.AmdSmiClkType.GFX
        return {"clk": s["sm"] if gfx else s["mem"], "min_clk": 500, "max_clk": gcd["max_gfx"] if gfx else gcd["max_mem"],
                "clk_locked": False, "clk_deep_sleep": "N/A"}

    def amdsmi_get_temp_metric(self, h: str, sensor: int, metric: int) -> int:
        return self.state[self._k(h)]["temp"]

    def amdsmi_get_gpu_activity(self, h: str) -> dict:
        s = self.state[self._k(h)]
        return {"gfx_activity": s["util"], "umc_activity": s["mem_util"], "mm_activity": "N/A"}

    def amdsmi_get_gpu_memory_usage(self, h: str, kind: int) -> int:
        return self.state[self._k(h)]["mem_used"]

    def amdsmi_get_gpu_total_ecc_count(self, h: str) -> dict:
        return {"correctable_count": self.state[self._k(h)]["ecc_c"], "uncorrectable_count": 0, "deferred_count": 0}

    def amdsmi_get_gpu_process_list(self, h: str) -> list[dict]:
        return [{"name": "python", "pid": pid, "mem": 0} for pid in self.state[self._k(h)]["pids"]]


class ScriptedAmdSmi(AmdSmiDevice):
    """The real AmdSmiDevice over FakeAmdSmi, with scripted time instead of the wall clock."""

    live = False
    origin = "scripted amdsmi"

    def __init__(self, smi: FakeAmdSmi, windows: list[tuple[str, list[dict]]]):
        super().__init__(smi, smi.handles, list(range(len(smi.handles))), "matched by PCI address (scripted)")
        self.fake, self.cursor = smi, Cursor(windows)
        self.base_uj = list(smi.energy_uj)

    def begin_window(self, case_id: str) -> None:
        self.cursor.begin()

    def _q_pid(self, h: str) -> int:
        return OWN_PID  # the scripted process, not the generator's

    def poll_start(self) -> float | None:
        states = self.cursor.next()
        if states is None:
            return None
        self.fake.state = states
        self.fake.energy_uj = [b + e * 1e6 for b, e in zip(self.base_uj, self.cursor.energy_j)]
        return states[0]["t"]


def mi250x() -> tuple[ScriptedAmdSmi, list, str]:
    """One MI250X package: the rank's GCD (power of the pair reported here) and its sibling (power 0)."""
    gcds = [{"bdf": "0000:c1:00.0", "uuid": "c1ff740c-0000-1000-8000-000000000001", "max_gfx": 1700, "max_mem": 1600},
            {"bdf": "0000:c6:00.0", "uuid": "c6ff740c-0000-1000-8000-000000000002", "max_gfx": 1700, "max_mem": 1600}]
    run = lambda x, t, r: {"power_w": round(jitter(r, 420, 20)), "sm": 1700, "mem": 1600, "temp": round(58 + 12 * x),
                           "mem_util": 70}
    slow = lambda x, t, r: dict(run(x, t, r), sm=800, power_w=round(jitter(r, 260, 10)), ecc_c=2 if t >= 0.7 else 0)
    sibling = lambda x, t, r: {"power_w": 0, "sm": 800, "mem": 1600, "temp": 41, "util": 0, "mem_util": 0, "pids": []}
    windows, own, other = [], Script(20), Script(21)
    for case_id, duration, state in (("gemm-bf16-mi250x", 2.0, run), ("gemm-bf16-mi250x-lowclock", 1.5, slow)):
        pairs = zip(own.window(duration, state), other.window(duration, sibling))
        windows.append((case_id, [dict(a, others=[b]) for a, b in pairs]))
    first = [windows[0][1][0], windows[0][1][0]["others"][0]]
    return ScriptedAmdSmi(FakeAmdSmi(gcds, first), windows), windows, "GCD pair, clocks held at 800 MHz, ECC errors"


SCENARIOS = {"h100_sxm_throttle": h100_sxm, "h100_pcie_ecc": h100_pcie_ecc,
             "a100_no_instant_power": a100_no_instant, "gh200_module_power": gh200_module,
             "h100_node_4gpu": h100_node, "mi250x_amdsmi": mi250x}


def write_trace(name: str, out_dir: Path) -> Path:
    device, windows, what = SCENARIOS[name]()
    path = Path(out_dir) / f"{name}.jsonl"
    gpu = device.read("name")
    how = ("amdsmi replies shaped as amdsmi 7.0 returns them, translated by the real AmdSmiDevice"
           if device.source == "amdsmi" else "constructed from NVML's documented semantics")
    origin = f"synthetic ({gpu}: {what}); {how}, not recorded"
    recorder = RecordingDevice(device, path, origin=origin, interval_s=0.1, created_utc=CREATED)
    sampler = NvmlSampler(recorder, 0.1)
    for case_id, _ in windows:
        with sampler.window(case_id):
            pass
    sampler.close()
    return path


def replay_shipped(name: str) -> tuple[Any, dict]:
    """(sampler, case id -> Window) of every window of the shipped trace `name`, replayed."""
    from aifbench.telemetry.select import open_sampler

    sampler = open_sampler("cpu", 0.1, trace_path=Path(__file__).parent / "data" / "telemetry" / f"{name}.jsonl")
    wins = {}
    for case_id, _ in sampler.dev.windows:
        with sampler.window(case_id) as win:
            pass
        wins[case_id] = win
    sampler.close()
    return sampler, wins


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/telemetry")
    for scenario in SCENARIOS:
        print(write_trace(scenario, target))
