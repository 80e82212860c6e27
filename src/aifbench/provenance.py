"""Provenance of a run on one rank: the node, the device, the software, the scheduler.

Only an explicit list of variables is read from the environment (Slurm's, the module system's,
the container runtimes' and the job script's AIFBENCH_ENVIRONMENT); nothing else is copied, so
no token or password can end up in results.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import aifbench

log = logging.getLogger(__name__)

JOB_VARS: dict[str, tuple[str, ...]] = {
    "job_id": ("AIFBENCH_JOB_ID", "SLURM_JOB_ID"),
    "job_step": ("AIFBENCH_JOB_STEP", "SLURM_STEP_ID"),
    "array_job_id": ("AIFBENCH_ARRAY_JOB_ID", "SLURM_ARRAY_JOB_ID"),
    "array_task_id": ("AIFBENCH_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_ID"),
    "node_index": ("AIFBENCH_NODE_INDEX", "SLURM_NODEID"),
    "job_nodes": ("AIFBENCH_JOB_NODES", "SLURM_JOB_NODELIST"),
}
"""runs-table job column -> the variables it is read from, the first one set wins: a scheduler
backend whose jobs do not set Slurm's exports the AIFBENCH_* ones in its job script"""


def job_ids(env: Mapping[str, str]) -> dict[str, str | None]:
    """Which job, array task, step and node of the scheduler's this rank ran in (JOB_VARS)."""
    return {col: next((env[v] for v in names if v in env), None) for col, names in JOB_VARS.items()}


ENVIRONMENT_VARS = {
    "modules": ("LOADEDMODULES",),  # Lmod and Environment Modules: the loaded modules, ':'-separated
    # the image a container runtime or uenv reports from inside it (the first one set)
    "container": ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "UENV_MOUNT_LIST", "ENROOT_ROOTFS"),
    # what the job script asked for (JSON: systems.environment.Environment.describe)
    "environment": ("AIFBENCH_ENVIRONMENT",),
}
"""runs-table column -> the variables it is read from, first set wins"""


def software_environment(env: Mapping[str, str]) -> dict[str, str | None]:
    """What the job got: loaded modules, the container or uenv it runs in, what it asked for."""
    out: dict[str, str | None] = {}
    for column, names in ENVIRONMENT_VARS.items():
        out[column] = next((env[n] for n in names if env.get(n)), None)
    return out


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo ('model name', or 'CPU part' style on aarch64)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the aifbench checkout this code runs from ('+dirty' if modified), else None."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def device_info(device: str) -> dict[str, Any]:
    """Name, UUID, memory, PCI id and library versions of a torch device."""
    import torch

    info: dict[str, Any] = {"device": device, "device_name": cpu_model(), "torch_version": torch.__version__}
    if not device.startswith("cuda"):
        return info
    index = torch.device(device).index or 0
    props = torch.cuda.get_device_properties(index)
    info.update(
        device_name=props.name,
        gpu_memory_bytes=int(props.total_memory),
        gpu_count=torch.cuda.device_count(),
        gpu_uuid=_uuid(props),
        gpu_pci_device_id=_pci_device_id(device),
        cuda_version=torch.version.cuda or getattr(torch.version, "hip", None),
        cudnn_version=str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
        driver_version=_driver_version(),
    )
    try:
        info["nccl_version"] = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:  # NCCL absent (ROCm builds report RCCL the same way or not at all)
        info["nccl_version"] = None
    return info


def _uuid(props: Any) -> str | None:
    uuid = getattr(props, "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def _pci_device_id(device: str) -> str | None:
    """PCI product id ('0x2330' = H100 SXM5) through NVML or sysfs; torch's pci_device_id is the slot."""
    from aifbench.hardware.detect import pci_device_id

    try:
        return pci_device_id(device)
    except Exception:
        return None


def _driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else str(version)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


@dataclass(frozen=True)
class Provenance:
    """This rank's node, device and software: what the runner reads, and the whole runs-table row."""

    node: str
    """host name"""
    device: str
    """torch device string ('cpu', 'cuda:0')"""
    device_name: str
    """the GPU's name as torch reports it, or the CPU model"""
    gpu_pci_device_id: str | None
    """PCI product id ('0x2330'), None on CPU or when unreadable"""
    row: Mapping[str, Any]
    """every runs-table column collect() read (without run/plan fields)"""


def collect(device: str, env: Mapping[str, str] | None = None) -> Provenance:
    """Provenance of this rank's node and device (its `row` is one runs-table row without run/plan fields)."""
    env = os.environ if env is None else env
    row: dict[str, Any] = {
        "node": socket.gethostname(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "python_version": platform.python_version(),
        "aifbench_version": aifbench.__version__,
        "git_commit": git_commit(),
    }
    row.update(job_ids(env))
    row.update(software_environment(env))
    row.update(device_info(device))
    return Provenance(node=row["node"], device=device, device_name=row["device_name"],
                      gpu_pci_device_id=row.get("gpu_pci_device_id"), row=row)
