"""The records the card is computed from: plain values, times in seconds since the epoch (UTC)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Job:
    """One job allocation (sacct -X), never a user or account name beyond `account` (read once,
    mapped to a class and dropped). Times in s since the epoch; None when the job has none yet."""

    partition: str
    account: str
    state: str          # the first word of sacct's State: COMPLETED, FAILED, CANCELLED, ...
    gpus: int           # GPUs allocated (AllocTRES gres/gpu), else requested (ReqTRES)
    eligible: float | None
    start: float | None
    end: float | None   # None while running
    energy_j: float | None = None   # ConsumedEnergyRaw, J; None when not recorded
    gpu_util_pct: float | None = None   # TRESUsageInAve gres/gpuutil, %; None when not recorded


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the cluster now (sinfo): its name, partitions and GPUs (gres gpu count)."""

    name: str
    partitions: tuple[str, ...]
    gpus: int


@dataclass(frozen=True, slots=True)
class Event:
    """A node event of the accounting (sacctmgr show event): the node was down, drained or
    failing from `start` to `end` (s since the epoch; None = still)."""

    node: str
    state: str
    start: float
    end: float | None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation of the accounting (sacctmgr show reservation) on `nodes`, in s since the epoch."""

    nodes: tuple[str, ...]
    start: float
    end: float
