"""Node-level compaction: at the end of a job step, one process per node merges that node's shards.

A run of R ranks on R/4 nodes leaves 4 loose shards per rank (one per table); merged where
they are made, it arrives as one compacted file per node and table, and `compact`/`collect`
merge those node files (R/4 reads instead of 4R). The job already holds the nodes, so nothing
extra is scheduled.

Protocol (no barrier, no network): every task whose share of the plan ended writes a marker
`<run>/.steps/<step>/<node>/task<N>.json` naming the shards it wrote, then lists its node's
markers; the task that finds every task of its node marked merges the node's shards
(compact.compact over exactly those files) under a lock file, so one merge runs per node, and
removes the markers. A task that died leaves its node unmerged: its shards stay loose and
`collect`/`compact` merges them later. `<step>` names one attempt of one job step (job id,
step id, restart count), so a requeued step never counts the markers of an earlier attempt.

Crash safety is compaction's (results/compact.py): sources are deleted only after the node's
file is in place, and only when they still are the bytes read; a shard a requeued rank
rewrote later is read instead of its compacted copy (results/layout.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from aifbench.atomic import atomic_write
from aifbench.results import schema
from aifbench.results.compact import CompactReport, compact

log = logging.getLogger(__name__)

STEPS_DIR = ".steps"
STEP_ENV = "AIFBENCH_STEP"
"""set by the local launcher: the name of this launch (its job step)"""


@dataclass(frozen=True)
class NodeTask:
    """Where one task of a job step runs: the step's attempt, its node and the node's tasks."""

    step: str
    """job id, step id and restart count (Slurm) or the local launch's name"""
    node: str
    task: int
    """this task's id in the step (Slurm's SLURM_PROCID, the local launcher's RANK)"""
    node_tasks: tuple[int, ...]
    """the ids of every task of this step on this node"""


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)[:80] or "x"


def node_task(env: Mapping[str, str] | None = None) -> NodeTask | None:
    """This process's NodeTask from the environment: a Slurm job step (SLURM_GTIDS lists the
    step's tasks on this node) or a local launch (every RANK < WORLD_SIZE on this machine);
    None elsewhere (one process run by hand: nothing to merge with)."""
    env = os.environ if env is None else env
    node = _safe(env.get("SLURMD_NODENAME") or socket.gethostname())
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env and env.get("SLURM_GTIDS"):
        step = f"{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', '0')}-r{env.get('SLURM_RESTART_COUNT', '0')}"
        try:
            tasks = tuple(sorted(int(x) for x in env["SLURM_GTIDS"].split(",")))
            return NodeTask(_safe(step), node, int(env["SLURM_PROCID"]), tasks)
        except ValueError:
            return None
    if env.get(STEP_ENV) and "RANK" in env and "WORLD_SIZE" in env:
        return NodeTask(_safe(env[STEP_ENV]), node, int(env["RANK"]), tuple(range(int(env["WORLD_SIZE"]))))
    return None


def task_shards(run_dir: Path, rank: int, part: str) -> list[str]:
    """Names of the loose shards (rank, part) has in `run_dir`, one stat per table (never a
    listing of a directory that may hold 10^5 files)."""
    from aifbench.results.store import shard_name

    return [shard_name(t, rank, part) for t in schema.TABLES if (Path(run_dir) / shard_name(t, rank, part)).exists()]


def finish_task(run_dir: Path, where: NodeTask, shards: list[str]) -> CompactReport | None:
    """Record that `where.task` ended with `shards`; merge the node's shards when every task of
    the node has ended. Returns the merge's report, None when this task did not merge."""
    run_dir = Path(run_dir)
    step_dir = run_dir / STEPS_DIR / where.step
    mine = step_dir / where.node
    mine.mkdir(parents=True, exist_ok=True)
    atomic_write(mine / f"task{where.task}.json", lambda tmp: Path(tmp).write_text(json.dumps(shards)))
    if not _all_ended(mine, where.node_tasks):
        return None
    import fcntl

    with open(step_dir / f"{where.node}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another task of this node may have seen every marker too
        if not mine.is_dir() or not _all_ended(mine, where.node_tasks):
            return None  # it merged already (and removed the markers)
        names: set[str] = set()
        for task in where.node_tasks:
            names.update(json.loads((mine / f"task{task}.json").read_text()))
        files = [run_dir / n for n in sorted(names) if (run_dir / n).exists()]
        report = compact(run_dir, files=files, origin={"node": where.node, "step": where.step}) if files else None
        shutil.rmtree(mine, ignore_errors=True)
        (step_dir / f"{where.node}.lock").unlink(missing_ok=True)
    for empty in (step_dir, step_dir.parent):  # the last node of the step tidies up
        try:
            empty.rmdir()
        except OSError:
            break
    return report


def _all_ended(markers: Path, tasks: tuple[int, ...]) -> bool:
    return all((markers / f"task{t}.json").exists() for t in tasks)


def merge_after_task(run_dir: Path, rank: int, part: str, env: Mapping[str, str] | None = None) -> None:
    """The end of a task's share of a job step: record it and, if it is its node's last, merge the
    node's shards. Never raises: without the merge the shards stay loose and readable."""
    where = node_task(env)
    if where is None:
        return
    try:
        report = finish_task(run_dir, where, task_shards(run_dir, rank, part))
    except Exception as exc:  # an optimisation: the run's results are complete without it
        log.warning("node-level compaction of %s on %s failed, its shards stay loose: %s", run_dir, where.node, exc)
        return
    if report is not None:
        for path, why in report.bad:
            log.warning("not compacted: %s: %s", path, why)
