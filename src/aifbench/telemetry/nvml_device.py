"""The device access layer: the seam between the sampler and the hardware.

The sampler asks a `DeviceAccess` for raw readings by query name in NVML's vocabulary and
units (below); `PynvmlDevice` answers from an NVIDIA driver through nvidia-ml-py,
`aifbench.telemetry.amdsmi_device.AmdSmiDevice` from an AMD driver through amdsmi, and
`aifbench.telemetry.trace.ReplayDevice` from a recorded trace. Everything above this layer
(unit conversion, field return codes, reason decoding, metrics, flags) is the same code.

One access may hold several GPUs ("slots"): slot 0 is the rank's own device, the others are
the other GPUs visible to the process (see aifbench.telemetry.gpus). Every read names its
slot; one poll (`poll_start`) reads every slot at the same time point.

Queries (args) -> result:
  static:  name, uuid, index, pid (this process), max_clock (kind: 1 SM, 2 memory) -> MHz
  polled:  power_limit -> mW (enforced: nvmlDeviceGetEnforcedPowerLimit), power_limit_default -> mW
           (nvmlDeviceGetPowerManagementDefaultLimit; absent on older drivers); read once a second
           fields (keys 'fieldId@scopeId') -> {key: [nvmlReturn, value]}  (field API, one call)
           energy -> mJ since driver load; power_usage -> mW (1 s average)
           clock (kind) -> MHz; temperature -> C; utilization -> [gpu %, memory %]
           memory_used -> bytes; clocks_event_reasons -> bitmask; processes -> [pid, ...]
A failed call raises NvmlCallError carrying NVML's return code.
"""

from __future__ import annotations

import logging
import os
import time
from functools import lru_cache
from typing import Any, Protocol

from aifbench.telemetry.gpus import TelemetryUnavailable, cuda_index, pci_location, visible_indices

__all__ = ["DeviceAccess", "NvmlCallError", "PynvmlDevice", "TelemetryUnavailable", "call_key", "open_nvml_device"]

log = logging.getLogger(__name__)

# nvmlReturn_t codes used here (nvml.h)
NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_UNKNOWN = 999
PERMANENT_ERRORS = {NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION, NVML_ERROR_FUNCTION_NOT_FOUND}
"""a query failing with one of these is not asked again for the sampler's life"""

NOT_AVAILABLE = {0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF}  # NVML_VALUE_NOT_AVAILABLE sentinels
UINT_MAX = 0xFFFFFFFF  # scopeId: aggregate over all NVLink links (nvml.h)


ERROR_WORDS = {NVML_ERROR_NOT_SUPPORTED: "not supported", NVML_ERROR_NO_PERMISSION: "no permission",
               NVML_ERROR_FUNCTION_NOT_FOUND: "not in this driver (older driver)"}


class NvmlCallError(Exception):
    """One NVML call failed; `code` is the nvmlReturn_t; `why`: short text for a reading that
    stays unknown, from the code alone (so a replay says what the recorded session said)."""

    def __init__(self, code: int, message: str = "", why: str = ""):
        super().__init__(message or f"NVML error {code}")
        self.code = int(code)
        words = ERROR_WORDS.get(self.code)
        self.why = why or f"NVML error {self.code}" + (f" ({words})" if words else "")


class DeviceAccess(Protocol):
    live: bool
    """True: readings are taken now (poll thread); False: recorded (drained per window)"""
    source: str
    """what answers: 'nvml', 'amdsmi' or 'replay' (the telemetry table's source column)"""
    origin: str
    """'nvml', 'amdsmi' or 'replay: <file>', with what it wraps"""
    slots: int
    """GPUs behind this access; slot 0 is the rank's own device"""

    def read(self, query: str, *args: Any, slot: int = 0) -> Any: ...

    def poll_start(self) -> float | None:
        """Begin one poll: its time in s, or None when a recorded window has no more polls."""

    def begin_window(self, case_id: str) -> None: ...

    def end_window(self, case_id: str) -> None: ...

    def close(self) -> None: ...


def call_key(query: str, args: tuple) -> str:
    """How a call is named in a trace: 'clock:1', 'energy', 'fields'."""
    if not args or query == "fields":
        return query
    return "".join([query, *(f":{a}" for a in args)])


_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
"""nvmlValueType_t -> the member of nvmlValue_t holding the value"""


