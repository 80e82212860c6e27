"""System profiles: where a suite runs — one TOML per AI-factory system (this folder).

    from aifbench.systems import list_systems, load_system
    list_systems()                    -> ['alps-gh200', 'jupiter-booster', ..., 'local', 'local-slurm']
    sys = load_system("jupiter-booster")
    sys.node.gpu_sku                  -> 'gh200-96gb' (a key of aifbench/hardware/catalog.toml)
    sys.queue("booster").max_nodes    -> the partition's node limit, or None when unknown

A profile's `scheduler` names a backend of SCHEDULERS (the one table of scheduler backends:
each entry names its launcher and the dataclass of its profile table, a SchedulerTable
subclass); the profile's [NAME] table of that backend is parsed by it ([slurm]: SlurmDefaults)
and becomes System.tables[NAME]; System.queue reads the partitions of whichever backend.

A profile holds public facts only: scheduler defaults, node hardware, environment set-up and
NCCL variables, each with its source and a list of what could not be confirmed. Private
values (account, reservation) come from the user: a flag or AIFBENCH_ACCOUNT /
AIFBENCH_RESERVATION, never a profile. Every string that reaches an sbatch line is checked
against SAFE_VALUE here, so a profile cannot smuggle shell syntax into a job script.
File format: see the header of local-slurm.toml (the smallest complete example).
"""

from __future__ import annotations

import importlib
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aifbench.files import read_toml
from aifbench.errors import ConfigError, one_of
from aifbench.systems.environment import Environment, parse_environment
from aifbench.typed_toml import build, nonempty, spec

SYSTEMS_DIR = Path(__file__).resolve().parent
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+@,=/-]*$")
"""partition, QoS, account, constraint, gres: letters, digits and _ . : + @ , = / - only"""
DEVICES = ("cuda", "cpu", "auto")
GPU_REQUESTS = ("gpus_per_node", "gres", "none")


def check_safe(what: str, value: str) -> str:
    """`value` unchanged when it is a plain Slurm name, else a ConfigError (exit 2)."""
    if not SAFE_VALUE.match(value):
        raise ConfigError(f"{what} {value!r} refused: only letters, digits and _ . : + @ , = / - "
                          "are allowed (no spaces or shell characters)")
    return value


def _safe(loc: str, value: str) -> str:
    """'' or a plain Slurm name (check_safe)."""
    return check_safe(loc, value) if value else value


def _python(loc: str, value: Any) -> str:
    """The compute nodes' interpreter command, re-quoted word by word: shell syntax stays literal."""
    try:
        words = shlex.split(str(value))
    except ValueError as exc:
        raise ConfigError(f"{loc} {value!r}: {exc}") from None
    return shlex.join(words)


def _check_sku(loc: str, sku: str) -> str:
    from aifbench.hardware import catalog

    ids = catalog.load().ids()
    if sku not in ids:
        raise ConfigError(f"{loc}: {sku!r} is not a hardware catalog id; allowed: {', '.join(ids)}")
    return sku


