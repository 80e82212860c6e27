"""The Slurm backend: sbatch through submitit (what runs inside the job, the submission record,
cancel and collect are shared with the local executor: launch/submitit_base.py).

    launcher = SlurmLauncher()
    req = launcher.resolve(system, options)   # the profile's [slurm] table + flags -> JobRequest
    launcher.script(plan, req)                # the sbatch script (--dry-run)
    record = launcher.submit(plan, req)       # sbatch, returns at once
    launcher.states([record])                 # squeue, then sacct, then submitit's result files
    launcher.cancel(record)                   # scancel

The only module besides submitit_base/submitit_local that imports submitit (always lazily).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from aifbench.errors import ConfigError, LaunchError
from aifbench.launch import cluster
from aifbench.launch.base import JobInfo
from aifbench.launch.jobspec import (LOG_DIR, OPTION_SOURCES, JobRequest, Submission, check_limit, common_fields,
                                    int_opt, option_rows, safe_text)
from aifbench.launch.submitit_base import SubmititLauncher, python_command, state_from_files, task_plans
from aifbench.plan import Plan
from aifbench.systems import SlurmDefaults, System
from aifbench.systems.environment import RECORD_VAR

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititLauncher):
    name = "slurm"
    label = "slurm"

    def resolve_request(self, system: System, opts: Mapping[str, Any], env: Mapping[str, str],
                        device: str | None) -> JobRequest:
        return resolve_slurm(system, opts, env)

    def make_executor(self, req: JobRequest, folder: Path) -> Any:
        import submitit

        executor = submitit.SlurmExecutor(folder, max_num_timeout=3, python=python_command(req))
        executor.update_parameters(**sbatch_parameters(req))
        return executor

    def script(self, plan: Plan, req: JobRequest) -> str:
        return sbatch_script(plan, req)

    def check_submittable(self, req: JobRequest) -> None:
        check_live(req)
        need = account_needed(req)
        if need:
            raise ConfigError(need)

    def notes(self, req: JobRequest) -> list[str]:
        need = account_needed(req)
        notes = [f"{need} (the script below has no --account line)"] if need else []
        envt = req.system.environment
        if envt.python and not envt.venv:
            notes.append(f"the job runs `{envt.python}` inside {req.system.name}'s environment: aifbench and submitit "
                         "must be importable there, or set [environment] venv in a job file (docs/sites.md)")
        return notes

    def states(self, records: Sequence[Submission], timeout_s: float | None = None,
               ) -> dict[str, dict[str, JobInfo]]:
        return states_of(list(records), cluster.COMMAND_TIMEOUT_S if timeout_s is None else timeout_s)

    def signal_jobs(self, record: Submission, live: list[str]) -> None:
        cluster.run_command(["scancel", *sorted({i.split("_")[0] for i in live})])


def slurm_table(system: System) -> SlurmDefaults:
    """The profile's [slurm] table (parse_system refuses a Slurm profile without one)."""
    table = system.tables.get("slurm")
    if not isinstance(table, SlurmDefaults):
        raise ConfigError(f"system {system.name!r} has no [slurm] table (scheduler: {system.scheduler})")
    return table


def resolve_slurm(sysp: System, opts: Mapping[str, Any], env: Mapping[str, str]) -> JobRequest:
    """The request on a Slurm profile: partition, nodes, time and tasks within its limits."""
    queue = sysp.queue(opts.get("partition"))
    slurm = slurm_table(sysp)
    nodes = int_opt(opts, "nodes", 1, 1)
    check_limit("nodes", nodes, queue.max_nodes or sysp.node.count, f"partition {queue.name} of {sysp.name}")
    time_min = int_opt(opts, "time_min", slurm.time_min, 1)
    check_limit("time_min", time_min, queue.max_time_min, f"partition {queue.name} of {sysp.name}")
    tasks = int_opt(opts, "tasks_per_node", slurm.default_tasks_per_node, 1)
    most = sysp.node.gpus if sysp.node.device == "cuda" else (sysp.node.cpu_cores or 1)
    check_limit("tasks_per_node", tasks, most, f"a {sysp.name} node (one task per GPU)"
                if sysp.node.device == "cuda" else f"a {sysp.name} node")
    # one task per GPU: a GPU system asks for as many GPUs as tasks; a CPU profile (local-slurm)
    # asks for its fixed gres count so that Slurm's GPU path is still exercised
    gpus = 0 if slurm.gpu_request == "none" else (tasks if sysp.node.device == "cuda" else slurm.gpus_per_node)
    return JobRequest(
        system=sysp, queue=queue, nodes=nodes, tasks_per_node=tasks, gpus_per_node=gpus,
        cpus_per_task=slurm.cpus_per_task, time_min=time_min,
        account=safe_text("--account" if "account" in opts else "AIFBENCH_ACCOUNT (environment variable)",
                          opts.get("account", env.get("AIFBENCH_ACCOUNT", ""))),
        reservation=safe_text("--reservation" if "reservation" in opts else "AIFBENCH_RESERVATION (environment variable)",
                              opts.get("reservation", env.get("AIFBENCH_RESERVATION", ""))),
        qos=safe_text("qos", opts.get("qos", queue.qos)),
        constraint=safe_text("constraint", opts.get("constraint", slurm.constraint)),
        exclusive=bool(opts.get("exclusive", slurm.exclusive)),
        wckey=safe_text("wckey", opts.get("wckey", slurm.wckey)), **common_fields(opts, sysp.node.device))