def _field_value(v: Any) -> float | int | None:
    """Decode one nvmlFieldValue_t by its valueType (nvmlValueType_t)."""
    member = _VALUE_MEMBERS.get(int(v.valueType))
    if member is None:
        return None
    value = getattr(v.value, member)
    return None if member != "dVal" and value in NOT_AVAILABLE else value


@lru_cache(maxsize=64)
def field_ids(keys: tuple[str, ...]) -> list[tuple[int, int]]:
    """('186@0', ...) -> [(186, 0), ...]: parsed once per distinct request list."""
    return [tuple(int(x) for x in k.split("@")) for k in keys]


class LiveAccess:
    """Base of the hardware backends: handles per slot, readings taken at the time of the poll;
    a query `q` is the method `_q_<q>(handle, *args)`."""

    live = True

    def __init__(self, handles: list[Any], note: str = ""):
        self._handles = list(handles)
        self.slots = len(self._handles)
        self.note = note
        self._queries = {name[3:]: getattr(self, name) for name in dir(type(self)) if name.startswith("_q_")}

    def _query(self, query: str, slot: int, args: tuple) -> Any:
        fn = self._queries.get(query)
        if fn is None:
            raise NvmlCallError(NVML_ERROR_NOT_SUPPORTED, f"no {self.source} query {query!r}")
        return fn(self._handles[slot], *args)

    def poll_start(self) -> float:
        return time.monotonic()

    def begin_window(self, case_id: str) -> None:
        pass

    def end_window(self, case_id: str) -> None:
        pass

    def close(self) -> None:
        try:
            self._shutdown()
        except Exception:  # shutting down twice or after a driver loss is harmless
            pass

    def _shutdown(self) -> None:
        raise NotImplementedError


