"""What the submitit backends share (Slurm: launch/slurm.py; submitit's local executor:
launch/submitit_local.py): the pickled task, the submission record, cancel and collect.

Layout under the run directory: submission.json (jobspec.Submission: job ids, parts, case
subsets), plan.json, and slurm/ — submitit's folder with the pickled task, the generated
script and per-task logs `<jobid>_<task>_log.{out,err}` (arrays: `<arrayid>_<index>_...`).
The results directory must be on a file system every rank shares.

Modes (jobspec.MODES): single = one job whose ranks all run every case (part 'main'); array =
one job array, task i runs its case subset with all its ranks (part 'a<i>'); packed = one
allocation whose tasks each run every world-th case alone (part 'p<task>').
Requeue: the task is checkpointable; on preemption or timeout submitit requeues it, and the
runner resumes from the shards it already wrote (cases kept, never measured twice).

A backend overrides the hooks: resolve_request, make_executor, script, states, signal_jobs,
and where it needs them task_class, slots, check_submittable.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from abc import abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Sequence

from aifbench.errors import ConfigError, LaunchError
from aifbench.launch import jobspec
from aifbench.launch.base import CaseDone, JobInfo, Launcher
from aifbench.launch.jobspec import LOG_DIR, JobRequest, Submission, TaskRecord, collected_shard
from aifbench.plan import Plan

if TYPE_CHECKING:
    from aifbench.launch.collect import CollectReport
    from aifbench.systems import System

_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --- what runs inside the job ---------------------------------------------------------------

class SubmititTask:
    """The callable submitit pickles: runs this task's share of the plan (one per rank).

    `slots` > 0: at most that many array tasks measure at once (each waits for a free lock
    file first); only a backend whose executor starts every array task at once sets it.
    """

    def __init__(self, plan_json: str, packed: bool = False, slots: int = 0):
        self.plan_json = plan_json
        self.packed = packed
        self.slots = slots

    def rendezvous(self, job_id: str) -> None:
        """Set MASTER_ADDR/PORT where the scheduler does not (hook; Slurm: distributed reads them)."""

    def __call__(self) -> dict[str, Any]:
        import submitit

        job_env = submitit.JobEnvironment()
        rank, world, local = job_env.global_rank, job_env.num_tasks, job_env.local_rank
        for name in _RANK_VARS:  # never trust values inherited from the submitting shell
            os.environ.pop(name, None)
        self.rendezvous(str(job_env.job_id))
        if "OMP_NUM_THREADS" not in os.environ and os.environ.get("SLURM_CPUS_PER_TASK"):
            os.environ["OMP_NUM_THREADS"] = os.environ["SLURM_CPUS_PER_TASK"]
        plan = Plan.from_json(self.plan_json)
        # failed rows that `collect` wrote for this task's missing cases are stale once it runs
        # again (requeue): it reports those cases itself now, or collect writes them anew
        stale = collected_shard(plan.run_dir, 0 if self.packed else rank, f"p{rank}" if self.packed else plan.part)
        stale.unlink(missing_ok=True)
        with _slot(plan.run_dir / LOG_DIR, self.slots):
            part, summary = self._run(plan, rank, world, local)
        stale.unlink(missing_ok=True)  # a collect that raced with the start may have rewritten it
        from aifbench.results.node import merge_after_task

        merge_after_task(plan.run_dir, 0 if self.packed else rank, part)  # the node's last task merges its shards
        return {"rank": rank, "part": part, "failed": summary.failed, "statuses": summary.statuses}

    def _run(self, plan: Plan, rank: int, world: int, local: int) -> tuple[str, Any]:
        from aifbench.distributed import RankInfo
        from aifbench.worker import run_plan

        if self.packed:
            mine = tuple(c.index for c in plan.cases)[rank::world]
            plan = plan.replace(case_indices=mine, part=f"p{rank}")
            return plan.part, run_plan(plan, RankInfo(rank=0, world_size=1, local_rank=local))
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
        return plan.part, run_plan(plan)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this on preemption/timeout: requeue the same task; the runner resumes."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(type(self)(self.plan_json, self.packed, self.slots))


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


# --- the shared launcher --------------------------------------------------------------------

def python_command(req: JobRequest) -> str:
    return req.system.interpreter()


def task_plans(plan: Plan, req: JobRequest) -> list[tuple[str, Plan]]:
    """(part, plan) per job or array task."""
    if req.mode != "array":
        return [("p" if req.mode == "packed" else "main", plan)]
    indices = [c.index for c in plan.cases]
    step = req.cases_per_task
    return [(f"a{i}", plan.replace(case_indices=tuple(indices[j:j + step]), part=f"a{i}"))
            for i, j in enumerate(range(0, len(indices), step))]


class SubmititLauncher(Launcher):
    """A backend that hands SubmititTask to a submitit executor; returns at once."""

    task_class: ClassVar[type[SubmititTask]] = SubmititTask

    def resolve(self, system: System, options: Mapping[str, Any], env: Mapping[str, str] | None = None,
                device: str | None = None) -> JobRequest:
        return self.resolve_request(system, jobspec.given_options(options), os.environ if env is None else env,
                                    device)

    @abstractmethod
    def resolve_request(self, system: System, opts: Mapping[str, Any], env: Mapping[str, str],
                        device: str | None) -> JobRequest:
        """resolve() after the option names are checked and None values dropped."""

    @abstractmethod
    def make_executor(self, req: JobRequest, folder: Path) -> Any:
        """The configured submitit executor writing under `folder`."""

    @abstractmethod
    def signal_jobs(self, record: Submission, live: list[str]) -> None:
        """Ask the scheduler to stop the jobs `live` (not yet ended) of `record`."""

    def slots(self, req: JobRequest) -> int:
        """SubmititTask.slots for this request (0: the scheduler throttles arrays itself)."""
        return 0

    def check_submittable(self, req: JobRequest) -> None:
        """Refuse (ConfigError) what the scheduler here would reject; called before anything is written."""

    def submit(self, plan: Plan, req: JobRequest, on_case: CaseDone | None = None) -> Submission:
        """Submit `plan` as `req` says. A rejected submission leaves nothing behind (ConfigError)."""
        self.check_submittable(req)
        run_dir = plan.run_dir
        if run_dir.exists():
            raise ConfigError(f"run directory {run_dir} already exists")
        folder = (run_dir / LOG_DIR).absolute()
        tasks = task_plans(plan, req)
        try:
            plan.save(run_dir / "plan.json")
            jobs = self._submit_tasks(req, folder, tasks)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        record = Submission(run_id=plan.run_id, system=req.system.name, partition=req.queue.name,
                            scheduler=self.name, mode=req.mode, folder=str(folder),
                            results_root=str(plan.results_root),
                            jobs=[TaskRecord(job_id=str(job.job_id), part=part, ranks=req.world_size,
                                             case_indices=[c.index for c in p.cases])
                                  for job, (part, p) in zip(jobs, tasks)],
                            submitted_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            nodes=req.nodes, tasks_per_node=req.tasks_per_node,
                            options=[list(row) for row in jobspec.option_rows(req)])
        record.save()
        return record

    def _submit_tasks(self, req: JobRequest, folder: Path, tasks: list[tuple[str, Plan]]) -> list[Any]:
        from submitit.core.utils import FailedJobError
        from submitit.helpers import clean_env

        executor = self.make_executor(req, folder)
        packed, slots = req.mode == "packed", self.slots(req)
        captured = io.StringIO()  # submitit prints sbatch's stderr itself; we report it once
        conf = os.environ.get("SLURM_CONF")  # which cluster to submit to: the user's, not a job's variable
        try:  # clean_env: submitting from inside a Slurm job must not inherit its SLURM_* variables
            with contextlib.redirect_stderr(captured), clean_env():
                if conf:
                    os.environ["SLURM_CONF"] = conf
                if len(tasks) == 1:
                    return [executor.submit(self.task_class(tasks[0][1].to_json(), packed, slots))]
                with executor.batch():
                    jobs = [executor.submit(self.task_class(p.to_json(), packed, slots)) for _, p in tasks]
                return jobs
        except FailedJobError as exc:
            message = str(exc).strip() or captured.getvalue().strip()
            raise ConfigError(f"Slurm rejected the job: {message.splitlines()[-1] if message else 'no message'}") from None
        except (OSError, ValueError) as exc:
            raise LaunchError(f"submission failed: {exc}") from None

    def cancel(self, record: Submission) -> list[str]:
        current = self.states([record])[record.run_id]
        live = [i for i, info in current.items() if not info.final]
        if live:
            self.signal_jobs(record, live)
        return live

    def collect(self, record: Submission) -> CollectReport:
        from aifbench.launch.collect import collect

        return collect(record, self.states([record])[record.run_id])


def state_from_files(record: Submission, job: TaskRecord) -> JobInfo | None:
    """COMPLETED/FAILED from submitit's result pickles once every task of `job` left one, else None."""
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


def states_by_run(records: Sequence[Submission], one) -> dict[str, dict[str, JobInfo]]:
    """run id -> job id -> one(record, job)."""
    return {r.run_id: {j.job_id: one(r, j) for j in r.jobs} for r in records}
