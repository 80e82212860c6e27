"""What this node's accelerator is and how it attaches to the host.

- identity: device name, PCI bus id, PCI *product* device id (0x2330 = H100 SXM5 80GB), compute
  capability (CUDA) or gfx architecture (ROCm). torch's `pci_device_id` property is the PCI
  slot number, not the product id: the product id comes from NVML's pciInfo (device << 16 |
  vendor) or from /sys/bus/pci/devices/<bus id>/device.
- host link: NVLink-C2C when NVML reports C2C mode enabled (GH200); else the PCIe generation
  and width, current and maximum, from NVML or from sysfs (current_link_speed "32.0 GT/s PCIe").
  A PCIe link may train down when idle: the current value is recorded beside the maximum.
All functions degrade to None/'unknown' without NVML, sysfs or a GPU; none raises for that.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifbench.units import GiB

log = logging.getLogger(__name__)

SYSFS_PCI = Path("/sys/bus/pci/devices")
# PCIe signalling rate (GT/s) and line-code efficiency per generation (PCI-SIG base specs):
# Gen1-2 8b/10b, Gen3-5 128b/130b, Gen6 FLIT mode (242 payload bytes of 256).
PCIE_GEN = {1: (2.5, 8 / 10), 2: (5.0, 8 / 10), 3: (8.0, 128 / 130), 4: (16.0, 128 / 130),
            5: (32.0, 128 / 130), 6: (64.0, 242 / 256)}


def pcie_gbps(gen: int, width: int) -> float:
    """Per-direction PCIe bandwidth in GB/s: GT/s x lanes x encoding / 8 (Gen5 x16 = 63.0)."""
    rate, eff = PCIE_GEN[gen]
    return rate * width * eff / 8


def gen_from_speed(text: str) -> int | None:
    """sysfs link speed '32.0 GT/s PCIe' (or '8 GT/s') -> PCIe generation 5 (3)."""
    try:
        rate = float(str(text).split()[0])
    except (ValueError, IndexError):
        return None
    for gen, (gts, _) in PCIE_GEN.items():
        if abs(gts - rate) < 0.01:
            return gen
    return None


@dataclass(frozen=True, slots=True)
class HostLink:
    """How the device attaches to host memory."""

    kind: str
    """'pcie', 'nvlink-c2c', or 'unknown'"""
    gen: int | None = None
    width: int | None = None
    max_gen: int | None = None
    max_width: int | None = None
    via: str = ""
    """where the facts came from: nvml, sysfs, or the reason nothing was found"""

    @property
    def max_gbps(self) -> float | None:
        """Per-direction GB/s at the best generation and width the link can train to."""
        if self.kind == "pcie" and self.max_gen in PCIE_GEN and self.max_width:
            return pcie_gbps(self.max_gen, self.max_width)
        return None

    def describe(self) -> str:
        if self.kind == "nvlink-c2c":
            return f"NVLink-C2C (via {self.via})"
        if self.kind == "pcie":
            now = f"Gen{self.gen} x{self.width}" if self.gen else "current unknown"
            best = f"max Gen{self.max_gen} x{self.max_width}" if self.max_gen else "max unknown"
            gbps = f", {self.max_gbps:.1f} GB/s per direction at max" if self.max_gbps else ""
            return f"PCIe {now} ({best}{gbps}; via {self.via})"
        return f"unknown host link ({self.via})"


# --- identity ------------------------------------------------------------------------------

def _props(device: str) -> Any:
    import torch

    return torch.cuda.get_device_properties(torch.device(device).index or 0)


def pci_bus_id(device: str) -> str | None:
    """'0000:65:00.0' of a CUDA/ROCm device, from torch's domain/bus/slot properties."""
    try:
        p = _props(device)
        return f"{int(p.pci_domain_id):04x}:{int(p.pci_bus_id):02x}:{int(p.pci_device_id):02x}.0"
    except Exception:
        return None


def _nvml_handle(device: str, pynvml: Any) -> Any:
    props = _props(device)
    uuid = str(getattr(props, "uuid", "") or "")
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception:
            pass
    bus = pci_bus_id(device)
    if bus is None:
        raise LookupError("no PCI bus id")
    return pynvml.nvmlDeviceGetHandleByPciBusId(f"0000{bus}")  # NVML's 8-digit domain form


