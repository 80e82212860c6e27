"""The launcher interface: what every way of starting a run's ranks must answer.

    launcher = launch.backend(system.scheduler)      # or launch.here(nproc) for `aifbench run`
    req = launcher.resolve(system, options)          # profile + request -> JobRequest (ConfigError: exit 2)
    print(launcher.script(plan, req))                # what --dry-run prints; writes nothing
    record = launcher.submit(plan, req)              # -> Submission (scheduler: returns at once;
                                                     #    foreground: returns when the run has ended)
    launcher.states([record])                        # run id -> job id -> JobInfo, bounded in time
    launcher.cancel(record)                          # job ids signalled
    launcher.collect(record)                         # CollectReport: missing cases become failed rows

Every backend reaches the runner through `worker.run_plan`, nowhere else. An operation that
makes no sense for a backend raises NotSupported (one line, exit 2) instead of pretending.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence

from aifbench.errors import ConfigError, UnsupportedHardwareError

if TYPE_CHECKING:  # annotations only: `aifbench --help` imports none of these
    from aifbench.launch.collect import CollectReport
    from aifbench.launch.jobspec import JobRequest, Submission
    from aifbench.plan import Plan
    from aifbench.systems import System

STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "PREEMPTED",
          "NODE_FAIL", "OUT_OF_MEMORY", "REQUEUED", "SUSPENDED", "UNKNOWN")
"""the states `aifbench jobs` reports, whatever the scheduler: each backend maps its own onto
these (Slurm's: launch/cluster.py normalize_state)"""
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "PREEMPTED", "NODE_FAIL",
                          "OUT_OF_MEMORY"})
"""states a job does not leave: `submit --wait` stops and `collect` judges once every job is in one"""


@dataclass(frozen=True, slots=True)
class JobInfo:
    """The state of one job (or array task) of a run, as its backend's states() reports it."""

    job_id: str
    """scheduler job id: '123', or '123_4' for array task 4"""
    state: str
    """normalised: one of STATES"""
    raw_state: str
    """the scheduler's own word for it"""
    name: str = ""
    partition: str = ""
    nodes: str = ""
    reason: str = ""
    exit_code: str = ""
    """'0:0' = exit code : signal (Slurm's sacct); '' when unknown"""
    elapsed: str = ""
    source: str = ""
    """where the state came from: squeue | sacct | pyslurm | submitit | process | a backend's own"""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


CaseDone = Callable[[str, str], None]
"""progress callback of a foreground run: (case id, what happened to it) as each case ends"""


def local_device(requested: str) -> str:
    """auto | cpu | cuda -> the device kind of ranks on this machine (UnsupportedHardwareError)."""
    import torch

    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise UnsupportedHardwareError("--device cuda: no CUDA GPU is visible here "
                                       "(torch.cuda.is_available() is False); use --device cpu")
    if requested == "auto":
        return "cuda" if has_cuda else "cpu"
    return requested


class NotSupported(ConfigError):
    """An operation this backend does not have (e.g. cancel of a run in this process)."""


