"""Slurm jobs through submitit: the only module that imports submitit (always lazily).

    record = submit(plan, request)        # sbatch (or submitit's local executor), returns at once
    states(record)                        # job id -> JobInfo, wall-clock bounded
    cancel(record)                        # scancel
    sbatch_script(plan, request)          # what --dry-run prints

Layout under the run directory: submission.json (jobspec.Submission: job ids, parts, case
subsets), plan.json, and slurm/ — submitit's folder with the pickled task, the generated
sbatch script and per-task logs `<jobid>_<task>_log.{out,err}` (arrays: `<arrayid>_<index>_...`).
The results directory must be on a file system the compute nodes share.

Modes (jobspec.MODES): single = one job whose ranks all run every case (part 'main'); array =
one Slurm job array, task i runs its case subset with all its ranks (part 'a<i>'); packed = one
allocation whose tasks each run every world-th case alone (part 'p<task>').
Requeue: the task is checkpointable; on preemption or timeout submitit requeues it, and the
runner resumes from the shards it already wrote (cases kept, never measured twice).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from aifbench.errors import ConfigError, LaunchError
from aifbench.launch import cluster
from aifbench.launch.cluster import JobInfo
from aifbench.launch.jobspec import (  # noqa: F401  (Submission, TaskRecord, SUBMISSION_FILE: re-exported)
    LOG_DIR, SUBMISSION_FILE, JobRequest, Submission, TaskRecord, collected_shard)
from aifbench.plan import Plan

log = logging.getLogger(__name__)

_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --- what runs inside the job ---------------------------------------------------------------

class SlurmTask:
    """The callable submitit pickles: runs this task's share of the plan (one per rank).

    `slots` > 0 (local executor, array mode): at most that many array tasks measure at once —
    submitit's local executor starts them all, so each waits for a free lock file first.
    """

    def __init__(self, plan_json: str, packed: bool = False, slots: int = 0):
        self.plan_json = plan_json
        self.packed = packed
        self.slots = slots

    def __call__(self) -> dict[str, Any]:
        import submitit

        from aifbench.distributed import default_port

        job_env = submitit.JobEnvironment()
        rank, world, local = job_env.global_rank, job_env.num_tasks, job_env.local_rank
        for name in _RANK_VARS:  # never trust values inherited from the submitting shell
            os.environ.pop(name, None)
        if job_env.cluster == "local":  # one machine: rendezvous on loopback, port from the job id
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(default_port(job_env.job_id)))
        if "OMP_NUM_THREADS" not in os.environ and os.environ.get("SLURM_CPUS_PER_TASK"):
            os.environ["OMP_NUM_THREADS"] = os.environ["SLURM_CPUS_PER_TASK"]
        plan = Plan.from_json(self.plan_json)
        # failed rows that `collect` wrote for this task's missing cases are stale once it runs
        # again (requeue): it reports those cases itself now, or collect writes them anew
        stale = collected_shard(plan.run_dir, 0 if self.packed else rank, f"p{rank}" if self.packed else plan.part)
        stale.unlink(missing_ok=True)
        with _slot(plan.run_dir / LOG_DIR, self.slots if job_env.cluster == "local" else 0):
            summary = self._run(plan, rank, world, local)
        stale.unlink(missing_ok=True)  # a collect that raced with the start may have rewritten it
        return {"rank": rank, "part": summary[0], "failed": summary[1].failed, "statuses": summary[1].statuses}

    def _run(self, plan: Plan, rank: int, world: int, local: int) -> tuple[str, Any]:
        if self.packed:
            from aifbench.distributed import RankInfo
            from aifbench.runner import execute

            mine = tuple(c.index for c in plan.cases)[rank::world]
            plan = plan.replace(case_indices=mine, part=f"p{rank}")
            return plan.part, execute(plan, RankInfo(rank=0, world_size=1, local_rank=local))
        from aifbench.worker import run_plan

        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
        return plan.part, run_plan(plan)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this on preemption/timeout: requeue the same task; the runner resumes."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(SlurmTask(self.plan_json, self.packed, self.slots))


@contextlib.contextmanager
def _slot(folder: Path, slots: int, poll_s: float = 0.5) -> Iterator[None]:
    """Hold one of `slots` lock files under `folder` (flock; freed when the process dies)."""
    if slots <= 0:
        yield
        return
    import fcntl

    while True:
        for k in range(slots):
            handle = open(folder / f"array-slot{k}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield
            finally:
                handle.close()
            return
        time.sleep(poll_s)


# --- building the sbatch request ------------------------------------------------------------

def sbatch_parameters(req: JobRequest) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for `req` (every string already checked as safe)."""
    slurm = req.system.slurm
    params: dict[str, Any] = {
        "job_name": req.job_name, "nodes": req.nodes, "ntasks_per_node": req.tasks_per_node,
        "time": req.time_min, "signal_delay_s": slurm.signal_delay_s,
        "array_parallelism": req.array_parallelism, "setup": setup_lines(req),
        "srun_args": list(slurm.srun_args), "additional_parameters": {"requeue": True},
    }
    if req.queue.partition:
        params["partition"] = req.queue.partition
    if req.cpus_per_task:
        params["cpus_per_task"] = req.cpus_per_task
        # Slurm 22.05-23.02: srun does not inherit --cpus-per-task from sbatch
        params["srun_args"].append(f"--cpus-per-task={req.cpus_per_task}")
    if req.gpus_per_node and slurm.gpu_request == "gpus_per_node":
        params["gpus_per_node"] = req.gpus_per_node
    elif req.gpus_per_node and slurm.gpu_request == "gres":
        params["gres"] = f"gpu:{req.gpus_per_node}"
    for key in ("account", "qos", "constraint"):
        if getattr(req, key):
            params[key] = getattr(req, key)
    if req.reservation:
        params["additional_parameters"]["reservation"] = req.reservation
    if req.exclusive:
        params["exclusive"] = True
    return params


