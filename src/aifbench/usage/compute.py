"""The card's figures from job, node, event and reservation records: pure, one pass over the jobs.

Definitions (docs/operators-usage.md gives them in words), per partition, over the period
[since, until) in UTC; a GPU-hour is one GPU for 3600 s:
  available  = sum over the partition's nodes of GPUs x hours of the period
  allocated  = sum over jobs of GPUs allocated x hours of [start, end) inside the period
               (a job still running counts until `until` or `now`, whichever is first)
  down       = sum over nodes of GPUs x hours inside the period covered by node events that took
               the node out (down, drained, draining, failing); overlapping events counted once
  reserved   = the same for reservations (shown, not subtracted: a reservation's jobs count as allocated)
  idle       = max(0, available - down - allocated)
  utilisation % = 100 x allocated / (available - down)
  GPU utilisation = mean of the jobs' gres/gpuutil (TRESUsageInAve), weighted by their GPU-hours
  wait       = start - eligible of the jobs that started in the period, s; p50/p90/p99 by linear
               interpolation between order statistics (numpy's default, Hyndman & Fan type 7), and
               the mean weighted by each job's GPU-hours in the period
Jobs are counted by their state at the end of the period: a job that ended in the period has its
sacct state (FAILED gathers FAILED, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE), a job still
running at `until` is RUNNING, one still waiting is PENDING.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import numpy as np

from aifbench.usage.records import Event, Job, Node, Reservation

HOUR_S = 3600.0
DAY_S = 86400.0
SIZE_CLASSES: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2-8", 2, 8), ("9-64", 9, 64), ("65-512", 65, 512), (">512", 513, math.inf))
"""job size classes by GPUs allocated: (label, lowest, highest); '0' holds CPU-only jobs"""
STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "RUNNING", "PENDING", "OTHER")
_STATE_OF = {"COMPLETED": "COMPLETED", "FAILED": "FAILED", "NODE_FAIL": "FAILED", "OUT_OF_MEMORY": "FAILED",
             "BOOT_FAIL": "FAILED", "DEADLINE": "FAILED", "CANCELLED": "CANCELLED", "TIMEOUT": "TIMEOUT",
             "PREEMPTED": "PREEMPTED"}
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of the card: `value` in `unit`, or None with `note` saying why it is not available."""

    partition: str
    section: str      # capacity | day | state | wait_size | wait_class | size | class | energy | gpu_util
    group: str        # 'period', a day 'YYYY-MM-DD', a state, a size class or an account class
    metric: str
    value: float | None
    unit: str
    note: str = ""


@lru_cache(maxsize=None)
def size_class(gpus: int) -> int:
    """Index into SIZE_CLASSES of a job with `gpus` GPUs."""
    for i, (_, lo, hi) in enumerate(SIZE_CLASSES):
        if lo <= gpus <= hi:
            return i
    raise ValueError(f"no size class for {gpus} GPUs")


def state_group(state: str) -> str:
    return _STATE_OF.get(state, "OTHER")


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Length of [a0, a1) ∩ [b0, b1), s (0 when disjoint)."""
    return max(0.0, min(a1, b1) - max(a0, b0))


def union_length(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of intervals clipped to [lo, hi), s."""
    total, reach = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= reach or b <= a:
            continue
        total += b - max(a, reach)
        reach = b
    return total


def days(since: float, until: float) -> list[tuple[str, float, float]]:
    """UTC calendar days touching [since, until), each clipped to it: (YYYY-MM-DD, start, end)."""
    import datetime as dt

    out, t = [], math.floor(since / DAY_S) * DAY_S
    while t < until:
        label = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")
        out.append((label, max(t, since), min(t + DAY_S, until)))
        t += DAY_S
    return out


@dataclass
class _Partition:
    """Running sums of one partition while the jobs stream past."""

    n_days: int
    n_classes: int
    allocated_s: float = 0.0
    per_day_s: list[float] = field(default_factory=list)
    state_jobs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    state_gpu_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STATES, 0.0))
    size_gpu_s: list[float] = field(default_factory=lambda: [0.0] * len(SIZE_CLASSES))
    class_gpu_s: list[float] = field(default_factory=list)
    started: int = 0
    ended: int = 0
    energy_j: float = 0.0
    energy_jobs: int = 0
    energy_gpu_s: float = 0.0
    util_weighted: float = 0.0   # sum of gpu_util_pct x GPU-s of the jobs that carry it
    util_gpu_s: float = 0.0
    util_jobs: int = 0
    wait_size: array = field(default_factory=lambda: array("b"))
    wait_class: array = field(default_factory=lambda: array("H"))
    wait_s: array = field(default_factory=lambda: array("d"))
    wait_weight: array = field(default_factory=lambda: array("d"))

    def __post_init__(self) -> None:
        self.per_day_s = [0.0] * self.n_days
        self.class_gpu_s = [0.0] * self.n_classes


