"""Rank, world size and rendezvous from the environment (local launcher, torchrun or Slurm).

Precedence: RANK/WORLD_SIZE/LOCAL_RANK (set by aifbench's local launcher and torchrun), then
SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID. The master address is MASTER_ADDR, else the first
node of SLURM_JOB_NODELIST resolved to an IP address (a node *name* may not resolve on the
other nodes); the init timeout is finite so a broken rendezvous fails in minutes, not 30.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping

from aifbench.errors import LaunchError

log = logging.getLogger(__name__)


@dataclass
class RankInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False


def rank_info(env: Mapping[str, str] | None = None) -> RankInfo:
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world, local = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    else:
        rank, world, local = 0, 1, 0
    if not 0 <= rank < world:
        raise LaunchError(f"rank {rank} outside world size {world}")
    return RankInfo(rank=rank, world_size=world, local_rank=local, distributed=False)


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm hostlist -> names: 'n[1-2],gpu[007,009-010]' -> n1, n2, gpu007, gpu009, gpu010.

    Uses `scontrol show hostnames` where Slurm is installed; the fallback handles the
    bracket ranges Slurm prints (zero padding kept).
    """
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.split()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    names = []
    for prefix, body in re.findall(r"([^,\[]+)(?:\[([^\]]*)\])?,?", nodelist):
        if not body:
            names.append(prefix)
            continue
        for part in body.split(","):
            lo, _, hi = part.partition("-")
            width = len(lo)
            for i in range(int(lo), int(hi or lo) + 1):
                names.append(f"{prefix}{i:0{width}d}")
    return names


def master_address(env: Mapping[str, str] | None = None) -> tuple[str, int]:
    env = os.environ if env is None else env
    host = env.get("MASTER_ADDR")
    if not host:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        host = expand_nodelist(nodelist)[0] if nodelist else "127.0.0.1"
    try:
        addr = socket.gethostbyname(host)
    except OSError as exc:
        raise LaunchError(f"cannot resolve master node {host!r}: {exc}") from None
    if "MASTER_PORT" in env:
        port = int(env["MASTER_PORT"])
    else:
        port = default_port(env.get("SLURM_JOB_ID"))
    return addr, port


def default_port(job_id: str | int | None) -> int:
    """Rendezvous port of a Slurm job: one per job, so two jobs sharing a node do not collide."""
    return 20000 + int(job_id or 0) % 20000


def init(info: RankInfo, device: str, timeout_s: float = 300.0,
         env: Mapping[str, str] | None = None) -> RankInfo:
    """Initialise torch.distributed (NCCL on GPUs, gloo on CPU) when world_size > 1."""
    if info.world_size <= 1:
        return info
    import torch.distributed as dist

    addr, port = master_address(env)
    backend = "nccl" if device == "cuda" else "gloo"
    log.info("rank %d/%d: init %s at %s:%d", info.rank, info.world_size, backend, addr, port)
    try:
        dist.init_process_group(backend=backend, init_method=f"tcp://{addr}:{port}", rank=info.rank,
                                world_size=info.world_size, timeout=timedelta(seconds=timeout_s))
    except Exception as exc:
        raise LaunchError(f"rendezvous at {addr}:{port} failed on rank {info.rank}: {exc}") from None
    return dataclasses.replace(info, distributed=True)


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