def setup_lines(req: JobRequest) -> list[str]:
    """Profile set-up lines, then its variables exported with shell-quoted values."""
    lines = list(req.system.setup)
    lines += [f"export {name}={shlex.quote(value)}" for name, value in req.system.env]
    return lines


def python_command(req: JobRequest) -> str:
    return req.system.python or shlex.quote(sys.executable)


def make_executor(req: JobRequest, folder: Path) -> Any:
    import submitit

    if req.system.scheduler == "local":
        executor = submitit.LocalExecutor(folder, python=python_command(req))
        executor.update_parameters(timeout_min=req.time_min, tasks_per_node=req.tasks_per_node, nodes=1)
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=3, python=python_command(req))
    executor.update_parameters(**sbatch_parameters(req))
    return executor


def task_plans(plan: Plan, req: JobRequest) -> list[tuple[str, Plan]]:
    """(part, plan) per Slurm job or array task."""
    if req.mode != "array":
        return [("p" if req.mode == "packed" else "main", plan)]
    indices = [c.index for c in plan.cases]
    step = req.cases_per_task
    return [(f"a{i}", plan.replace(case_indices=tuple(indices[j:j + step]), part=f"a{i}"))
            for i, j in enumerate(range(0, len(indices), step))]


def sbatch_script(plan: Plan, req: JobRequest, folder: Path | None = None) -> str:
    """The sbatch script `submit` would hand to Slurm (--dry-run); writes nothing."""
    if req.system.scheduler == "local":
        return (f"# system {req.system.name}: no scheduler; submitit's local executor would run\n"
                f"# {req.tasks_per_node} process(es) of: {python_command(req)} -u -m submitit.core._submit "
                f"{shlex.quote(str(folder or plan.run_dir / LOG_DIR))}\n")
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(folder or plan.run_dir / LOG_DIR).absolute()
    command = " ".join([python_command(req), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    tasks = task_plans(plan, req)
    map_count = len(tasks) if req.mode == "array" else None
    return _make_sbatch_string(command=command, folder=folder, map_count=map_count, **sbatch_parameters(req))


# --- submitting -----------------------------------------------------------------------------

def submit(plan: Plan, req: JobRequest) -> Submission:
    """Submit `plan` as `req` says. A rejected submission leaves nothing behind (ConfigError)."""
    run_dir = plan.run_dir
    if run_dir.exists():
        raise ConfigError(f"run directory {run_dir} already exists")
    folder = (run_dir / LOG_DIR).absolute()
    tasks = task_plans(plan, req)
    try:
        plan.save(run_dir / "plan.json")
        jobs = _submit_tasks(req, folder, tasks)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    ranks = req.world_size
    record = Submission(run_id=plan.run_id, system=req.system.name, partition=req.queue.name,
                        scheduler=req.system.scheduler, mode=req.mode, folder=str(folder),
                        results_root=str(plan.results_root),
                        jobs=[TaskRecord(job_id=str(job.job_id), part=part, case_indices=[c.index for c in p.cases],
                                         ranks=ranks) for job, (part, p) in zip(jobs, tasks)],
                        submitted_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        nodes=req.nodes, tasks_per_node=req.tasks_per_node)
    record.save()
    return record


def _submit_tasks(req: JobRequest, folder: Path, tasks: list[tuple[str, Plan]]) -> list[Any]:
    from submitit.core.utils import FailedJobError
    from submitit.helpers import clean_env

    executor = make_executor(req, folder)
    packed = req.mode == "packed"
    slots = req.array_parallelism if req.system.scheduler == "local" and req.mode == "array" else 0
    captured = io.StringIO()  # submitit prints sbatch's stderr itself; we report it once
    try:  # clean_env: submitting from inside a Slurm job must not inherit its SLURM_* variables
        with contextlib.redirect_stderr(captured), clean_env():
            if len(tasks) == 1:
                return [executor.submit(SlurmTask(tasks[0][1].to_json(), packed, slots))]
            with executor.batch():
                jobs = [executor.submit(SlurmTask(p.to_json(), packed, slots)) for _, p in tasks]
            return jobs
    except FailedJobError as exc:
        message = str(exc).strip() or captured.getvalue().strip()
        raise ConfigError(f"Slurm rejected the job: {message.splitlines()[-1] if message else 'no message'}") from None
    except (OSError, ValueError) as exc:
        raise LaunchError(f"submission failed: {exc}") from None


# --- state, cancel --------------------------------------------------------------------------

def states(record: Submission, timeout_s: float = cluster.COMMAND_TIMEOUT_S) -> dict[str, JobInfo]:
    """State of every job of `record`, keyed by TaskRecord.job_id; never blocks past the bound."""
    return states_of([record], timeout_s)[record.run_id]


def states_of(records: list[Submission], timeout_s: float = cluster.COMMAND_TIMEOUT_S,
              ) -> dict[str, dict[str, JobInfo]]:
    """run id -> job id -> JobInfo for many runs, with one squeue and at most one sacct call.

    squeue for jobs the controller holds, sacct for older ones (cluster.jobs; each command
    bounded by `timeout_s`); where neither knows a job (accounting off, record purged),
    submitit's result files decide, and a job that left neither a record nor a result is
    reported FAILED ('gone').
    """
    ids = [j.job_id for r in records if r.scheduler != "local" for j in r.jobs]
    found, queue_answered = cluster.jobs(ids, timeout_s) if ids else ({}, True)
    out: dict[str, dict[str, JobInfo]] = {}
    for record in records:
        if record.scheduler == "local":
            out[record.run_id] = {j.job_id: _local_state(record, j) for j in record.jobs}
            continue
        mine = out[record.run_id] = {}
        for job in record.jobs:
            info = found.get(job.job_id)
            if info is None or info.state == "UNKNOWN":
                info = _state_from_files(record, job) or info
            if info is None and queue_answered:
                info = JobInfo(job.job_id, "FAILED", "GONE (not in squeue, no accounting record, no result)",
                               source="squeue")
            mine[job.job_id] = info or JobInfo(job.job_id, "UNKNOWN", "", source="none")
    return out


def check_live(req: JobRequest, timeout_s: float = cluster.COMMAND_TIMEOUT_S) -> None:
    """Before sbatch: the partition exists here and has enough nodes (ConfigError otherwise)."""
    if req.system.scheduler != "slurm":
        return
    if not cluster.slurm_available() or shutil.which("sbatch") is None:
        raise ConfigError(f"system {req.system.name!r} is submitted through Slurm, but this machine has no Slurm "
                          "commands; log in to the system, or use --dry-run, or --system local")
    if not req.queue.partition:
        return
    try:
        parts = {p.name: p for p in cluster.partitions(timeout_s)}
    except LaunchError as exc:
        raise LaunchError(f"cannot reach Slurm to check partition {req.queue.partition!r}: {exc}") from None
    part = parts.get(req.queue.partition)
    if part is None:
        raise ConfigError(f"partition {req.queue.partition!r} of system {req.system.name!r} does not exist on "
                          f"this cluster; partitions here: {', '.join(sorted(parts)) or '(none)'}")
    limit = min(n for n in (part.total_nodes, part.max_nodes) if n) if (part.total_nodes or part.max_nodes) else None
    if limit is not None and req.nodes > limit:
        raise ConfigError(f"--nodes {req.nodes}: partition {part.name!r} has {part.total_nodes} node(s) "
                          f"(max per job {part.max_nodes or 'unlimited'}); allowed: 1..{limit}")


def _state_from_files(record: Submission, job: TaskRecord) -> JobInfo | None:
    from submitit.core.utils import JobPaths, pickle_load

    outcomes = []
    for task in range(job.ranks):
        path = JobPaths(record.folder, job_id=job.job_id, task_id=task).result_pickle
        if not path.exists():
            return None
        try:
            outcomes.append(pickle_load(path)[0])
        except Exception:  # half-written: decide on the next poll
            return None
    state = "COMPLETED" if all(o == "success" for o in outcomes) else "FAILED"
    return JobInfo(job.job_id, state, state, source="submitit")


def _local_state(record: Submission, job: TaskRecord) -> JobInfo:
    """submitit's local job id is the pid of its controller (`python -m submitit.local._local`)."""
    done = _state_from_files(record, job)
    if done is not None:
        return done
    if _local_controller_alive(job.job_id, record.run_id):
        return JobInfo(job.job_id, "RUNNING", "RUNNING", source="submitit")
    return JobInfo(job.job_id, "FAILED", "process gone without a result", source="submitit")


def _local_controller_alive(job_id: str, run_id: str) -> bool:
    """True while pid `job_id` is still submitit's controller for `run_id` (not a reused pid)."""
    import psutil

    try:
        cmdline = psutil.Process(int(job_id)).cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, ValueError):
        return False
    except psutil.AccessDenied:  # cannot tell: assume it is ours
        return True
    return "submitit.local._local" in cmdline and any(run_id in arg for arg in cmdline)


def cancel(record: Submission) -> list[str]:
    """Cancel every job of the run that is not finished; returns the ids signalled."""
    current = states(record)
    live = [i for i, info in current.items() if not info.final]
    if not live:
        return []
    if record.scheduler == "local":
        import signal

        for job_id in live:  # submitit's controller turns SIGINT into cancelling its tasks
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(job_id), signal.SIGINT)
        return live
    cluster.run_command(["scancel", *sorted({i.split("_")[0] for i in live})])
    return live