def account_needed(req: JobRequest) -> str:
    """What to say when the profile needs a Slurm account and none was given, else ''."""
    sl = slurm_table(req.system)
    if sl is None or not sl.account_required or req.account:
        return ""
    return (f"system {req.system.name} needs a Slurm account to submit: give --account ACCOUNT "
            "or set AIFBENCH_ACCOUNT")


# --- building the sbatch request ------------------------------------------------------------

def sbatch_parameters(req: JobRequest) -> dict[str, Any]:
    """submitit SlurmExecutor parameters for `req` (every string already checked as safe)."""
    slurm = slurm_table(req.system)
    params: dict[str, Any] = {
        "job_name": req.job_name, "nodes": req.nodes, "ntasks_per_node": req.tasks_per_node,
        "time": req.time_min, "signal_delay_s": slurm.signal_delay_s,
        "array_parallelism": req.array_parallelism, "setup": setup_lines(req),
        "srun_args": [*req.system.environment.srun_args(), *slurm.srun_args],
        "additional_parameters": {"requeue": True},
        "wckey": req.wckey or None,  # submitit writes --wckey=submitit unless told None
    }
    if req.system.environment.export:
        params["additional_parameters"]["export"] = req.system.environment.export
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
    """The batch script's lines before srun: where each option came from (comments), what the
    job asks for (RECORD_VAR, read by provenance), then the environment's own lines (modules,
    set-up, variables: Environment.script_lines)."""
    lines = [f"# option sources ({' > '.join(OPTION_SOURCES)}):"]
    lines += [f"#   {key} = {value}  <- {source}" for key, value, source in option_rows(req)]
    record = {"system": req.system.name, **req.system.environment.describe()}
    record.pop("vars", None)
    lines.append(f"export {RECORD_VAR}={shlex.quote(json.dumps(record, separators=(',', ':')))}")
    return lines + req.system.environment.script_lines()


def sbatch_script(plan: Plan, req: JobRequest, folder: Path | None = None) -> str:
    """The sbatch script `submit` would hand to Slurm (--dry-run); writes nothing."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(folder or plan.run_dir / LOG_DIR).absolute()
    command = " ".join([python_command(req), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    tasks = task_plans(plan, req)
    map_count = len(tasks) if req.mode == "array" else None
    return _make_sbatch_string(command=command, folder=folder, map_count=map_count, **sbatch_parameters(req))


# --- state ---------------------------------------------------------------------------------

def states_of(records: list[Submission], timeout_s: float = cluster.COMMAND_TIMEOUT_S,
              ) -> dict[str, dict[str, JobInfo]]:
    """run id -> job id -> JobInfo for many runs, with one squeue and at most one sacct call.

    squeue for jobs the controller holds, sacct for older ones (cluster.jobs; each command
    bounded by `timeout_s`); where neither knows a job (accounting off, record purged),
    submitit's result files decide, and a job that left neither a record nor a result is
    reported FAILED ('gone').
    """
    ids = [j.job_id for r in records for j in r.jobs]
    found, queue_answered = cluster.jobs(ids, timeout_s) if ids else ({}, True)
    out: dict[str, dict[str, JobInfo]] = {}
    for record in records:
        mine = out[record.run_id] = {}
        for job in record.jobs:
            info = found.get(job.job_id)
            if info is None or info.state == "UNKNOWN":
                info = state_from_files(record, job) or info
            if info is None and queue_answered:
                info = JobInfo(job.job_id, "FAILED", "GONE (not in squeue, no accounting record, no result)",
                               source="squeue")
            mine[job.job_id] = info or JobInfo(job.job_id, "UNKNOWN", "", source="none")
    return out


def check_live(req: JobRequest, timeout_s: float = cluster.COMMAND_TIMEOUT_S) -> None:
    """Before sbatch: the partition exists here and has enough nodes (ConfigError otherwise)."""
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
