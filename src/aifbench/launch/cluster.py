"""What the Slurm cluster looks like now: partitions, nodes, GPU gres, job states (as launch.base.JobInfo).

Two backends give the same objects: pyslurm (when importable and built for the installed
Slurm's major.minor — PyPI has source releases only, each building against one Slurm) and the
Slurm commands `sinfo` / `squeue` / `sacct` with explicit `-o` formats (stable across
versions, unlike `--json`). Every command runs under a wall-clock bound: a dead controller
or a missing slurmdbd must not hang `aifbench jobs`. AIFBENCH_CLUSTER_BACKEND=cli|pyslurm
forces one. Finished jobs always come from sacct (pyslurm.db needs the same version match).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from aifbench.errors import LaunchError, one_of
from aifbench.launch.base import FINAL_STATES, STATES, JobInfo

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 20.0
SEP = "|"

# Slurm job states -> the states aifbench reports (launch.base.STATES)
_ALIASES = {"CONFIGURING": "PENDING", "REQUEUE_HOLD": "PENDING", "REQUEUE_FED": "PENDING",
            "RESV_DEL_HOLD": "PENDING", "COMPLETING": "RUNNING", "STAGE_OUT": "RUNNING",
            "SIGNALING": "RUNNING", "RESIZING": "RUNNING", "STOPPED": "SUSPENDED",
            "SPECIAL_EXIT": "FAILED", "REVOKED": "CANCELLED", "BOOT_FAIL": "NODE_FAIL",
            "DEADLINE": "TIMEOUT"}


def normalize_state(raw: str) -> str:
    """'CANCELLED by 0' -> CANCELLED, 'COMPLETING' -> RUNNING, '' -> UNKNOWN."""
    word = (raw or "").strip().split(" ")[0].rstrip("+").upper()
    word = _ALIASES.get(word, word)
    return word if word in STATES else "UNKNOWN"


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    name: str
    state: str
    """UP, DOWN, DRAIN, INACTIVE"""
    total_nodes: int
    max_time_min: int | None
    """None = unlimited"""
    max_nodes: int | None
    is_default: bool
    nodes: str
    """Slurm hostlist, e.g. 'n[1-2]'"""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    state: str
    """lower case as sinfo prints it: idle, mixed, allocated, down, drained, ..."""
    partitions: tuple[str, ...]
    cpus: int
    gpus: int
    """GPUs from the node's gres (gpu:4, gpu:a100:4 -> 4)"""
    gres: str


# --- running Slurm commands -----------------------------------------------------------------

def slurm_available() -> bool:
    return shutil.which("sinfo") is not None


