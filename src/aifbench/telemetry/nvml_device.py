"""The NVML access layer: the seam between the sampler and the hardware.

The sampler asks a `DeviceAccess` for raw NVML readings by query name (vocabulary below,
NVML's own units); `PynvmlDevice` answers from the driver through nvidia-ml-py, and
`aifbench.telemetry.trace.ReplayDevice` answers from a recorded trace. Everything above
this layer (unit conversion, field return codes, reason decoding, metrics, flags) is the
same code for both.

Queries (args) -> result:
  static:  name, uuid, index, pid (this process), max_clock (kind: 1 SM, 2 memory) -> MHz,
           power_limit -> mW (enforced)
  polled:  fields (keys 'fieldId@scopeId') -> {key: [nvmlReturn, value]}  (field API, one call)
           energy -> mJ since driver load; power_usage -> mW (1 s average)
           clock (kind) -> MHz; temperature -> C; utilization -> [gpu %, memory %]
           memory_used -> bytes; clocks_event_reasons -> bitmask; processes -> [pid, ...]
A failed call raises NvmlCallError carrying NVML's return code.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Protocol

log = logging.getLogger(__name__)

# nvmlReturn_t codes used here (nvml.h)
NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_FUNCTION_NOT_FOUND = 13
PERMANENT_ERRORS = {NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION, NVML_ERROR_FUNCTION_NOT_FOUND}
"""a query failing with one of these is not asked again for the sampler's life"""

NOT_AVAILABLE = {0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF}  # NVML_VALUE_NOT_AVAILABLE sentinels
UINT_MAX = 0xFFFFFFFF  # scopeId: aggregate over all NVLink links (nvml.h)


