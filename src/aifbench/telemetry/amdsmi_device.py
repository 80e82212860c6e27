"""AMD GPUs through amdsmi (ROCm's Python package), behind the same seam as NVML.

`AmdSmiDevice` answers the sampler's queries in NVML's vocabulary and units
(aifbench.telemetry.nvml_device), so the sampler, the recorder and the replay are the same
code for both vendors. What each query is on AMD (amdsmi 6.x/7.x Python API, units from
amdsmi.h):

  name          amdsmi_get_gpu_asic_info()["market_name"]
  uuid, index   amdsmi_get_gpu_device_uuid(); position in amdsmi_get_processor_handles()
  max_clock     amdsmi_get_clock_info(GFX | MEM)["max_clk"], MHz
  power_limit   amdsmi_get_power_cap_info()["power_cap"], uW -> mW
  power_limit_default  amdsmi_get_power_cap_info()["default_power_cap"], uW -> mW
  fields        186@0 (instant power) <- amdsmi_get_power_info()["current_socket_power"], W -> mW
                (MI300 and later); 3@0 / 4@0 (ECC) <- amdsmi_get_gpu_total_ecc_count()
                correctable / uncorrectable counts; every other field NOT_SUPPORTED
  power_usage   amdsmi_get_power_info()["average_socket_power"], W -> mW (MI200 and earlier)
  energy        amdsmi_get_energy_count(): energy_accumulator (before 6.2.1: "power") x
                counter_resolution, uJ -> mJ
  clock         amdsmi_get_clock_info(GFX | MEM)["clk"], MHz (a 1 s average, per amdsmi.h)
  temperature   amdsmi_get_temp_metric(HOTSPOT, CURRENT), C (the junction: AMD's edge sensor
                lags the die)
  utilization   amdsmi_get_gpu_activity(): gfx_activity, umc_activity, %
  memory_used   amdsmi_get_gpu_memory_usage(VRAM), bytes
  processes     pids of amdsmi_get_gpu_process_list()
  clocks_event_reasons  NOT_SUPPORTED: amdsmi 7 reports throttling only as a yes/no
                (gpu_metrics throttle_status) and older versions as ASIC-specific bits, so no
                reason is decoded and no throttle flag is raised on AMD (the power state is
                "unknown"); low_sm_clock, power_limit_below_default, ecc_errors and
                other_processes still are.

amdsmi marks unsupported values "N/A" or with an all-ones sentinel; either reads as
NOT_SUPPORTED (the field stays empty). MI250X: each GCD is its own device, and the package
power of a GCD pair is reported on one GCD only; on the other, power and energy are
NOT_SUPPORTED here rather than a misleading 0 (the note in runs.telemetry says so).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any

from aifbench.telemetry.gpus import TelemetryUnavailable, cuda_index, pci_location, visible_indices
from aifbench.telemetry.nvml_device import (NVML_ERROR_NO_PERMISSION, NVML_ERROR_NOT_SUPPORTED,
                                            NVML_ERROR_UNKNOWN, LiveAccess, NvmlCallError)

log = logging.getLogger(__name__)

# amdsmi_status_t (amdsmi.h) -> the nvmlReturn_t the sampler understands
AMDSMI_TO_NVML = {2: NVML_ERROR_NOT_SUPPORTED,   # AMDSMI_STATUS_NOT_SUPPORTED
                  3: NVML_ERROR_NOT_SUPPORTED,   # AMDSMI_STATUS_NOT_YET_IMPLEMENTED
                  10: NVML_ERROR_NO_PERMISSION}  # AMDSMI_STATUS_NO_PERM
SENTINELS = {0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF}
NO_POWER = "MI250X-style GCD without its own power reading (the pair's power is on the other GCD)"


def _num(value: Any, what: str) -> float:
    """A usable number, or NvmlCallError(NOT_SUPPORTED) for 'N/A' and all-ones sentinels."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value in SENTINELS:
        raise NvmlCallError(NVML_ERROR_NOT_SUPPORTED, f"amdsmi {what}: {value!r}")
    return value


