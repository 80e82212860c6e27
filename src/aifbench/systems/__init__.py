"""System profiles: where a suite runs — one TOML per AI-factory system (this folder).

    from aifbench.systems import list_systems, load_system
    list_systems()                    -> ['alps-gh200', 'jupiter-booster', ..., 'local', 'local-slurm']
    sys = load_system("jupiter-booster")
    sys.node.gpu_sku                  -> 'gh200-96gb' (a key of aifbench/hardware/catalog.toml)
    sys.queue("booster").max_nodes    -> the partition's node limit, or None when unknown

A profile holds public facts only: scheduler defaults, node hardware, environment set-up and
NCCL variables, each with its source and a list of what could not be confirmed. Private
values (account, reservation) come from the user: a flag or AIFBENCH_ACCOUNT /
AIFBENCH_RESERVATION, never a profile. Every string that reaches an sbatch line is checked
against SAFE_VALUE here, so a profile cannot smuggle shell syntax into a job script.
File format: see the header of local-slurm.toml (the smallest complete example).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from aifbench.files import read_toml
from aifbench.errors import ConfigError, one_of

SYSTEMS_DIR = Path(__file__).resolve().parent
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+@,=/-]*$")
"""partition, QoS, account, constraint, gres: letters, digits and _ . : + @ , = / - only"""
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCHEDULERS = ("slurm", "local")
"""the keys of launch.BACKENDS, one launcher each (systems sits below launch: a test keeps them equal)"""
DEVICES = ("cuda", "cpu", "auto")
GPU_REQUESTS = ("gpus_per_node", "gres", "none")


def check_safe(what: str, value: str) -> str:
    """`value` unchanged when it is a plain Slurm name, else a ConfigError (exit 2)."""
    if not SAFE_VALUE.match(value):
        raise ConfigError(f"{what} {value!r} refused: only letters, digits and _ . : + @ , = / - "
                          "are allowed (no spaces or shell characters)")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    """Hardware of one compute node."""

    arch: str
    gpu_sku: str
    """hardware-catalog id ('h100-sxm5-80gb', 'mi250x', 'cpu' for none)"""
    gpus: int
    """torch devices per node (LUMI-G: 8 GCDs on 4 MI250X modules)"""
    device: str
    """torch device kind of each rank: cuda (also ROCm builds), cpu, or auto (local only)"""
    cpu: str = ""
    cpu_cores: int | None = None
    memory_gb: float | None = None
    """host memory per node, GB = 1e9 B"""
    network: str = ""
    count: int | None = None
    """nodes in the system (or partition) according to the site"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Queue:
    """One schedulable target: a Slurm partition and/or QoS with its limits."""

    name: str
    partition: str
    """--partition value; '' when the site routes by QoS alone"""
    qos: str = ""
    max_nodes: int | None = None
    max_time_min: int | None = None
    note: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class SlurmDefaults:
    default_queue: str
    queues: tuple[Queue, ...]
    gpu_request: str = "gpus_per_node"
    """how GPUs are asked for: --gpus-per-node=N, --gres=gpu:N, or not at all"""
    gpus_per_node: int = 0
    """GPUs requested per node; one task per GPU unless tasks_per_node says otherwise"""
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    time_min: int = 30
    """default time limit of a job, minutes"""
    constraint: str = ""
    exclusive: bool = False
    srun_args: tuple[str, ...] = ()
    signal_delay_s: int = 90
    """USR2 this many seconds before the time limit: submitit checkpoints and requeues"""
    account_required: bool = True
    """jobs need a Slurm account (--account or AIFBENCH_ACCOUNT); every production site does"""

    @property
    def default_tasks_per_node(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


@dataclass(frozen=True, kw_only=True, slots=True)
class System:
    name: str
    site: str
    description: str
    scheduler: str
    node: Node
    slurm: SlurmDefaults | None
    setup: tuple[str, ...] = ()
    """shell lines run in the job script before srun (module loads, container, venv)"""
    env: tuple[tuple[str, str], ...] = ()
    """NCCL / network variables exported in the job script (values are shell-quoted)"""
    python: str = ""
    """interpreter on the compute nodes; '' = the one running aifbench"""
    sources: tuple[str, ...] = ()
    unconfirmed: tuple[str, ...] = ()
    acceptance: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def queue_names(self) -> list[str]:
        return [q.name for q in self.slurm.queues] if self.slurm else []

    def queue(self, name: str | None = None) -> Queue:
        """The named queue (partition), or the default; unknown -> ConfigError listing them."""
        if self.slurm is None:
            raise ConfigError(f"system {self.name!r} has no scheduler partitions (scheduler: {self.scheduler})")
        name = name or self.slurm.default_queue
        for q in self.slurm.queues:
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


_TOP = {"name", "site", "description", "scheduler", "python", "sources", "unconfirmed",
        "node", "slurm", "environment", "acceptance"}
_NODE = {"arch", "gpu_sku", "gpus", "device", "cpu", "cpu_cores", "memory_gb", "network", "count"}
_SLURM = {"default_partition", "partitions", "gpu_request", "gpus_per_node", "tasks_per_node",
          "cpus_per_task", "time_min", "constraint", "exclusive", "srun_args", "signal_delay_s",
          "account_required"}
_QUEUE = {"partition", "qos", "max_nodes", "max_time_min", "note"}
_ENVIRONMENT = {"setup", "vars"}


def _keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table")
    for key in table:
        if key not in allowed:
            raise one_of(f"key in {where}", key, allowed)


_INTS = {"gpus", "cpu_cores", "count", "gpus_per_node", "tasks_per_node", "cpus_per_task", "time_min",
         "signal_delay_s", "max_nodes", "max_time_min"}
_BOOLS = {"exclusive", "account_required"}
_NUMBERS = {"memory_gb"}


def _types(where: str, table: Mapping[str, Any]) -> None:
    """Integers >= 0, booleans, numbers and text where the format says so (one line naming the key)."""
    for key, value in table.items():
        if key in _INTS:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            want = "an integer >= 0"
        elif key in _BOOLS:
            ok, want = isinstance(value, bool), "true or false"
        elif key in _NUMBERS:
            ok, want = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, "a number >= 0"
        elif isinstance(value, (Mapping, list)):
            continue
        else:
            ok, want = isinstance(value, str), "text"
        if not ok:
            raise ConfigError(f"{where}: {key} must be {want}, got {value!r}")


def _python(where: str, value: Any) -> str:
    """The compute nodes' interpreter command, re-quoted word by word: shell syntax stays literal."""
    try:
        words = shlex.split(str(value))
    except ValueError as exc:
        raise ConfigError(f"{where}: python {value!r}: {exc}") from None
    return shlex.join(words)


def parse_system(raw: Mapping[str, Any], where: str) -> System:
    """Validate a profile dictionary (as read from TOML) into a System."""
    _keys(where, raw, _TOP)
    _types(where, raw)
    for key in ("name", "site", "scheduler"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ConfigError(f"{where}: '{key}' (a non-empty string) is required")
    if raw["scheduler"] not in SCHEDULERS:
        raise one_of(f"scheduler in {where}", raw["scheduler"], SCHEDULERS)
    node = _node(raw.get("node", {}), where)
    slurm = _slurm(raw["slurm"], where) if "slurm" in raw else None
    if raw["scheduler"] == "slurm" and slurm is None:
        raise ConfigError(f"{where}: scheduler 'slurm' needs a [slurm] table")
    envt = raw.get("environment", {})
    _keys(f"{where} [environment]", envt, _ENVIRONMENT)
    setup = tuple(_setup_line(where, line) for line in envt.get("setup", []))
    env = tuple((_env_name(where, k), str(v)) for k, v in envt.get("vars", {}).items())
    return System(name=raw["name"], site=raw["site"], description=str(raw.get("description", "")),
                  scheduler=raw["scheduler"], node=node, slurm=slurm, setup=setup, env=env,
                  python=_python(where, raw.get("python", "")), sources=tuple(raw.get("sources", [])),
                  unconfirmed=tuple(raw.get("unconfirmed", [])), acceptance=dict(raw.get("acceptance", {})),
                  path=where)


def _node(raw: Mapping[str, Any], where: str) -> Node:
    _keys(f"{where} [node]", raw, _NODE)
    _types(f"{where} [node]", raw)
    for key in ("arch", "gpu_sku", "gpus", "device"):
        if key not in raw:
            raise ConfigError(f"{where} [node]: '{key}' is required")
    if raw["device"] not in DEVICES:
        raise one_of(f"node.device in {where}", raw["device"], DEVICES)
    _check_sku(raw["gpu_sku"], where)
    return Node(**{k: raw[k] for k in raw})


def _check_sku(sku: str, where: str) -> None:
    from aifbench.hardware import catalog

    ids = catalog.load().ids()
    if sku not in ids:
        raise one_of(f"node.gpu_sku in {where} (hardware catalog id)", sku, ids)


def _slurm(raw: Mapping[str, Any], where: str) -> SlurmDefaults:
    _keys(f"{where} [slurm]", raw, _SLURM)
    _types(f"{where} [slurm]", raw)
    queues = []
    for name, q in raw.get("partitions", {}).items():
        _keys(f"{where} [slurm.partitions.{name}]", q, _QUEUE)
        _types(f"{where} [slurm.partitions.{name}]", q)
        check_safe(f"{where}: partition name", name)
        for key in ("partition", "qos"):
            if q.get(key):
                check_safe(f"{where}: partitions.{name}.{key}", q[key])
        queues.append(Queue(name=name, partition=q.get("partition", name), qos=q.get("qos", ""),
                            max_nodes=q.get("max_nodes"), max_time_min=q.get("max_time_min"),
                            note=q.get("note", "")))
    if not queues:
        raise ConfigError(f"{where}: [slurm.partitions.NAME] needs at least one entry")
    default = raw.get("default_partition", queues[0].name)
    if default not in [q.name for q in queues]:
        raise one_of(f"default_partition in {where}", default, [q.name for q in queues])
    if raw.get("gpu_request", "gpus_per_node") not in GPU_REQUESTS:
        raise one_of(f"slurm.gpu_request in {where}", raw["gpu_request"], GPU_REQUESTS)
    if raw.get("constraint"):
        check_safe(f"{where}: slurm.constraint", raw["constraint"])
    srun_args = tuple(raw.get("srun_args", []))
    for arg in srun_args:
        check_safe(f"{where}: slurm.srun_args entry", arg)
    fields = {k: v for k, v in raw.items() if k not in ("partitions", "default_partition", "srun_args")}
    return SlurmDefaults(default_queue=default, queues=tuple(queues), srun_args=srun_args, **fields)


def _setup_line(where: str, line: Any) -> str:
    if not isinstance(line, str) or any(c in line for c in "\n\r\0"):
        raise ConfigError(f"{where}: each environment.setup entry must be one line of text")
    return line


def _env_name(where: str, name: str) -> str:
    if not ENV_NAME.match(name):
        raise ConfigError(f"{where}: environment variable name {name!r} is not a valid identifier")
    return name