class PynvmlDevice(LiveAccess):
    """Live GPUs through nvidia-ml-py: one NVML handle per slot, NVML initialised for this object's life."""

    source = origin = "nvml"

    def __init__(self, nv: Any, handles: list[Any], note: str = ""):
        super().__init__(handles, note)
        self._nv = nv
        self._refused: dict[int, dict[str, int]] = {id(h): {} for h in self._handles}
        """per handle: field key -> the permanent error it was refused with; never asked again"""
        self._asks: dict[tuple[int, tuple[str, ...]], tuple[str, ...]] = {}
        """(handle, keys asked for) -> the keys sent to NVML (those not refused)"""

    def read(self, query: str, *args: Any, slot: int = 0) -> Any:
        try:
            return self._query(query, slot, args)
        except self._nv.NVMLError as exc:
            raise NvmlCallError(getattr(exc, "value", NVML_ERROR_UNKNOWN), str(exc)) from None

    def _shutdown(self) -> None:
        self._nv.nvmlShutdown()

    # --- queries (NVML units), each on one handle --------------------------------------------
    def _q_name(self, h: Any) -> str:
        return _text(self._nv.nvmlDeviceGetName(h))

    def _q_uuid(self, h: Any) -> str:
        return _text(self._nv.nvmlDeviceGetUUID(h))

    def _q_index(self, h: Any) -> int:
        return int(self._nv.nvmlDeviceGetIndex(h))

    def _q_pid(self, h: Any) -> int:
        return os.getpid()

    def _q_max_clock(self, h: Any, kind: int) -> int:
        return int(self._nv.nvmlDeviceGetMaxClockInfo(h, int(kind)))

    def _q_power_limit(self, h: Any) -> int:
        return int(self._nv.nvmlDeviceGetEnforcedPowerLimit(h))

    def _q_power_limit_default(self, h: Any) -> int:
        fn = getattr(self._nv, "nvmlDeviceGetPowerManagementDefaultLimit", None)
        if fn is None:  # an nvidia-ml-py without the binding
            raise NvmlCallError(NVML_ERROR_FUNCTION_NOT_FOUND, "nvidia-ml-py has no nvmlDeviceGetPowerManagementDefaultLimit")
        return int(fn(h))

    def _q_fields(self, h: Any, keys: tuple[str, ...]) -> dict[str, list]:
        """One nvmlDeviceGetFieldValues call for the keys not refused for good; the refused
        ones answer their recorded error, so a caller (and a recording) sees every key."""
        keys = tuple(keys)
        refused = self._refused[id(h)]
        ask = self._asks.get((id(h), keys))
        if ask is None:
            ask = self._asks[(id(h), keys)] = tuple(k for k in keys if k not in refused)
        values = self._nv.nvmlDeviceGetFieldValues(h, field_ids(ask)) if ask else ()
        got = {}
        for key, v in zip(ask, values):
            ret = int(v.nvmlReturn)
            got[key] = [ret, _field_value(v) if ret == NVML_SUCCESS else None]
            if ret in PERMANENT_ERRORS:
                refused[key] = ret
                self._asks.clear()
        return {k: got[k] if k in got else [refused.get(k, NVML_ERROR_NOT_SUPPORTED), None] for k in keys}

    def _q_energy(self, h: Any) -> int:
        return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(h))

    def _q_power_usage(self, h: Any) -> int:
        return int(self._nv.nvmlDeviceGetPowerUsage(h))

    def _q_clock(self, h: Any, kind: int) -> int:
        return int(self._nv.nvmlDeviceGetClockInfo(h, int(kind)))

    def _q_temperature(self, h: Any) -> int:
        return int(self._nv.nvmlDeviceGetTemperature(h, 0))  # NVML_TEMPERATURE_GPU

    def _q_utilization(self, h: Any) -> list[int]:
        u = self._nv.nvmlDeviceGetUtilizationRates(h)
        return [int(u.gpu), int(u.memory)]

    def _q_memory_used(self, h: Any) -> int:
        return int(self._nv.nvmlDeviceGetMemoryInfo(h).used)

    def _q_clocks_event_reasons(self, h: Any) -> int:
        fn = getattr(self._nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        fn = fn or self._nv.nvmlDeviceGetCurrentClocksThrottleReasons  # same bits, older name
        return int(fn(h))

    def _q_processes(self, h: Any) -> list[int]:
        return sorted({int(p.pid) for p in self._nv.nvmlDeviceGetComputeRunningProcesses(h)})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- opening the NVML devices of a CUDA device (and the other visible ones) -----------------

def open_nvml_device(cuda_device: str, gpus: str = "own") -> PynvmlDevice:
    """The NVML device behind torch device 'cuda:<i>', matched by UUID (indices differ); with
    gpus='visible' also every other GPU this process sees, each once (MIG: its parent GPU).

    Raises TelemetryUnavailable with the reason when NVML or the own device's match is not possible.
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
        own = cuda_index(cuda_device)
        handle, how = _match(nv, own)
        handle, mig = _parent(nv, handle)
        note = f"matched {cuda_device} by {how}" + ("; MIG instance: readings cover the whole parent GPU" if mig else "")
        handles = [handle] + (_others(nv, own, handle) if gpus == "visible" else [])
        if len(handles) > 1:
            note += f"; {len(handles) - 1} more visible GPU(s) sampled (rows only)"
        return PynvmlDevice(nv, handles, note)
    except TelemetryUnavailable:
        nv.nvmlShutdown()
        raise
    except Exception as exc:
        nv.nvmlShutdown()
        raise TelemetryUnavailable(f"cannot open the NVML device of {cuda_device}: {exc}") from None


def _others(nv: Any, own: int, own_handle: Any) -> list[Any]:
    """NVML handles of the other visible CUDA devices, one per physical GPU, never the own one."""
    seen = {_text(nv.nvmlDeviceGetUUID(own_handle))}
    out = []
    for index in visible_indices(own)[1:]:
        try:
            handle, _ = _parent(nv, _match(nv, index)[0])
            uuid = _text(nv.nvmlDeviceGetUUID(handle))
        except (TelemetryUnavailable, nv.NVMLError) as exc:
            log.warning("telemetry skips visible GPU cuda:%d: %s", index, exc)
            continue
        if uuid not in seen:
            seen.add(uuid)
            out.append(handle)
    return out


def _match(nv: Any, index: int) -> tuple[Any, str]:
    """(NVML handle, how it was matched) for CUDA device `index` of this process."""
    for uuid, how in _cuda_uuids(index):
        for candidate in (uuid, f"GPU-{uuid}", f"MIG-{uuid}"):
            try:
                return nv.nvmlDeviceGetHandleByUUID(candidate), how
            except nv.NVMLError:
                continue
    loc = pci_location(index)
    if loc:
        bus_id = "{:08X}:{:02X}:{:02X}.0".format(*loc)  # NVML's busId form
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


def _parent(nv: Any, handle: Any) -> tuple[Any, bool]:
    """(the physical GPU's handle, whether `handle` was a MIG instance)."""
    try:
        if nv.nvmlDeviceIsMigDeviceHandle(handle):
            return nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle), True
    except Exception:
        pass
    return handle, False