class Launcher(ABC):
    """One way to start a plan's ranks. Subclasses: launch/inprocess.py, launch/local.py,
    launch/submitit_base.py (-> launch/slurm.py, launch/submitit_local.py)."""

    name: ClassVar[str]
    """key in systems.SCHEDULERS (= launch.BACKENDS) or launch.HERE; also Submission.scheduler"""
    label: ClassVar[str]
    """what the runs table records as `launcher`"""
    foreground: ClassVar[bool] = False
    """True when submit returns only after the run has ended (no job to follow, cancel or collect)"""

    @abstractmethod
    def resolve(self, system: System, options: Mapping[str, Any], env: Mapping[str, str] | None = None,
                device: str | None = None) -> JobRequest:
        """Merge `options` (None = not given) with the profile and validate (ConfigError).
        `device` is the torch device kind already chosen, if any."""

    @abstractmethod
    def script(self, plan: Plan, req: JobRequest) -> str:
        """What `submit` would start, as text (--dry-run); writes nothing."""

    @abstractmethod
    def submit(self, plan: Plan, req: JobRequest, on_case: CaseDone | None = None) -> Submission:
        """Start the plan's ranks; a rejected request leaves nothing behind. `on_case` is called
        as cases end where the backend can see that (foreground backends)."""

    @abstractmethod
    def states(self, records: Sequence[Submission], timeout_s: float | None = None,
               ) -> dict[str, dict[str, JobInfo]]:
        """run id -> job id -> JobInfo for `records` (all of this backend), within `timeout_s`."""

    def notes(self, req: JobRequest) -> list[str]:
        """What the operator should know about `req` before submitting (printed with --dry-run)."""
        return []

    def cancel(self, record: Submission) -> list[str]:
        """Stop every job of the run that has not ended; returns the job ids signalled."""
        raise NotSupported(f"{self.name}: runs in the foreground; stop it with Ctrl-C (SIGINT) or SIGTERM")

    def collect(self, record: Submission) -> CollectReport:
        """Check what every task wrote; missing cases of ended jobs become status=failed rows."""
        raise NotSupported(f"{self.name}: a foreground run's results are complete when it returns; "
                           "nothing to collect")


class ForegroundLauncher(Launcher):
    """A backend whose submit runs the plan here and returns when it has ended (`aifbench run`):
    its states are those of the runs this object ran; there is no job to cancel or collect."""

    foreground = True

    def __init__(self) -> None:
        self._ended: dict[str, dict[str, JobInfo]] = {}

    def resolve(self, system: System, options: Mapping[str, Any], env: Mapping[str, str] | None = None,
                device: str | None = None) -> JobRequest:
        """`options`: tasks_per_node (--nproc); `device`: cpu | cuda, already resolved."""
        from aifbench.launch.jobspec import JobRequest, int_opt
        from aifbench.systems import Queue

        device = device or "cpu"
        nproc = options.get("tasks_per_node", 1)
        if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
            raise ConfigError(f"--nproc must be >= 1, got {nproc}")
        if device == "cuda":
            import torch

            count = torch.cuda.device_count()
            if nproc > count:
                raise ConfigError(f"--nproc {nproc} is more than the {count} visible GPU(s); allowed: 1..{count}")
        elif nproc > 64:
            raise ConfigError(f"--nproc {nproc} on CPU: allowed 1..64")
        return JobRequest(system=system, queue=Queue(name="local", partition=""), nodes=1, tasks_per_node=nproc,
                          gpus_per_node=0, cpus_per_task=None, device=device,
                          time_min=int_opt(options, "time_min", 0, 0))

    def ended(self, plan: Plan, req: JobRequest, exit_codes: Sequence[int], job_id: str) -> Submission:
        """The record of a run that has ended with `exit_codes` (one per rank); not saved."""
        from datetime import datetime, timezone

        from aifbench.launch.jobspec import Submission, TaskRecord

        ok = all(c == 0 for c in exit_codes)
        self._ended[plan.run_id] = {job_id: JobInfo(
            job_id, "COMPLETED" if ok else "FAILED", "exit " + ",".join(map(str, exit_codes)),
            exit_code=",".join(map(str, exit_codes)), source="process")}
        return Submission(run_id=plan.run_id, system=req.system.name, partition=req.queue.name, scheduler=self.name,
                          mode="single", folder=str(plan.run_dir), results_root=str(plan.results_root),
                          jobs=[TaskRecord(job_id=job_id, part=plan.part, ranks=req.world_size,
                                           case_indices=[c.index for c in plan.cases])],
                          submitted_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          tasks_per_node=req.tasks_per_node)

    def states(self, records: Sequence[Submission], timeout_s: float | None = None,
               ) -> dict[str, dict[str, JobInfo]]:
        """The states the runs ended in; a run this object did not run is NotSupported."""
        for record in records:
            if record.run_id not in self._ended:
                raise NotSupported(f"{self.name}: run {record.run_id} did not run in this process, and a "
                                   "foreground run leaves no job to ask about")
        return {r.run_id: self._ended[r.run_id] for r in records}