def _with_nvml(device: str, fn: Any) -> Any:
    """Call fn(handle, pynvml) for the device; None when NVML or the device is unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        log.debug("NVML unavailable: %s", exc)
        return None
    try:
        return fn(_nvml_handle(device, pynvml), pynvml)
    except Exception as exc:
        log.debug("NVML query failed for %s: %s", device, exc)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def read_sysfs(bus_id: str | None, name: str, root: Path = SYSFS_PCI) -> str | None:
    if not bus_id:
        return None
    try:
        return (Path(root) / bus_id / name).read_text().strip()
    except OSError:
        return None


def pci_device_id(device: str, root: Path = SYSFS_PCI) -> str | None:
    """PCI product id '0x2330' of a GPU: NVML pciInfo, else sysfs; None when neither answers."""
    if not str(device).startswith("cuda"):
        return None
    combined = _with_nvml(device, lambda h, nv: nv.nvmlDeviceGetPciInfo(h).pciDeviceId)
    if combined:
        return f"0x{(int(combined) >> 16) & 0xFFFF:04x}"
    text = read_sysfs(pci_bus_id(device), "device", root)
    return text.lower() if text else None


def identity(device: str) -> dict[str, Any]:
    """name, pci_bus_id, pci_device_id, compute_capability or arch of a torch device."""
    if not str(device).startswith("cuda"):
        return {"device": device, "name": "cpu"}
    p = _props(device)
    out: dict[str, Any] = {"device": device, "name": p.name, "pci_bus_id": pci_bus_id(device),
                           "pci_device_id": pci_device_id(device)}
    arch = getattr(p, "gcnArchName", "")
    out["compute_capability"] = f"{p.major}.{p.minor}"
    if arch:
        out["arch"] = arch
    return out


# --- host link ------------------------------------------------------------------------------

def _nvml_link(handle: Any, nv: Any) -> HostLink | None:
    try:
        if int(nv.nvmlDeviceGetC2cModeInfoV(handle).isC2cEnabled):
            return HostLink("nvlink-c2c", via="nvml C2C mode")
    except Exception:  # older drivers / non-Grace systems: no C2C API
        pass
    try:
        return HostLink("pcie", gen=int(nv.nvmlDeviceGetCurrPcieLinkGeneration(handle)),
                        width=int(nv.nvmlDeviceGetCurrPcieLinkWidth(handle)),
                        max_gen=int(nv.nvmlDeviceGetMaxPcieLinkGeneration(handle)),
                        max_width=int(nv.nvmlDeviceGetMaxPcieLinkWidth(handle)), via="nvml")
    except Exception:
        return None


def sysfs_link(bus_id: str | None, root: Path = SYSFS_PCI) -> HostLink | None:
    """PCIe link of a device from sysfs (current_link_speed/width, max_link_speed/width)."""
    values = {n: read_sysfs(bus_id, n, root) for n in
              ("current_link_speed", "current_link_width", "max_link_speed", "max_link_width")}
    if not any(values.values()):
        return None

    def _int(text: str | None) -> int | None:
        try:
            return int(str(text).strip().lstrip("x"))
        except ValueError:
            return None

    return HostLink("pcie", gen=gen_from_speed(values["current_link_speed"] or ""),
                    width=_int(values["current_link_width"]),
                    max_gen=gen_from_speed(values["max_link_speed"] or ""),
                    max_width=_int(values["max_link_width"]), via="sysfs")


def host_link(device: str, root: Path = SYSFS_PCI) -> HostLink:
    """The host link of a GPU: NVLink-C2C or PCIe gen/width; kind 'unknown' with the reason."""
    if not str(device).startswith("cuda"):
        return HostLink("unknown", via="a CPU device has no host link")
    link = _with_nvml(device, _nvml_link)
    if link is None:
        link = sysfs_link(pci_bus_id(device), root)
    return link or HostLink("unknown", via="neither NVML nor sysfs reported the link")


# --- memory -----------------------------------------------------------------------------------

def free_bytes(device: str, share: int = 1) -> int:
    """Bytes a benchmark may allocate on `device` now: free GPU memory plus the blocks torch's
    caching allocator holds unused (reserved - allocated) (cuda), or host memory available
    (psutil) divided among `share` ranks that allocate from it (cpu)."""
    if str(device).startswith("cuda"):
        import torch

        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0] + cached)
    return host_available_bytes(share)


def host_available_bytes(share: int = 1) -> int:
    """Host memory available now (psutil), divided among `share` ranks on this node."""
    import psutil

    return int(psutil.virtual_memory().available) // max(1, share)


def memory_skip_reason(need_bytes: float, device: str, share: int = 1, what: str = "",
                       fraction: float = 0.9) -> str | None:
    """Why `need_bytes` does not fit in `fraction` of what `device` has free, or None."""
    free = free_bytes(device, share)
    if need_bytes > fraction * free:
        return f"needs {need_bytes / GiB:.2f} GiB{what}, {free / GiB:.2f} GiB free on {device}"
    return None


# --- caches ---------------------------------------------------------------------------------

SYSFS_CPU_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")


def parse_cache_size(text: str) -> int | None:
    """sysfs cache size '32768K' / '1M' / '512' -> bytes."""
    text = str(text).strip().upper()
    factor = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    try:
        return int(text.rstrip("KMG")) * factor
    except ValueError:
        return None


@functools.lru_cache(maxsize=None)
def last_level_cache_bytes(device: str, root: Path = SYSFS_CPU_CACHE) -> int | None:
    """L2 of a GPU (torch property), or the highest-level CPU cache of cpu0 from sysfs; None if unknown."""
    if str(device).startswith("cuda"):
        try:
            size = int(getattr(_props(device), "L2_cache_size", 0))
            return size or None
        except Exception:
            return None
    best: tuple[int, int] | None = None
    for index in sorted(Path(root).glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if size and (best is None or level > best[0]):
            best = (level, size)
    return best[1] if best else None