class AmdSmiDevice(LiveAccess):
    """Live AMD GPUs through amdsmi: one processor handle per slot (slot 0: the rank's own)."""

    source = origin = "amdsmi"

    def __init__(self, smi: Any, handles: list[Any], indices: list[int], note: str = ""):
        super().__init__(handles, note)
        self._smi = smi
        self._indices = list(indices)
        self._powered = [self._reports_power(h) for h in self._handles]
        self._slot_of = {id(h): slot for slot, h in enumerate(self._handles)}
        self._field_readers = {"186@0": self._instant_mw, "3@0": partial(self._ecc, key="correctable_count"),
                               "4@0": partial(self._ecc, key="uncorrectable_count")}
        """field key -> reader(handle): the NVML fields amdsmi answers; every other is NOT_SUPPORTED"""
        unpowered = [i for i, p in zip(indices, self._powered) if not p]
        self.note = note + (f"; no power reading on amdsmi index {unpowered} ({NO_POWER})" if unpowered else "")

    def read(self, query: str, *args: Any, slot: int = 0) -> Any:
        if query in ("energy", "power_usage") and not self._powered[slot]:
            raise NvmlCallError(NVML_ERROR_NOT_SUPPORTED, NO_POWER)
        try:
            return self._query(query, slot, args)
        except Exception as exc:
            raise self._error(query, exc) from None

    def _shutdown(self) -> None:
        self._smi.amdsmi_shut_down()

    def _error(self, what: str, exc: Exception) -> NvmlCallError:
        """Any failure of one amdsmi call as the NvmlCallError the sampler understands."""
        if isinstance(exc, NvmlCallError):
            return exc
        if isinstance(exc, getattr(self._smi, "AmdSmiLibraryException", ())):
            code = abs(int(getattr(exc, "err_code", -1)))
            return NvmlCallError(AMDSMI_TO_NVML.get(code, NVML_ERROR_UNKNOWN), f"amdsmi {what}: {exc}")
        if isinstance(exc, (KeyError, TypeError, ValueError, AttributeError)):  # shaped unlike this amdsmi's
            return NvmlCallError(NVML_ERROR_NOT_SUPPORTED, f"amdsmi {what}: {exc!r}")
        return NvmlCallError(NVML_ERROR_UNKNOWN, f"amdsmi {what}: {exc!r}")

    def _reports_power(self, h: Any) -> bool:
        try:
            info = self._smi.amdsmi_get_power_info(h)
        except Exception:
            return False
        usable = []
        for key in ("current_socket_power", "average_socket_power"):
            try:
                usable.append(_num(info.get(key), key) > 0)
            except NvmlCallError:
                usable.append(False)
        return any(usable)

    # --- queries, answered in NVML units -------------------------------------------------
    def _q_name(self, h: Any) -> str:
        return str(self._smi.amdsmi_get_gpu_asic_info(h)["market_name"])

    def _q_uuid(self, h: Any) -> str:
        return str(self._smi.amdsmi_get_gpu_device_uuid(h))

    def _q_index(self, h: Any) -> int:
        return self._indices[self._slot_of[id(h)]]

    def _q_pid(self, h: Any) -> int:
        return os.getpid()

    def _clock_info(self, h: Any, kind: int) -> dict:
        clk = self._smi.AmdSmiClkType
        return self._smi.amdsmi_get_clock_info(h, clk.GFX if int(kind) == 1 else clk.MEM)

    def _q_max_clock(self, h: Any, kind: int) -> int:
        return int(_num(self._clock_info(h, kind)["max_clk"], "max_clk"))

    def _q_clock(self, h: Any, kind: int) -> int:
        return int(_num(self._clock_info(h, kind)["clk"], "clk"))

    def _q_power_limit(self, h: Any) -> int:
        return round(_num(self._smi.amdsmi_get_power_cap_info(h)["power_cap"], "power_cap") / 1e3)

    def _q_power_limit_default(self, h: Any) -> int:
        return round(_num(self._smi.amdsmi_get_power_cap_info(h)["default_power_cap"], "default_power_cap") / 1e3)

    def _q_fields(self, h: Any, keys: tuple[str, ...]) -> dict[str, list]:
        out = {k: [NVML_ERROR_NOT_SUPPORTED, None] for k in keys}
        for key, fn in self._field_readers.items():
            if key in out:
                try:
                    out[key] = [0, fn(h)]
                except Exception as exc:
                    out[key] = [self._error(key, exc).code, None]
        return out

    def _instant_mw(self, h: Any) -> int:
        if not self._powered[self._slot_of[id(h)]]:
            raise NvmlCallError(NVML_ERROR_NOT_SUPPORTED, NO_POWER)
        return round(_num(self._smi.amdsmi_get_power_info(h).get("current_socket_power"), "current_socket_power") * 1e3)

    def _ecc(self, h: Any, key: str) -> int:
        return int(_num(self._smi.amdsmi_get_gpu_total_ecc_count(h)[key], key))

    def _q_power_usage(self, h: Any) -> int:
        return round(_num(self._smi.amdsmi_get_power_info(h).get("average_socket_power"), "average_socket_power") * 1e3)

    def _q_energy(self, h: Any) -> int:
        e = self._smi.amdsmi_get_energy_count(h)
        acc = e["energy_accumulator"] if "energy_accumulator" in e else e["power"]  # renamed in 6.2.1
        return int(_num(acc, "energy_accumulator") * _num(e["counter_resolution"], "counter_resolution") / 1e3)

    def _q_temperature(self, h: Any) -> int:
        smi = self._smi
        c = _num(smi.amdsmi_get_temp_metric(h, smi.AmdSmiTemperatureType.HOTSPOT, smi.AmdSmiTemperatureMetric.CURRENT),
                 "temperature")
        return int(c / 1000 if c > 1000 else c)  # some releases passed rocm-smi's millidegrees through

    def _q_utilization(self, h: Any) -> list[int]:
        a = self._smi.amdsmi_get_gpu_activity(h)
        return [int(_num(a["gfx_activity"], "gfx_activity")), int(_num(a["umc_activity"], "umc_activity"))]

    def _q_memory_used(self, h: Any) -> int:
        return int(_num(self._smi.amdsmi_get_gpu_memory_usage(h, self._smi.AmdSmiMemoryType.VRAM), "vram used"))

    def _q_processes(self, h: Any) -> list[int]:
        procs = self._smi.amdsmi_get_gpu_process_list(h)
        if not all(isinstance(p, dict) and "pid" in p for p in procs):  # very old releases: opaque handles
            raise NvmlCallError(NVML_ERROR_NOT_SUPPORTED, "amdsmi process list without pids")
        return sorted({int(p["pid"]) for p in procs})


