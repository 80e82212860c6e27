"""Job requests: suite x system profile x nodes x time, from a job file, flags and a profile;
and the record a submission leaves in its run directory (Submission, submission.json).

A job file (jobs/<name>.toml; format documented in each file's header):

    [job]
    suite = "acceptance"          # shipped suite name or path to a suite TOML (required)
    system = "jupiter-booster"    # profile in aifbench/systems (required)
    partition = "booster"         # a partition of that profile (default: the profile's)
    nodes = 1
    tasks_per_node = 4            # default: one per GPU of the profile
    time_min = 60                 # Slurm time limit, minutes (default: the profile's)
    mode = "single"               # single | array | packed (see MODES)
    array_parallelism = 8         # array mode: tasks running at once
    cases_per_task = 1            # array and packed modes: cases per task
    name = "aifbench-acceptance"  # Slurm job name
    set = ["timing.repeats=20"]   # suite overrides, as --set
    only = ["gemm"]               # as --only
    qos = ""                      # overrides the partition's QoS
    constraint = ""
    exclusive = true
    wckey = ""                    # --wckey only where a site asks for one (default: none)

    [environment]                 # optional: replaces the profile's keys it names
    venv = "/path/to/venv"        # (systems/environment.py: modules, uenv, containers, vars, ...)

Precedence (OPTION_SOURCES): command line > job file > suite ([suite] time_min) > system profile.
Account and reservation are private: --account / AIFBENCH_ACCOUNT, --reservation /
AIFBENCH_RESERVATION, never a file.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aifbench.atomic import atomic_write_text
from aifbench.files import data_dir, read_toml
from aifbench.errors import ConfigError, one_of
from aifbench.systems import Queue, System, check_safe, load_system
from aifbench.typed_toml import build, field_names, nonempty, spec

MODES = {
    "single": "one job: every rank runs every case (multi-rank cases use all ranks together)",
    "array": "one Slurm job array: each array task runs cases_per_task cases on its own allocation",
    "packed": "one allocation: each task runs its own cases alone (single-device sweeps)",
}
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFile:
    """The [job] table of a job file (typed_toml): types here, limits when the request is resolved."""

    suite: str = spec(check=nonempty)
    system: str = spec(check=nonempty)
    partition: str | None = None
    nodes: int | None = None
    tasks_per_node: int | None = None
    time_min: int | None = None
    mode: str | None = spec(None, choices=tuple(MODES))
    array_parallelism: int | None = None
    cases_per_task: int | None = None
    name: str | None = None
    set: list[str] | None = None
    only: list[str] | None = None
    qos: str | None = None
    constraint: str | None = None
    exclusive: bool | None = None
    wckey: str | None = None


OPTION_SOURCES = ("command line", "job file", "suite", "profile")
"""where a job option comes from, highest first: the first source that gives a value wins"""
SHOWN_OPTIONS = ("partition", "qos", "nodes", "tasks_per_node", "time_min", "constraint", "exclusive", "wckey",
                 "account", "reservation", "mode", "name")
"""options whose value and source `submit --dry-run` shows (then the environment's keys)"""

_JOB_KEYS = set(field_names(JobFile))
SUBMISSION_FILE = "submission.json"
LOG_DIR = "slurm"
"""submitit's folder inside the run directory: pickled tasks, sbatch script, per-task logs"""
_PRIVATE = {"account": "--account or AIFBENCH_ACCOUNT", "reservation": "--reservation or AIFBENCH_RESERVATION"}


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRequest:
    """Everything a launcher needs, validated by its backend's resolve; units in names."""

    system: System
    queue: Queue
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    """GPUs requested per node (0: none requested)"""
    cpus_per_task: int | None
    time_min: int
    account: str = ""
    reservation: str = ""
    qos: str = ""
    constraint: str = ""
    exclusive: bool = False
    mode: str = "single"
    array_parallelism: int = 16
    cases_per_task: int = 1
    job_name: str = "aifbench"
    device: str = "cpu"
    """torch device kind of the ranks: cuda | cpu"""
    wckey: str = ""
    """--wckey value; '' = no --wckey line (sites that enforce wckeys reject unknown ones)"""
    sources: Mapping[str, str] = field(default_factory=dict)
    """option -> where its value came from (OPTION_SOURCES, or the environment variable)"""

    @property
    def world_size(self) -> int:
        """ranks of one job (single, array task); packed jobs run this many independent tasks"""
        return self.nodes * self.tasks_per_node

    def jobs_for(self, cases: int) -> int:
        """Jobs (array tasks) this request makes of `cases` cases: one unless mode is array."""
        return -(-cases // self.cases_per_task) if self.mode == "array" else 1


# --- job files ------------------------------------------------------------------------------

def job_names() -> list[str]:
    d = data_dir("jobs")
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def find_job(name_or_path: str) -> dict[str, Any] | None:
    """The checked [job] table of a job file given by path (a TOML with a [job] table) or shipped
    name; None if it is not one. The file is parsed once."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        raw = read_toml(path)
        return _check_job(path, raw) if "job" in raw else None
    candidate = data_dir("jobs") / f"{name_or_path}.toml"
    return load_job_file(candidate) if candidate.is_file() else None


def load_job_file(path: Path) -> dict[str, Any]:
    """The [job] table, checked for unknown keys, private values and types."""
    return _check_job(path, read_toml(path))


def _check_job(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """The [job] table's keys, plus 'environment' (the checked raw [environment] table) when given."""
    from aifbench.systems.environment import parse_environment

    extra = set(raw) - {"job", "environment"}
    if extra:
        raise one_of(f"top-level table in {path.name}", sorted(extra)[0], ["job", "environment"])
    job = raw.get("job", {})
    for key, where in _PRIVATE.items():
        if isinstance(job, Mapping) and key in job:
            raise ConfigError(f"{path.name}: '{key}' is private and never read from a file; give it with {where}")
    checked = build(JobFile, job, path.name, "job")
    out = {key: getattr(checked, key) for key in job}
    if "environment" in raw:
        parse_environment(raw["environment"], path.name)  # refused here, before anything else
        out["environment"] = dict(raw["environment"])
    return out


def layered(*layers: tuple[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(options, source of each) from (source, values) layers given highest first (OPTION_SOURCES
    order); a value of None is not given. The profile's defaults fill the rest at resolve time."""
    options: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            if value is not None and key not in options:
                options[key], sources[key] = value, source
    return options, sources


def option_rows(req: JobRequest) -> list[tuple[str, str, str]]:
    """(option, value, source) of each SHOWN_OPTIONS key and of the environment's keys."""
    values = {"partition": req.queue.partition or f"(none: {req.queue.name} routes by QoS)", "qos": req.qos,
              "nodes": req.nodes, "tasks_per_node": req.tasks_per_node, "time_min": req.time_min,
              "constraint": req.constraint, "exclusive": req.exclusive, "wckey": req.wckey, "account": req.account,
              "reservation": req.reservation, "mode": req.mode, "name": req.job_name}
    rows = [(key, _shown(values[key]), req.sources.get(key, "profile" if values[key] not in ("", None) else "-"))
            for key in SHOWN_OPTIONS]
    described = req.system.environment.describe()
    for key, value in described.items():
        rows.append((f"environment.{key}", _shown(value), req.sources.get(f"environment.{key}", "profile")))
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={_shown(v)}" for k, v in value.items())
    if isinstance(value, str):  # shown in a comment line of the script: never a second line
        value = value.replace("\n", "\\n").replace("\r", "\\r")
    return "(none)" if value in ("", None) else str(value).lower() if isinstance(value, bool) else str(value)


# --- resolving a request --------------------------------------------------------------------

def resolve(system: str | System, options: Mapping[str, Any], env: Mapping[str, str] | None = None,
            device: str | None = None) -> JobRequest:
    """The request of `options` (flags over job file; None = not given) on `system`, resolved
    by the backend its profile's scheduler names (systems.SCHEDULERS); ConfigError on bad input.

    `device` is the resolved torch device kind for profiles whose node.device is 'auto'.
    """
    from aifbench.launch import backend

    sysp = load_system(system) if isinstance(system, str) else system
    return backend(sysp.scheduler).resolve(sysp, options, env, device)


def given_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` without the ones not given (None), refusing unknown names."""
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = set(opts) - (_JOB_KEYS | set(_PRIVATE) | {"suite", "system"})
    if unknown:
        raise one_of("job option", sorted(unknown)[0], sorted(_JOB_KEYS | set(_PRIVATE)))
    return opts


def common_fields(opts: Mapping[str, Any], device: str) -> dict[str, Any]:
    mode = opts.get("mode", "single")
    if mode not in MODES:
        raise one_of("mode", mode, MODES)
    name = opts.get("name", "aifbench")
    if not isinstance(name, str) or not JOB_NAME.match(name):
        raise ConfigError(f"job name {name!r} refused: 1-64 letters, digits, '_', '.', '-'")
    if device not in ("cuda", "cpu"):
        raise one_of("device", device, ["cuda", "cpu"])
    return {"mode": mode, "job_name": name, "device": device,
            "array_parallelism": int_opt(opts, "array_parallelism", 16, 1),
            "cases_per_task": int_opt(opts, "cases_per_task", 1, 1)}


_FLAGS = {"time_min": "--time", "nodes": "--nodes", "tasks_per_node": "--tasks-per-node",
          "array_parallelism": "--array-parallelism", "cases_per_task": "--cases-per-task"}


def int_opt(opts: Mapping[str, Any], key: str, default: int, lowest: int) -> int:
    """An integer option from a flag or a job file; errors name both spellings (--time / time_min)."""
    value = opts.get(key, default)
    name = f"{_FLAGS[key]} ({key} in a job file)" if key in _FLAGS else key
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < lowest:
        raise ConfigError(f"{name} must be >= {lowest}, got {value}")
    return value


def check_limit(key: str, value: int, limit: int | None, what: str) -> None:
    if limit is not None and value > limit:
        raise ConfigError(f"{key} {value} is more than {what} allows; allowed: 1..{limit}")


def safe_text(what: str, value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be text, got {value!r}")
    return check_safe(what, value)


# --- the record of a submission -------------------------------------------------------------

@dataclass
class TaskRecord:
    job_id: str
    """the scheduler's job id (Slurm: '<array id>_<index>' for array tasks; submitit's local id)"""
    part: str
    """shard part it writes: 'main', 'a<i>', or 'p' (packed: one part 'p<task>' per task)"""
    case_indices: list[int]
    ranks: int
    """processes of this job: world size (single, array) or independent tasks (packed)"""


@dataclass
class Submission:
    run_id: str
    system: str
    partition: str
    scheduler: str
    mode: str
    folder: str
    results_root: str
    jobs: list[TaskRecord] = field(default_factory=list)
    submitted_utc: str = ""
    nodes: int = 1
    tasks_per_node: int = 1
    options: list[list[str]] = field(default_factory=list)
    """[option, value, source] of each job option and environment key (option_rows)"""

    @property
    def run_dir(self) -> Path:
        return Path(self.results_root) / self.run_id

    def save(self) -> Path:
        return atomic_write_text(self.run_dir / SUBMISSION_FILE, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, run_dir: Path) -> "Submission":
        path = Path(run_dir) / SUBMISSION_FILE
        if not path.is_file():
            raise ConfigError(f"{run_dir} was not submitted with 'aifbench submit' (no {SUBMISSION_FILE})")
        data = json.loads(path.read_text())
        data["jobs"] = [TaskRecord(**j) for j in data["jobs"]]
        return cls(**data)

    def expected(self) -> list[tuple[TaskRecord, str, int, int, list[int]]]:
        """(job, part, rank, log task index, case indices) of every shard the jobs should write."""
        out = []
        for job in self.jobs:
            if self.mode == "packed":
                for t in range(job.ranks):
                    out.append((job, f"p{t}", 0, t, job.case_indices[t::job.ranks]))
            else:
                out.extend((job, job.part, r, r, job.case_indices) for r in range(job.ranks))
        return out

    def log_path(self, job_id: str, task: int, kind: str = "err") -> Path:
        """submitit's per-task log: <folder>/<job id>_<task>_log.<out|err>."""
        return Path(self.folder) / f"{job_id}_{task}_log.{kind}"


COLLECTED_SUFFIX = "-collected"


def collected_shard(run_dir: Path, rank: int, part: str) -> Path:
    """Where `collect` writes failed rows for a task's missing cases (never the task's own shard)."""
    from aifbench.results.store import shard_name  # pandas: not at `aifbench --help` time

    return Path(run_dir) / shard_name("metrics", rank, f"{part}{COLLECTED_SUFFIX}")


def is_collected_part(part: str) -> bool:
    """Whether a shard's part is one `collect` wrote (collected_shard), not a task's own."""
    return part.endswith(COLLECTED_SUFFIX)
