"""Which GPUs a rank samples, and where the rank's torch device sits on the PCI bus.

Policy (`gpus`, TelemetryConfig.gpus: aifbench.telemetry.config.POLICIES):
  own      only the rank's own device (the GPU behind its torch device)
  visible  the rank's own device first, then every other GPU visible to the process
           (torch.cuda.device_count(): CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES apply)
  auto     'visible' when the rank is alone on its node, else 'own': when every GPU of a
           node has its own rank, each rank samples its own GPU and none is sampled twice

Ranks on this node: the world size of aifbench.distributed.rank_info, narrowed with RANK/WORLD_SIZE
set by LOCAL_WORLD_SIZE (torchrun, submitit; aifbench's local launcher starts every rank on this
node), with SLURM_PROCID/SLURM_NTASKS by Slurm's per-node task count (SLURM_STEP_TASKS_PER_NODE
or SLURM_TASKS_PER_NODE at SLURM_NODEID).
Metrics and validity flags always describe the rank's own device; the other GPUs only add
rows to the telemetry table (tagged with their gpu_index and gpu_uuid).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Mapping

from aifbench.distributed import rank_info

log = logging.getLogger(__name__)



class TelemetryUnavailable(Exception):
    """GPU telemetry cannot be used here; str(exc) is the reason recorded in runs.telemetry."""


def resolve_policy(policy: str, env: Mapping[str, str] | None = None) -> str:
    """'own' or 'visible' for this rank ('auto' decided from the ranks on this node)."""
    if policy != "auto":
        return policy
    return "visible" if ranks_on_node(env) == 1 else "own"


def ranks_on_node(env: Mapping[str, str] | None = None) -> int:
    """How many ranks of this job run on this node: aifbench.distributed.rank_info's world size,
    narrowed by LOCAL_WORLD_SIZE (RANK/WORLD_SIZE set) or by Slurm's per-node task count."""
    env = os.environ if env is None else env
    world = rank_info(env).world_size
    if world == 1:
        return 1
    if "RANK" in env and "WORLD_SIZE" in env:  # rank_info's precedence: launcher/torchrun before Slurm
        return _int(env.get("LOCAL_WORLD_SIZE")) or world
    return _slurm_tasks_here(env) or world


def _slurm_tasks_here(env: Mapping[str, str]) -> int | None:
    """Tasks on this node from Slurm's '2(x3),1' per-node list, indexed by SLURM_NODEID."""
    text = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    node = _int(env.get("SLURM_NODEID"), allow_zero=True)
    if not text or node is None:
        return None
    counts: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[node] if node < len(counts) else None


def _int(text: str | None, allow_zero: bool = False) -> int | None:
    try:
        n = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return n if n > 0 or (allow_zero and n == 0) else None


def cuda_index(device: str) -> int:
    """'cuda:3' -> 3, 'cuda' -> 0."""
    m = re.fullmatch(r"cuda(?::(\d+))?", device.strip())
    if not m:
        raise TelemetryUnavailable(f"not a CUDA device string: {device!r}")
    return int(m.group(1) or 0)


def visible_indices(own: int) -> list[int]:
    """The rank's own torch device index first, then the other visible ones."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception as exc:  # no torch or no driver: only the own device
        log.debug("cannot count visible GPUs: %s", exc)
        count = own + 1
    return [own] + [i for i in range(count) if i != own]


def pci_location(index: int) -> tuple[int, int, int] | None:
    """(PCI domain, bus, device) of torch device `index` (CUDA or ROCm), or None."""
    try:
        import torch

        p = torch.cuda.get_device_properties(index)
        return int(p.pci_domain_id), int(p.pci_bus_id), int(p.pci_device_id)
    except Exception:
        return None