def compute(jobs: Iterable[Job], nodes: Sequence[Node], events: Iterable[Event],
            reservations: Iterable[Reservation], since: float, until: float, now: float,
            partitions: Sequence[str], classify: Callable[[str], str], classes: Sequence[str],
            energy_note: str = "", gpu_util_note: str = "") -> list[Figure]:
    """Every figure of the card for `partitions` over [since, until); `classify` maps an account to
    one of `classes`; `energy_note` / `gpu_util_note` non-empty say why those are not available."""
    end_of_data = min(until, now)
    day_list = days(since, until)
    class_index = {c: i for i, c in enumerate(classes)}
    acc = {p: _Partition(len(day_list), len(classes)) for p in partitions}
    class_cache: dict[str, int] = {}
    first_midnight = math.floor(since / DAY_S) * DAY_S

    for job in jobs:
        part = acc.get(job.partition.split(",", 1)[0])
        if part is None:
            continue
        ci = class_cache.get(job.account)
        if ci is None:
            ci = class_cache[job.account] = class_index[classify(job.account)]
        run_s = 0.0
        if job.start is not None:
            s = max(job.start, since)
            e = min(job.end if job.end is not None else end_of_data, end_of_data)
            run_s = max(0.0, e - s)
            if run_s > 0 and job.gpus:
                gpu_s = job.gpus * run_s
                part.allocated_s += gpu_s
                part.size_gpu_s[size_class(job.gpus)] += gpu_s
                part.class_gpu_s[ci] += gpu_s
                d = int((s - first_midnight) // DAY_S)
                while s < e:
                    d_end = first_midnight + (d + 1) * DAY_S
                    part.per_day_s[d] += job.gpus * (min(e, d_end) - s)
                    s, d = d_end, d + 1
            if since <= job.start < until:
                part.started += 1
                if job.eligible is not None:
                    part.wait_size.append(size_class(job.gpus))
                    part.wait_class.append(ci)
                    part.wait_s.append(max(0.0, job.start - job.eligible))
                    part.wait_weight.append(job.gpus * run_s / HOUR_S)
        if job.end is not None and job.end < since:
            continue  # ended before the period (sacct's window is inclusive at its edges)
        if job.end is not None and job.end < until:
            group = state_group(job.state)
            part.ended += 1
            if job.energy_j is not None:
                part.energy_j += job.energy_j
                part.energy_jobs += 1
                part.energy_gpu_s += job.gpus * max(0.0, job.end - job.start) if job.start is not None else 0.0
            if job.gpu_util_pct is not None and job.start is not None and job.gpus:
                whole_s = job.gpus * max(0.0, job.end - job.start)
                part.util_weighted += job.gpu_util_pct * whole_s
                part.util_gpu_s += whole_s
                part.util_jobs += 1
        elif job.start is not None and job.start < until:
            group = "RUNNING"
        else:
            group = "PENDING"
        part.state_jobs[group] += 1
        part.state_gpu_s[group] += job.gpus * run_s

    events_by_node: dict[str, list[tuple[float, float]]] = {}
    for ev in events:
        events_by_node.setdefault(ev.node, []).append((ev.start, ev.end if ev.end is not None else end_of_data))
    reserved_by_node: dict[str, list[tuple[float, float]]] = {}
    for r in reservations:
        for n in r.nodes:
            reserved_by_node.setdefault(n, []).append((r.start, r.end))

    out: list[Figure] = []
    for p in partitions:
        members = [n for n in nodes if p in n.partitions]
        out += _capacity(p, acc[p], members, events_by_node, reserved_by_node, since, until, day_list)
        out += _states(p, acc[p])
        out += _waits(p, acc[p], classes)
        out += _shares(p, "size", [c[0] for c in SIZE_CLASSES], acc[p].size_gpu_s, acc[p].allocated_s)
        out += _shares(p, "class", list(classes), acc[p].class_gpu_s, acc[p].allocated_s)
        out += _energy(p, acc[p], energy_note)
        out += _gpu_util(p, acc[p], gpu_util_note)
    return out


def _capacity(p: str, a: _Partition, members: Sequence[Node], events_by_node: dict, reserved_by_node: dict,
              since: float, until: float, day_list: list[tuple[str, float, float]]) -> list[Figure]:
    """available / allocated / down / reserved / idle GPU-hours and utilisation, for the period and per day."""
    spans = [("period", since, until, a.allocated_s)] + [(d, s, e, a.per_day_s[i]) for i, (d, s, e) in enumerate(day_list)]
    out = []
    gpus = sum(n.gpus for n in members)
    with_events = [(n.gpus, events_by_node[n.name]) for n in members if n.name in events_by_node]
    with_reservations = [(n.gpus, reserved_by_node[n.name]) for n in members if n.name in reserved_by_node]
    for group, lo, hi, allocated_s in spans:
        available = gpus * (hi - lo)
        down = sum(g * union_length(spans_of_node, lo, hi) for g, spans_of_node in with_events)
        reserved = sum(g * union_length(spans_of_node, lo, hi) for g, spans_of_node in with_reservations)
        section = "capacity" if group == "period" else "day"
        usable = available - down
        out += [Figure(p, section, group, "available_gpu_h", available / HOUR_S, "GPU-h"),
                Figure(p, section, group, "allocated_gpu_h", allocated_s / HOUR_S, "GPU-h"),
                Figure(p, section, group, "idle_gpu_h", max(0.0, usable - allocated_s) / HOUR_S, "GPU-h"),
                Figure(p, section, group, "down_gpu_h", down / HOUR_S, "GPU-h"),
                Figure(p, section, group, "reserved_gpu_h", reserved / HOUR_S, "GPU-h"),
                Figure(p, section, group, "utilisation_pct", 100.0 * allocated_s / usable if usable > 0 else None, "%",
                       "" if usable > 0 else "not available: no GPU in service")]
    out += [Figure(p, "capacity", "period", "jobs_started", float(a.started), "jobs"),
            Figure(p, "capacity", "period", "jobs_ended", float(a.ended), "jobs")]
    return out


def _states(p: str, a: _Partition) -> list[Figure]:
    out = []
    for s in STATES:
        out += [Figure(p, "state", s, "jobs", float(a.state_jobs[s]), "jobs"),
                Figure(p, "state", s, "gpu_h", a.state_gpu_s[s] / HOUR_S, "GPU-h")]
    return out


def wait_stats(wait_s: np.ndarray, weight: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99 of the waits (s, linear interpolation) and their GPU-hour-weighted mean (s);
    None where there is no job (or no GPU-hour to weigh by)."""
    out: dict[str, float | None] = {"jobs": float(len(wait_s))}
    for q in PERCENTILES:
        out[f"wait_p{q}_s"] = float(np.percentile(wait_s, q)) if len(wait_s) else None
    total = float(weight.sum()) if len(weight) else 0.0
    out["wait_mean_gpu_h_weighted_s"] = float((wait_s * weight).sum() / total) if total > 0 else None
    return out


def _waits(p: str, a: _Partition, classes: Sequence[str]) -> list[Figure]:
    wait = np.frombuffer(a.wait_s, dtype=np.float64) if len(a.wait_s) else np.zeros(0)
    weight = np.frombuffer(a.wait_weight, dtype=np.float64) if len(a.wait_weight) else np.zeros(0)
    size = np.frombuffer(a.wait_size, dtype=np.int8) if len(a.wait_size) else np.zeros(0, dtype=np.int8)
    klass = np.frombuffer(a.wait_class, dtype=np.uint16) if len(a.wait_class) else np.zeros(0, dtype=np.uint16)
    out = []
    for section, labels, key in (("wait_size", [c[0] for c in SIZE_CLASSES], size), ("wait_class", list(classes), klass)):
        for i, label in enumerate(labels):
            mask = key == i
            for metric, value in wait_stats(wait[mask], weight[mask]).items():
                unit = "jobs" if metric == "jobs" else "s"
                note = "" if value is not None else "no job of this class started in the period" \
                    if metric != "wait_mean_gpu_h_weighted_s" or not mask.any() else "these jobs used no GPU"
                out.append(Figure(p, section, label, metric, value, unit, note))
    return out


def _shares(p: str, section: str, labels: list[str], gpu_s: list[float], total_s: float) -> list[Figure]:
    out = []
    for label, s in zip(labels, gpu_s):
        out += [Figure(p, section, label, "gpu_h", s / HOUR_S, "GPU-h"),
                Figure(p, section, label, "share_pct", 100.0 * s / total_s if total_s > 0 else None, "%",
                       "" if total_s > 0 else "no GPU-hour allocated in the period")]
    return out


def _energy(p: str, a: _Partition, energy_note: str) -> list[Figure]:
    """Energy per job (kWh) and per GPU-hour (kWh/GPU-h) of the jobs that ended with ConsumedEnergy."""
    note = energy_note or ("" if a.energy_jobs else "not available: no job that ended in the period has ConsumedEnergy")
    per_job = a.energy_j / 3.6e6 / a.energy_jobs if not note else None
    per_gpu_h = a.energy_j / 3.6e6 / (a.energy_gpu_s / HOUR_S) if not note and a.energy_gpu_s > 0 else None
    return [Figure(p, "energy", "period", "energy_per_job_kwh", per_job, "kWh", note),
            Figure(p, "energy", "period", "energy_per_gpu_h_kwh", per_gpu_h, "kWh/GPU-h",
                   note or ("" if per_gpu_h is not None else "not available: these jobs used no GPU")),
            Figure(p, "energy", "period", "jobs_with_energy", float(a.energy_jobs), "jobs")]


def _gpu_util(p: str, a: _Partition, gpu_util_note: str) -> list[Figure]:
    """GPU utilisation (TRESUsageInAve gres/gpuutil) of the jobs that ended in the period, their
    mean weighted by each job's GPU-hours, %."""
    note = gpu_util_note or ("" if a.util_gpu_s > 0 else
                             "not available: no GPU job that ended in the period carries gres/gpuutil")
    value = a.util_weighted / a.util_gpu_s if not note else None
    return [Figure(p, "gpu_util", "period", "gpu_util_pct", value, "%", note),
            Figure(p, "gpu_util", "period", "jobs_with_gpu_util", float(a.util_jobs), "jobs")]
