"""The `local` system profile (scheduler = "local"): submitit's local executor runs the job's
ranks as processes of this machine, no scheduler needed. Everything but what differs from Slurm
is shared (launch/submitit_base.py): one node, rendezvous on loopback, the array throttle done
here with lock files, state from submitit's controller process, cancel by SIGINT to it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from pathlib import Path
from typing import Any, Mapping, Sequence

from aifbench.errors import ConfigError
from aifbench.launch.base import JobInfo, local_device
from aifbench.launch.jobspec import LOG_DIR, JobRequest, Submission, TaskRecord, check_limit, common_fields, int_opt
from aifbench.launch.submitit_base import (SubmititLauncher, SubmititTask, python_command, state_from_files,
                                           states_by_run)
from aifbench.plan import Plan
from aifbench.systems import Queue, System

_NOT_HERE = ("partition", "account", "reservation", "qos", "constraint")


class LocalTask(SubmititTask):
    """One machine: the ranks meet on loopback, on a port derived from the job id."""

    def rendezvous(self, job_id: str) -> None:
        from aifbench.distributed import default_port

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(default_port(job_id)))


class SubmititLocalLauncher(SubmititLauncher):
    name = "local"
    label = "local"
    task_class = LocalTask

    def resolve_request(self, system: System, opts: Mapping[str, Any], env: Mapping[str, str],
                        device: str | None) -> JobRequest:
        given = sorted(k for k in _NOT_HERE if opts.get(k))
        if given:
            raise ConfigError(f"system {system.name!r} has no scheduler: {given[0]} does not apply")
        check_limit("nodes", int_opt(opts, "nodes", 1, 1), 1, f"system {system.name}")
        tasks = int_opt(opts, "tasks_per_node", 1, 1)
        check_limit("tasks_per_node", tasks, 64, f"system {system.name}")
        if device is None and system.node.device == "auto":  # the job runs here: look at this machine
            device = local_device("auto")
        return JobRequest(system=system, queue=Queue(name="local", partition=""), nodes=1, tasks_per_node=tasks,
                          gpus_per_node=0, cpus_per_task=None, time_min=int_opt(opts, "time_min", 60, 1),
                          **common_fields(opts, device or system.node.device))

    def make_executor(self, req: JobRequest, folder: Path) -> Any:
        import submitit

        executor = submitit.LocalExecutor(folder, python=python_command(req))
        executor.update_parameters(timeout_min=req.time_min, tasks_per_node=req.tasks_per_node, nodes=1)
        return executor

    def slots(self, req: JobRequest) -> int:
        """submitit's local executor starts every array task at once: throttle them here."""
        return req.array_parallelism if req.mode == "array" else 0

    def script(self, plan: Plan, req: JobRequest) -> str:
        return (f"# system {req.system.name}: no scheduler; submitit's local executor would run\n"
                f"# {req.tasks_per_node} process(es) of: {python_command(req)} -u -m submitit.core._submit "
                f"{shlex.quote(str(plan.run_dir / LOG_DIR))}\n")

    def states(self, records: Sequence[Submission], timeout_s: float | None = None,
               ) -> dict[str, dict[str, JobInfo]]:
        return states_by_run(records, _local_state)

    def signal_jobs(self, record: Submission, live: list[str]) -> None:
        for job_id in live:  # submitit's controller turns SIGINT into cancelling its tasks
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(job_id), signal.SIGINT)


def _local_state(record: Submission, job: TaskRecord) -> JobInfo:
    """submitit's local job id is the pid of its controller (`python -m submitit.local._local`)."""
    done = state_from_files(record, job)
    if done is not None:
        return done
    if _controller_alive(job.job_id, record.run_id):
        return JobInfo(job.job_id, "RUNNING", "RUNNING", source="submitit")
    return JobInfo(job.job_id, "FAILED", "process gone without a result", source="submitit")


def _controller_alive(job_id: str, run_id: str) -> bool:
    """True while pid `job_id` is still submitit's controller for `run_id` (not a reused pid)."""
    import psutil

    try:
        cmdline = psutil.Process(int(job_id)).cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, ValueError):
        return False
    except psutil.AccessDenied:  # cannot tell: assume it is ours
        return True
    return "submitit.local._local" in cmdline and any(run_id in arg for arg in cmdline)