def run_command(argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """stdout of a Slurm command; LaunchError with Slurm's own message when it fails."""
    if shutil.which(argv[0]) is None:
        raise LaunchError(f"{argv[0]} not found: this machine has no Slurm client commands")
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{argv[0]} gave no answer within {timeout_s:g} s (is slurmctld up?)") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise LaunchError(f"{' '.join(argv[:2])} failed: {message[-1] if message else f'exit {done.returncode}'}")
    return done.stdout


def slurm_version(timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """'22.05.8' from `sinfo --version` ('slurm 22.05.8' or 'slurm-wlm 22.05.8')."""
    out = run_command(["sinfo", "--version"], timeout_s)
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    return m.group(1) if m else ""


# --- backend choice -------------------------------------------------------------------------

def _import_pyslurm() -> Any | None:
    try:
        import pyslurm  # noqa: F401  (changes dlopen flags: only ever imported here, lazily)
    except Exception as exc:  # absent, or built against another libslurm
        log.debug("pyslurm unusable: %s", exc)
        return None
    return pyslurm


def backend() -> str:
    """'pyslurm' when it imports and matches the installed Slurm's major.minor, else 'cli'."""
    forced = os.environ.get("AIFBENCH_CLUSTER_BACKEND", "")
    if forced:
        if forced not in ("cli", "pyslurm"):
            raise one_of("AIFBENCH_CLUSTER_BACKEND", forced, ("cli", "pyslurm"))
        return forced
    return _detect_backend()


@functools.cache
def _detect_backend() -> str:
    """Decided once per process: imports pyslurm and runs `sinfo --version`."""
    mod = _import_pyslurm()
    if mod is None or not slurm_available():
        return "cli"
    theirs = str(getattr(mod, "__version__", "") or getattr(mod, "version", lambda: "")())
    ours = slurm_version()
    if theirs.split(".")[:2] == ours.split(".")[:2]:
        return "pyslurm"
    log.info("pyslurm %s does not match Slurm %s: using sinfo/squeue/sacct", theirs, ours)
    return "cli"


def partitions(timeout_s: float = COMMAND_TIMEOUT_S) -> list[PartitionInfo]:
    if backend() == "pyslurm":
        return partitions_from_pyslurm(_import_pyslurm().Partitions.load().values())
    return parse_sinfo_partitions(run_command(["sinfo", "-h", "-a", "-o", PARTITION_FORMAT], timeout_s))


def nodes(timeout_s: float = COMMAND_TIMEOUT_S) -> list[NodeInfo]:
    if backend() == "pyslurm":
        return nodes_from_pyslurm(_import_pyslurm().Nodes.load().values())
    return parse_sinfo_nodes(run_command(["sinfo", "-h", "-a", "-N", "-o", NODE_FORMAT], timeout_s))


def jobs(job_ids: Iterable[str], timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[dict[str, JobInfo], bool]:
    """(state of each job id, whether the controller answered); each command bounded by `timeout_s`.

    Ids are plain ('12') or array tasks ('12_3'). squeue (or pyslurm) knows every job the
    controller still holds — pending, running, and ended ones for MinJobAge seconds (accounting
    records reach slurmdbd seconds late, so a just-ended job is never reported lost). sacct
    gives the rest, and replaces squeue's record of an ended job once it has one (exit code,
    elapsed). Ids neither knows are absent from the result.
    """
    ids = sorted({str(j) for j in job_ids})
    live = queue(sorted({_base(i) for i in ids}), timeout_s)
    found = dict(live or {})
    ask = sorted({_base(i) for i in ids if i not in found or found[i].final})
    for key, info in (accounting(ask, timeout_s) or {}).items():
        if key not in found or (info.final and found[key].final):
            found[key] = info
    return found, live is not None


def queue(job_ids: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> dict[str, JobInfo] | None:
    """Jobs among `job_ids` the controller holds (any state); None when it could not be asked."""
    if not job_ids:
        return {}
    if backend() == "pyslurm":
        return jobs_from_pyslurm(_import_pyslurm().Jobs.load().values(), job_ids)
    try:
        text = run_command(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", SQUEUE_FORMAT],
                           timeout_s)
    except LaunchError as exc:
        if "Invalid job id" in str(exc):  # every id has left the controller: an answer, not a failure
            return {}
        log.warning("squeue: %s", exc)
        return None
    return parse_squeue(text)


def accounting(job_ids: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> dict[str, JobInfo] | None:
    """Accounting records (sacct) of `job_ids`; None when sacct is unavailable or failed."""
    if not job_ids:
        return {}
    try:
        text = run_command(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", SACCT_FIELDS], timeout_s)
    except LaunchError as exc:  # accounting off or slurmdbd down
        log.warning("sacct: %s", exc)
        return None
    return parse_sacct(text)


def _base(job_id: str) -> str:
    """'12_3' -> '12' (the array's job id), '12' -> '12'."""
    return job_id.split("_")[0]


# --- sinfo / squeue / sacct text ------------------------------------------------------------

PARTITION_FORMAT = SEP.join(["%R", "%a", "%D", "%l", "%s", "%N", "%P"])
NODE_FORMAT = SEP.join(["%N", "%T", "%R", "%c", "%G"])
SQUEUE_FORMAT = SEP.join(["%i", "%T", "%j", "%P", "%N", "%r", "%M"])
SACCT_FIELDS = "JobID,State,JobName,Partition,NodeList,Reason,ExitCode,Elapsed"


def parse_sinfo_partitions(text: str) -> list[PartitionInfo]:
    """Lines of `sinfo -h -a -o '%R|%a|%D|%l|%s|%N|%P'` (one per partition)."""
    out = []
    for line in _lines(text, 7):
        name, avail, count, limit, size, nodelist, marked = line
        out.append(PartitionInfo(name=name, state=avail.upper(), total_nodes=_int(count) or 0,
                                 max_time_min=parse_time_min(limit), max_nodes=_max_nodes(size),
                                 is_default=marked.endswith("*"), nodes=nodelist))
    return out


def parse_sinfo_nodes(text: str) -> list[NodeInfo]:
    """Lines of `sinfo -h -a -N -o '%N|%T|%R|%c|%G'`: one per node and partition; merged."""
    merged: dict[str, dict[str, Any]] = {}
    for name, state, part, cpus, gres in _lines(text, 5):
        entry = merged.setdefault(name, {"state": state.lower().rstrip("*~#!%$@^-"), "parts": [],
                                         "cpus": _int(cpus) or 0, "gres": "" if gres == "(null)" else gres})
        if part not in entry["parts"]:
            entry["parts"].append(part)
    return [NodeInfo(name=n, state=e["state"], partitions=tuple(e["parts"]), cpus=e["cpus"],
                     gpus=gpus_in_gres(e["gres"]), gres=e["gres"]) for n, e in merged.items()]


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """Lines of `squeue -h -r -t all -o '%i|%T|%j|%P|%N|%r|%M'`."""
    out = {}
    for job_id, state, name, part, nodelist, reason, elapsed in _lines(text, 7):
        norm = normalize_state(state)
        # an ended job's reason is its last pending reason (JobArrayTaskLimit, ...) or a vague
        # NonZeroExitCode: not why it ended (sacct's exit code says that)
        out[job_id] = JobInfo(job_id=job_id, state=norm, raw_state=state, name=name, partition=part,
                              nodes=nodelist, reason="" if reason == "None" or norm in FINAL_STATES else reason,
                              elapsed=elapsed, source="squeue")
    return out


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """Lines of `sacct -X -n -P -o JobID,State,JobName,Partition,NodeList,Reason,ExitCode,Elapsed`."""
    out = {}
    for job_id, state, name, part, nodelist, reason, code, elapsed in _lines(text, 8):
        norm = normalize_state(state)
        # array tasks that never started share one record '12_[2-3%1]' (pending, or cancelled while pending)
        for key in expand_array_tasks(job_id):
            # sacct's Reason of an ended job is its last *pending* reason (BeginTime, ...): not why it ended
            out[key] = JobInfo(job_id=key, state=norm, raw_state=state, name=name,
                               partition=part, nodes="" if nodelist == "None assigned" else nodelist,
                               reason="" if reason == "None" or norm in FINAL_STATES else reason,
                               exit_code=code, elapsed=elapsed, source="sacct")
    return out


def expand_array_tasks(job_id: str) -> list[str]:
    """'12_[2-4,7%2]' -> 12_2, 12_3, 12_4, 12_7 (the %N throttle dropped); other ids unchanged."""
    m = re.fullmatch(r"(\d+)_\[([0-9,\-]+)(?:%\d+)?\]", job_id)
    if not m:
        return [job_id]
    out = []
    for item in m.group(2).split(","):
        lo, _, hi = item.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _lines(text: str, fields: int) -> Iterable[list[str]]:
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(SEP)
        if len(parts) < fields:
            log.debug("skipping unparsable Slurm line %r", line)
            continue
        # a free-text last column (reason) may itself contain the separator
        yield parts[: fields - 1] + [SEP.join(parts[fields - 1:])] if len(parts) > fields else parts


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _max_nodes(size: str) -> int | None:
    """sinfo %s: '1-infinite', '1-2', '4' -> 2, 4; infinite -> None."""
    hi = size.split("-")[-1]
    return _int(hi)


def parse_time_min(text: str) -> int | None:
    """Slurm time -> minutes (seconds round up): 'infinite' -> None, '60', '30:00', '1:00:00',
    '2-00:00:00', '1-12' (days-hours)."""
    text = (text or "").strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
        h, m, s = ([int(p) for p in text.split(":")] + [0, 0])[:3]
    else:
        parts = [int(p) for p in text.split(":")]
        h, m, s = {1: (0, parts[0], 0), 2: (0, *parts[:2]), 3: tuple(parts[:3])}[min(len(parts), 3)]
    return days * 1440 + h * 60 + m + (1 if s else 0)


def gpus_in_gres(gres: str) -> int:
    """'gpu:4', 'gpu:a100:4(S:0-1)', 'gpu:a100:2,gpu:v100:2' -> 4; no GPU -> 0."""
    total = 0
    for item in (gres or "").split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and len(fields) >= 2 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


# --- pyslurm objects -> the same dataclasses (pyslurm >= 23.2 / 25.11 API) -------------------

def partitions_from_pyslurm(objs: Iterable[Any]) -> list[PartitionInfo]:
    out = []
    for p in objs:
        limit = p.max_time_limit
        out.append(PartitionInfo(name=p.name, state=str(p.state).upper(), total_nodes=int(p.total_nodes or 0),
                                 max_time_min=limit if isinstance(limit, int) else None,
                                 max_nodes=p.max_nodes if isinstance(p.max_nodes, int) else None,
                                 is_default=bool(p.is_default), nodes=p.nodes or ""))
    return out


def nodes_from_pyslurm(objs: Iterable[Any]) -> list[NodeInfo]:
    out = []
    for n in objs:
        gres = dict(n.configured_gres or {})
        text = ",".join(f"{k}:{v}" for k, v in gres.items())
        out.append(NodeInfo(name=n.name, state=str(n.state).split("+")[0].lower(),
                            partitions=tuple(n.partitions or ()), cpus=int(n.total_cpus or 0),
                            gpus=gpus_in_gres(text), gres=text))
    return out


def jobs_from_pyslurm(objs: Iterable[Any], ids: Sequence[str]) -> dict[str, JobInfo]:
    wanted = set(ids)
    out = {}
    for j in objs:
        array_id, task = getattr(j, "array_id", None), getattr(j, "array_task_id", None)
        key = f"{array_id}_{task}" if array_id and task is not None else str(j.id)
        if not (str(j.id) in wanted or str(array_id) in wanted or key in wanted):
            continue
        out[key] = JobInfo(job_id=key, state=normalize_state(j.state), raw_state=str(j.state),
                           name=j.name or "", partition=j.partition or "",
                           nodes=getattr(j, "allocated_nodes", None) or "",
                           reason="" if j.state_reason in (None, "None") else j.state_reason,
                           exit_code=str(getattr(j, "exit_code", "") or ""), source="pyslurm")
    return out