def open_amdsmi_device(device: str, gpus: str = "own", smi: Any = None) -> AmdSmiDevice:
    """The amdsmi device behind torch (ROCm) device 'cuda:<i>', matched by PCI address
    (amdsmi's and HIP's device orders differ); with gpus='visible' the other visible GPUs too.

    Raises TelemetryUnavailable with the reason when amdsmi or the match is not possible.
    """
    if smi is None:
        try:
            import amdsmi as smi
        except Exception as exc:  # ImportError, or OSError when libamd_smi.so is missing
            raise TelemetryUnavailable(f"amdsmi is not importable ({exc}); install ROCm's amdsmi Python package") from None
    try:
        smi.amdsmi_init()
    except Exception as exc:
        raise TelemetryUnavailable(f"amdsmi init failed: {exc} (no amdgpu driver on this node?)") from None
    try:
        handles = list(smi.amdsmi_get_processor_handles())
        bdfs = [str(smi.amdsmi_get_gpu_device_bdf(h)).lower() for h in handles]
        order = _order(bdfs, device, gpus)
        note = f"matched {device} by PCI address {bdfs[order[0]]}"
        note += f"; {len(order) - 1} more visible GPU(s) sampled (rows only)" if len(order) > 1 else ""
        return AmdSmiDevice(smi, [handles[i] for i in order], order, note)
    except Exception as exc:
        try:
            smi.amdsmi_shut_down()
        except Exception:
            pass
        if isinstance(exc, TelemetryUnavailable):
            raise
        raise TelemetryUnavailable(f"cannot open the amdsmi device of {device}: {exc}") from None


def _order(bdfs: list[str], device: str, gpus: str) -> list[int]:
    """amdsmi indices of the own device, then (gpus='visible') of the other visible ones."""
    own = cuda_index(device)
    out: list[int] = []
    for index in visible_indices(own) if gpus == "visible" else [own]:
        loc = pci_location(index)
        bdf = "{:04x}:{:02x}:{:02x}".format(*loc) if loc else None
        found = [i for i, b in enumerate(bdfs) if bdf and b.startswith(bdf + ".")]
        if found and found[0] not in out:
            out.append(found[0])
        elif index == own:
            raise TelemetryUnavailable(f"cannot match {device} (PCI {bdf or '?'}) to an amdsmi device")
        else:
            log.warning("telemetry skips visible GPU cuda:%d: no amdsmi device at PCI %s", index, bdf or "?")
    return out