def _safe_each(loc: str, values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(check_safe(f"{loc} entry", v) for v in values)


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    """Hardware of one compute node."""

    arch: str
    gpu_sku: str = spec(check=_check_sku)
    """hardware-catalog id ('h100-sxm5-80gb', 'mi250x', 'cpu' for none)"""
    gpus: int = spec(min=0)
    """torch devices per node (LUMI-G: 8 GCDs on 4 MI250X modules)"""
    device: str = spec(choices=DEVICES)
    """torch device kind of each rank: cuda (also ROCm builds), cpu, or auto (local only)"""
    cpu: str = ""
    cpu_cores: int | None = spec(None, min=0)
    memory_gb: float | None = spec(None, min=0)
    """host memory per node, GB = 1e9 B"""
    network: str = ""
    count: int | None = spec(None, min=0)
    """nodes in the system (or partition) according to the site"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Queue:
    """One schedulable target: a Slurm partition and/or QoS with its limits."""

    name: str
    partition: str = spec(check=_safe)
    """--partition value; '' when the site routes by QoS alone (a profile's default: the name)"""
    qos: str = spec("", check=_safe)
    max_nodes: int | None = spec(None, min=0)
    max_time_min: int | None = spec(None, min=0)
    note: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class SchedulerTable:
    """What every scheduler backend's profile table [NAME] holds (a backend's own table subclasses
    it): its queues, one [NAME.partitions.QUEUE] table each, and the default one
    (`default_partition`, else the first). System.queue reads these, whatever the backend."""

    default_queue: str = ""
    queues: tuple[Queue, ...] = ()

    def summary(self) -> str:
        """One line on the table's own settings for `aifbench systems show` ('' = nothing to say)."""
        return ""


@dataclass(frozen=True, kw_only=True, slots=True)
class SlurmDefaults(SchedulerTable):
    """The [slurm] table of a profile (the Slurm backend's, launch/slurm.py)."""

    gpu_request: str = spec("gpus_per_node", choices=GPU_REQUESTS)
    """how GPUs are asked for: --gpus-per-node=N, --gres=gpu:N, or not at all"""
    gpus_per_node: int = spec(0, min=0)
    """GPUs requested per node; one task per GPU unless tasks_per_node says otherwise"""
    tasks_per_node: int | None = spec(None, min=0)
    cpus_per_task: int | None = spec(None, min=0)
    time_min: int = spec(30, min=0)
    """default time limit of a job, minutes"""
    constraint: str = spec("", check=_safe)
    exclusive: bool = False
    srun_args: tuple[str, ...] = spec((), check=_safe_each)
    signal_delay_s: int = spec(90, min=0)
    """USR2 this many seconds before the time limit: submitit checkpoints and requeues"""
    wckey: str = spec("", check=_safe)
    """--wckey for sites that enforce wckeys; '' = none (the default: no --wckey line)"""
    account_required: bool = True
    """jobs need a Slurm account (--account or AIFBENCH_ACCOUNT); every production site does"""

    @property
    def default_tasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)

    def summary(self) -> str:
        return (f"GPUs by {self.gpu_request} ({self.gpus_per_node}/node), {self.default_tasks_per_node} "
                f"task(s)/node, cpus/task {self.cpus_per_task}, default time {self.time_min} min, "
                f"exclusive {self.exclusive}")


@dataclass(frozen=True, slots=True)
class Scheduler:
    """One backend of `aifbench submit`: the launcher that runs it and the profile table it reads."""

    launcher: str | type
    """its aifbench.launch.base.Launcher: the class, or 'module:Class' (imported only when asked for)"""
    table: type[SchedulerTable] | str | None = None
    """the dataclass of its profile table [NAME] (NAME: its key in SCHEDULERS), or 'module:Class',
    a subclass of SchedulerTable; None when the backend reads no table"""

    def table_class(self) -> type[SchedulerTable]:
        """The table's dataclass (imported now when named by 'module:Class')."""
        if self.table is None:
            raise ConfigError("this scheduler backend reads no profile table")
        cls: type[SchedulerTable] = load_spec(self.table)
        return cls


SCHEDULERS: dict[str, Scheduler] = {
    "slurm": Scheduler("aifbench.launch.slurm:SlurmLauncher", SlurmDefaults),
    "local": Scheduler("aifbench.launch.submitit_local:SubmititLocalLauncher"),
}
"""a profile's `scheduler` -> its backend: the one table of scheduler backends (aifbench.launch
reads it too; systems sits below launch, so the launcher is named, not imported)"""


def register(name: str, launcher: str | type, table: type[SchedulerTable] | str | None = None) -> None:
    """Add (or replace) the scheduler backend `name`: profiles may then say scheduler = "NAME" and
    carry a [NAME] table of `table`'s keys; `aifbench submit/jobs/cancel/collect` use `launcher`."""
    check_safe("scheduler name", name)
    SCHEDULERS[name] = Scheduler(launcher, table)


def load_spec(spec: str | type) -> Any:
    """'module:Name' -> that object (imported now); a class is returned as it is."""
    if not isinstance(spec, str):
        return spec
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _scheduler(loc: str, value: str) -> str:
    """A registered scheduler backend's name (checked when read: backends may be registered late)."""
    if value not in SCHEDULERS:
        raise ConfigError(f"{loc}: {value!r} not allowed; allowed: {', '.join(SCHEDULERS)}")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class System:
    name: str = spec(check=nonempty)
    site: str = spec(check=nonempty)
    description: str = ""
    scheduler: str = spec(check=_scheduler)
    """key of SCHEDULERS: the backend of `aifbench submit`"""
    node: Node
    tables: Mapping[str, SchedulerTable] = field(default_factory=dict)
    """backend name -> its parsed profile table ([slurm], ...): every registered backend's table
    the profile has"""
    environment: Environment = field(default_factory=Environment)
    """software environment of a job: modules, uenv/container, venv, variables (systems/environment.py)"""
    python: str = spec("", check=_python)
    """interpreter on the compute nodes when [environment] names none; '' = the one running aifbench"""
    sources: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()
    acceptance: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def setup(self) -> tuple[str, ...]:
        """the environment's own shell lines (modules and variables: environment.script_lines())"""
        return self.environment.setup

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        """variables the job script exports (values shell-quoted when written)"""
        return tuple(self.environment.vars.items())

    def interpreter(self) -> str:
        """The command that starts Python inside the environment (venv, container); a profile that
        names none (local, local-slurm) runs the interpreter running aifbench now."""
        return self.environment.python_command(self.python or shlex.quote(sys.executable))

    @property
    def table(self) -> SchedulerTable | None:
        """The profile table of this system's own scheduler backend (None: it reads none)."""
        return self.tables.get(self.scheduler)

    @property
    def slurm(self) -> SlurmDefaults | None:
        """The [slurm] table: kept until release 0.2.0 for callers of the old field; use
        `table` (this system's backend) or `tables["slurm"]`."""
        table = self.tables.get("slurm")
        return table if isinstance(table, SlurmDefaults) else None

    @property
    def queue_names(self) -> list[str]:
        return [q.name for q in self.table.queues] if self.table else []

    def queue(self, name: str | None = None) -> Queue:
        """The named queue (partition) of the backend's table, or its default; unknown ->
        ConfigError listing them."""
        table = self.table
        if table is None or not table.queues:
            raise ConfigError(f"system {self.name!r} has no scheduler partitions (scheduler: {self.scheduler})")
        name = name or table.default_queue
        for q in table.queues:
            if q.name == name:
                return q
        raise one_of(f"partition of {self.name}", name, self.queue_names)


# --- loading ----------------------------------------------------------------------------------

def list_systems() -> list[str]:
    return sorted(p.stem for p in SYSTEMS_DIR.glob("*.toml"))


def load_system(name_or_path: str) -> System:
    """A shipped profile by name, or a profile file by path (same format)."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SYSTEMS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise one_of("system", name_or_path, list_systems())
    elif not path.is_file():
        raise ConfigError(f"system profile not found: {path}")
    return parse_system(read_toml(path), str(path))


def parse_system(raw: Mapping[str, Any], where: str) -> System:
    """Validate a profile dictionary (as read from TOML) into a System (aifbench.typed_toml)."""
    if isinstance(raw, Mapping) and isinstance(raw.get("scheduler"), str):  # before its table is an unknown key
        _scheduler(f"{where}: scheduler" if where else "scheduler", raw["scheduler"])
    tabled = [name for name, s in SCHEDULERS.items() if s.table is not None]
    # a table's class is imported only when a profile has that table
    tables = {name: _table(name, SCHEDULERS[name].table_class(), raw[name], where) for name in tabled
              if isinstance(raw, Mapping) and name in raw}
    envt = parse_environment(raw.get("environment", {}), where) if isinstance(raw, Mapping) else Environment()
    system = build(System, raw, where, skip=(*tabled, "environment"),
                   given={"tables": tables, "path": where, "environment": envt})
    if system.scheduler in tabled and system.table is None:
        raise ConfigError(f"{where}: scheduler {system.scheduler!r} needs a [{system.scheduler}] table")
    return system


def _table(backend: str, cls: type[SchedulerTable], raw: Any, where: str) -> SchedulerTable:
    """A backend's profile table [BACKEND]: its partitions (one [BACKEND.partitions.NAME] each)
    become Queues, the rest is `cls`'s keys."""
    parts = raw.get("partitions", {}) if isinstance(raw, Mapping) else {}
    if not isinstance(parts, Mapping):
        raise ConfigError(f"{where}: {backend}.partitions must be a table of [{backend}.partitions.NAME] tables")
    queues = []
    for name, q in parts.items():
        check_safe(f"{where}: partition name", name)
        default = {} if isinstance(q, Mapping) and "partition" in q else {"partition": name}
        queues.append(build(Queue, q, where, f"{backend}.partitions.{name}", given={"name": name, **default}))
    if isinstance(raw, Mapping) and not queues:
        raise ConfigError(f"{where}: [{backend}.partitions.NAME] needs at least one entry")
    names = [q.name for q in queues]
    default = raw.get("default_partition", names[0]) if queues else ""
    if queues and default not in names:
        raise one_of(f"default_partition in {where}", default, names)
    table: SchedulerTable = build(cls, raw, where, backend, skip=("partitions", "default_partition"),
                                  given={"default_queue": default, "queues": tuple(queues)})
    return table