class NvmlCallError(Exception):
    """One NVML call failed; `code` is the nvmlReturn_t."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message or f"NVML error {code}")
        self.code = int(code)


class TelemetryUnavailable(Exception):
    """NVML cannot be used here; str(exc) is the reason recorded in runs.telemetry."""


class DeviceAccess(Protocol):
    live: bool
    """True: readings are taken now (poll thread); False: recorded (drained per window)"""
    origin: str
    """'nvml' or 'replay: <file>'"""

    def read(self, query: str, *args: Any) -> Any: ...

    def poll_start(self) -> float | None:
        """Begin one poll: its time in s, or None when a recorded window has no more polls."""

    def begin_window(self, case_id: str) -> None: ...

    def end_window(self, case_id: str) -> None: ...

    def close(self) -> None: ...


def call_key(query: str, args: tuple) -> str:
    """How a call is named in a trace: 'clock:1', 'energy', 'fields'."""
    return "".join([query, *(f":{a}" for a in args)]) if query != "fields" else "fields"


def _field_value(v: Any) -> float | int | None:
    """Decode one nvmlFieldValue_t by its valueType (nvmlValueType_t)."""
    member = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(int(v.valueType))
    if member is None:
        return None
    value = getattr(v.value, member)
    return None if member != "dVal" and value in NOT_AVAILABLE else value


class PynvmlDevice:
    """A live GPU through nvidia-ml-py; one handle, NVML initialised for this object's life."""

    live = True
    origin = "nvml"

    def __init__(self, nv: Any, handle: Any, note: str = ""):
        self._nv = nv
        self._h = handle
        self.note = note

    def read(self, query: str, *args: Any) -> Any:
        fn = getattr(self, f"_q_{query}", None)
        if fn is None:
            raise NvmlCallError(NVML_ERROR_NOT_SUPPORTED, f"unknown query {query!r}")
        try:
            return fn(*args)
        except self._nv.NVMLError as exc:
            raise NvmlCallError(getattr(exc, "value", -1), str(exc)) from None

    def poll_start(self) -> float:
        return time.monotonic()

    def begin_window(self, case_id: str) -> None:
        pass

    def end_window(self, case_id: str) -> None:
        pass

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:  # shutting down twice or after a driver loss is harmless
            pass

    # --- queries (NVML units) -------------------------------------------------------------
    def _q_name(self) -> str:
        return _text(self._nv.nvmlDeviceGetName(self._h))

    def _q_uuid(self) -> str:
        return _text(self._nv.nvmlDeviceGetUUID(self._h))

    def _q_index(self) -> int:
        return int(self._nv.nvmlDeviceGetIndex(self._h))

    def _q_pid(self) -> int:
        return os.getpid()

    def _q_max_clock(self, kind: int) -> int:
        return int(self._nv.nvmlDeviceGetMaxClockInfo(self._h, int(kind)))

    def _q_power_limit(self) -> int:
        return int(self._nv.nvmlDeviceGetEnforcedPowerLimit(self._h))

    def _q_fields(self, keys: tuple[str, ...]) -> dict[str, list]:
        ids = [tuple(int(x) for x in k.split("@")) for k in keys]
        values = self._nv.nvmlDeviceGetFieldValues(self._h, ids)
        out = {}
        for key, v in zip(keys, values):
            ret = int(v.nvmlReturn)
            out[key] = [ret, _field_value(v) if ret == NVML_SUCCESS else None]
        return out

    def _q_energy(self) -> int:
        return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h))

    def _q_power_usage(self) -> int:
        return int(self._nv.nvmlDeviceGetPowerUsage(self._h))

    def _q_clock(self, kind: int) -> int:
        return int(self._nv.nvmlDeviceGetClockInfo(self._h, int(kind)))

    def _q_temperature(self) -> int:
        return int(self._nv.nvmlDeviceGetTemperature(self._h, 0))  # NVML_TEMPERATURE_GPU

    def _q_utilization(self) -> list[int]:
        u = self._nv.nvmlDeviceGetUtilizationRates(self._h)
        return [int(u.gpu), int(u.memory)]

    def _q_memory_used(self) -> int:
        return int(self._nv.nvmlDeviceGetMemoryInfo(self._h).used)

    def _q_clocks_event_reasons(self) -> int:
        fn = getattr(self._nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        fn = fn or self._nv.nvmlDeviceGetCurrentClocksThrottleReasons  # same bits, older name
        return int(fn(self._h))

    def _q_processes(self) -> list[int]:
        return sorted({int(p.pid) for p in self._nv.nvmlDeviceGetComputeRunningProcesses(self._h)})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- opening the NVML device of a CUDA device ----------------------------------------------

def open_nvml_device(cuda_device: str) -> PynvmlDevice:
    """The NVML device behind torch device 'cuda:<i>', matched by UUID (indices differ).

    Raises TelemetryUnavailable with the reason when NVML or the match is not possible.
    """
    try:
        import pynvml as nv
    except ImportError:
        raise TelemetryUnavailable("nvidia-ml-py (pynvml) is not installed") from None
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        raise TelemetryUnavailable(f"NVML init failed: {exc} (no NVIDIA driver on this node?)") from None
    try:
        handle, how = _match(nv, cuda_index(cuda_device))
        note = f"matched {cuda_device} by {how}"
        if _is_mig(nv, handle):
            handle = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            note += "; MIG instance: readings cover the whole parent GPU"
        return PynvmlDevice(nv, handle, note)
    except TelemetryUnavailable:
        nv.nvmlShutdown()
        raise
    except Exception as exc:
        nv.nvmlShutdown()
        raise TelemetryUnavailable(f"cannot open the NVML device of {cuda_device}: {exc}") from None


def cuda_index(device: str) -> int:
    m = re.fullmatch(r"cuda(?::(\d+))?", device.strip())
    if not m:
        raise TelemetryUnavailable(f"not a CUDA device string: {device!r}")
    return int(m.group(1) or 0)


def _match(nv: Any, index: int) -> tuple[Any, str]:
    """(NVML handle, how it was matched) for CUDA device `index` of this process."""
    for uuid, how in _cuda_uuids(index):
        for candidate in (uuid, f"GPU-{uuid}", f"MIG-{uuid}"):
            try:
                return nv.nvmlDeviceGetHandleByUUID(candidate), how
            except nv.NVMLError:
                continue
    bus_id = _cuda_pci_bus_id(index)
    if bus_id:
        try:
            return nv.nvmlDeviceGetHandleByPciBusId(bus_id), f"PCI bus id {bus_id}"
        except nv.NVMLError:
            pass
    raise TelemetryUnavailable(f"cannot match cuda:{index} to an NVML device by UUID or PCI bus id")


def _cuda_uuids(index: int) -> list[tuple[str, str]]:
    """UUID candidates of CUDA device `index`: torch's device properties, then CUDA_VISIBLE_DEVICES."""
    out = []
    try:
        import torch

        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid:
            out.append((str(uuid), "UUID (torch device properties)"))
    except Exception as exc:
        log.debug("torch cannot give the UUID of cuda:%d: %s", index, exc)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if index < len(visible) and visible[index].startswith(("GPU-", "MIG-")):
        out.append((visible[index], "UUID (CUDA_VISIBLE_DEVICES)"))
    return out


def _cuda_pci_bus_id(index: int) -> str | None:
    try:
        import torch

        p = torch.cuda.get_device_properties(index)
        domain, bus, dev = p.pci_domain_id, p.pci_bus_id, p.pci_device_id
    except Exception:
        return None
    return f"{domain:08X}:{bus:02X}:{dev:02X}.0"


def _is_mig(nv: Any, handle: Any) -> bool:
    try:
        return bool(nv.nvmlDeviceIsMigDeviceHandle(handle))
    except Exception:
        return False
