"""Launchers start a run's ranks where they must run: this process, local processes, or a
scheduler (submitit: Slurm, or its local executor). Every one implements launch.base.Launcher
and reaches the runner through worker.run_plan.

A system profile's `scheduler` key picks the backend of `aifbench submit` from
systems.SCHEDULERS (the one table of scheduler backends: each entry names its launcher and the
profile table it reads; BACKENDS here is that same table); `aifbench run` picks from HERE by
--nproc. Backends are imported only when asked for, so `aifbench --help` imports no submitit or
torch. Nothing below launch/ imports launch/.

A new scheduler backend: one module in launch/ (its Launcher subclass and, when it reads a
profile table, that table's dataclass subclassing systems.SchedulerTable) and one registration,
a line in systems.SCHEDULERS or a call of systems.register(name, launcher, table).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Sequence

from aifbench.errors import one_of
from aifbench.systems import SCHEDULERS, load_spec

if TYPE_CHECKING:
    from aifbench.launch.base import JobInfo, Launcher
    from aifbench.launch.jobspec import Submission

BACKENDS = SCHEDULERS
"""the scheduler backends of `aifbench submit`: systems.SCHEDULERS itself (one table)"""

HERE: dict[str, str] = {
    "inprocess": "aifbench.launch.inprocess:InProcessLauncher",
    "processes": "aifbench.launch.local:LocalProcessesLauncher",
}
"""the foreground backends of `aifbench run`: --nproc 1 in this process, else N local processes"""


def _load(spec: str | type) -> Launcher:
    launcher: Launcher = load_spec(spec)()
    return launcher


def backend(scheduler: str) -> Launcher:
    """The launcher for a system profile's `scheduler` (ConfigError naming the allowed ones)."""
    if scheduler not in SCHEDULERS:
        raise one_of("scheduler", scheduler, sorted(SCHEDULERS))
    return _load(SCHEDULERS[scheduler].launcher)


def here(nproc: int) -> Launcher:
    """The launcher of `aifbench run --nproc N`: this process for 1, local processes otherwise
    (whose resolve refuses N < 1)."""
    return _load(HERE["inprocess" if nproc == 1 else "processes"])


def states(records: Sequence[Submission], timeout_s: float | None = None) -> dict[str, dict[str, JobInfo]]:
    """run id -> job id -> JobInfo for runs of any backends: one states() call per backend."""
    groups: dict[str, list[Submission]] = defaultdict(list)
    for record in records:
        groups[record.scheduler].append(record)
    out: dict[str, dict[str, JobInfo]] = {}
    for scheduler, group in groups.items():
        out.update(backend(scheduler).states(group, timeout_s))
    return out
