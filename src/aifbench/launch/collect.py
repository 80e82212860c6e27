"""`aifbench collect RUN_ID`: turn what scheduler jobs (Slurm, submitit's local executor) left behind into complete results.

Every (job, rank, part) that `submit` expected is checked against the shard that task wrote.
When the job has ended (any final Slurm state) and cases are missing — the task was killed,
timed out, ran out of memory, or never started — each missing case becomes status=failed
rows carrying the Slurm state, exit code and the tail of the task's stderr, written to a
shard of its own (part '<part>-collected'), so the task's own shard is never touched. A task
that runs again (requeued by Slurm, submitit or `scontrol requeue`) deletes that shard when it
starts and when it ends, and collect itself deletes it while the job is pending or running
again, so no stale failed row outlives a rerun. Jobs still pending or running are reported,
never given failed rows; a job Slurm cannot be asked about (UNKNOWN) is left as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from aifbench.benchmarks import registry
from aifbench.config import Case
from aifbench.launch.base import JobInfo
from aifbench.launch.jobspec import Submission, collected_shard
from aifbench.plan import Plan
from aifbench.results import layout, read, rows
from aifbench.results.compact import CompactReport
from aifbench.results.compact import compact as compact_run
from aifbench.results.store import write_shard

STDERR_LINES = 8
STDERR_CHARS = 1500
TAIL_BYTES = 65536
RUNNING_AGAIN = ("PENDING", "RUNNING", "REQUEUED", "SUSPENDED")
"""states in which a task will still write its own rows (UNKNOWN: Slurm not reachable, leave alone)"""


@dataclass
class TaskOutcome:
    job_id: str
    part: str
    rank: int
    state: str
    reported: int
    """cases with rows in the task's own shard (any status)"""
    failed_reported: int
    """of those, status failed (the runner recorded the failure itself)"""
    missing: int
    """cases without rows; written as failed when the job has ended"""
    stderr: Path
    reason: str = ""


@dataclass
class CollectReport:
    run_dir: Path
    tasks: list[TaskOutcome] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    compaction: CompactReport | None = None
    """the run's compaction, when every job had ended"""

    @property
    def pending(self) -> list[TaskOutcome]:
        return [t for t in self.tasks if t.state in (*RUNNING_AGAIN, "UNKNOWN")]

    @property
    def failed(self) -> int:
        return sum(t.missing + t.failed_reported for t in self.tasks if t not in self.pending)


def stderr_tail(path: Path, lines: int = STDERR_LINES, limit: int = STDERR_CHARS) -> str:
    """The last non-empty lines of a log, joined by ' | ' (at most `limit` characters)."""
    try:
        with open(path, "rb") as handle:  # the end only: a log can be gigabytes
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"(no stderr file {path.name})"
    tail = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    joined = " | ".join(tail) or "(stderr empty)"
    return joined[-limit:]


def collect(record: Submission, current: dict[str, JobInfo] | None = None, now: datetime | None = None,
            compact: bool = True) -> CollectReport:
    """Check every expected shard against the jobs' states `current` (job id -> JobInfo; None:
    ask the record's backend); write failed rows for missing cases of ended jobs; when no
    job is pending or running any more and no task left cases missing, compact the run
    (results/compact.py): failed rows collect writes stay loose, so a task requeued later drops
    them with its stale collected shard."""
    now = now or datetime.now(timezone.utc)
    plan = Plan.load(record.run_dir / "plan.json")
    cases = {c.index: c for c in plan.replace(case_indices=None).cases}
    if current is None:
        from aifbench.launch import states

        current = states([record])[record.run_id]
    report = CollectReport(record.run_dir)
    reported = reported_cases(record.run_dir)
    for job, part, rank, task, indices in record.expected():
        info = current.get(job.job_id) or JobInfo(job.job_id, "UNKNOWN", "")
        own = reported.get((rank, part), _NONE)
        seen = own.drop_duplicates("case_id") if len(own) else own
        have = set(seen["case_id"]) if len(seen) else set()
        missing = [cases[i] for i in indices if cases[i].case_id not in have]
        outcome = TaskOutcome(job_id=job.job_id, part=part, rank=rank, state=info.state,
                              reported=len(have), missing=len(missing),
                              failed_reported=int((seen["status"] == "failed").sum()) if len(seen) else 0,
                              stderr=record.log_path(job.job_id, task))
        report.tasks.append(outcome)
        target = collected_shard(record.run_dir, rank, part)
        if info.state in RUNNING_AGAIN:  # requeued or still going: it reports its cases itself
            target.unlink(missing_ok=True)
        if not info.final:
            continue
        if not missing:
            target.unlink(missing_ok=True)
            continue
        outcome.reason = failure_reason(info, task, outcome.stderr)
        rows = [failed_row(case, plan, record, info, rank, outcome.reason, now) for case in missing]
        report.written.append(write_shard(target, "metrics", pd.DataFrame(rows)))
    if compact and not report.pending and not report.written:
        # only a run whose every task reported all its cases: failed rows written here stay loose,
        # so a task requeued later can drop them (its stale collected shard) and leave no trace
        report.compaction = compact_run(record.run_dir)
    return report


_NONE = pd.DataFrame({"case_id": pd.Series(dtype="string"), "status": pd.Series(dtype="string")})


def reported_cases(run_dir: Path) -> dict[tuple[int, str], pd.DataFrame]:
    """(rank, part) -> the case_id and status rows that task wrote itself, read from its loose
    shard or from a compacted file alike (its source shard name says which task wrote a row)."""
    rf = layout.scan(run_dir)
    t = read.read_table(rf, "metrics", columns=["case_id", "status"], source=True)
    df = read.to_frame(t)
    if not len(df):
        return {}
    ids = df[layout.SOURCE_COL].map(layout.shard_id)
    out = {}
    for key, part in df.groupby(ids, sort=False):
        if key is not None and not key[1].endswith("-collected"):
            out[key] = part[["case_id", "status"]].reset_index(drop=True)
    return out


def failure_reason(info: JobInfo, task: int, stderr: Path) -> str:
    code = f", exit {info.exit_code}" if info.exit_code else ""
    why = f" ({info.reason})" if info.reason else ""
    return f"slurm job {info.job_id} {info.raw_state or info.state}{code}{why}; task {task} stderr: {stderr_tail(stderr)}"


def failed_row(case: Case, plan: Plan, record: Submission, info: JobInfo, rank: int, reason: str,
               now: datetime) -> dict:
    """One metrics row (status failed, value empty) for a case the task never reported."""
    submitted = datetime.fromisoformat(record.submitted_utc) if record.submitted_utc else now
    columns = rows.CaseColumns(
        run_id=record.run_id, case_id=case.case_id, rank=rank, benchmark=case.benchmark, params=case.params,
        world_size=1 if record.mode == "packed" else record.nodes * record.tasks_per_node,
        node=info.nodes or "unknown", device=plan.device, device_name="unknown (task reported nothing)",
        system=record.system, partition=record.partition, started_utc=submitted, ended_utc=now,
        status="failed", reason=reason)
    return rows.case_rows(columns, [], registry.emits_of(case.benchmark))[0]
