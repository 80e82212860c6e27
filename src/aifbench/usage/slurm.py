"""Read Slurm's accounting and state through its own commands, streamed line by line.

Every command is asked for `--parsable2` text ('|'-separated, no trailing '|'), never JSON: the
JSON of `sacct --json` (Slurm >= 21.08) is one document that must be parsed whole, gigabytes for
a month of a large factory, while parsable text is read one job at a time in bounded memory.

A `Source` answers the commands; `Commands` runs them, `CapturedDir` reads files of their
captured output (what scripts/bench/usage-factory.py writes, and what an operator can copy off a
login node). Command lines used are recorded in the card's provenance.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Protocol

from aifbench.errors import ConfigError, LaunchError
from aifbench.usage.records import Event, Job, Node, Reservation

JOB_FIELDS = ("JobIDRaw", "Account", "Partition", "State", "Eligible", "Start", "End", "AllocTRES", "ReqTRES",
              "ConsumedEnergyRaw")
EVENT_FIELDS = ("NodeName", "TimeStart", "TimeEnd", "State")
GPU_UTIL_FIELD = "TRESUsageInAve"
"""asked of sacct after JOB_FIELDS only when the accounting tracks gres/gpuutil"""
RESERVATION_FIELDS = ("Name", "NodeNames", "TimeStart", "TimeEnd")
DOWN_STATES = ("DOWN", "DRAIN", "FAIL", "MAINT", "REBOOT", "POWER", "NOT_RESPONDING", "UNKNOWN")
"""a node event whose State holds one of these words counts as down (sacctmgr show event lists
only events that took a node out: down, drained, draining, failing)"""


def slurm_time(text: str) -> float | None:
    """Slurm's 'YYYY-MM-DDTHH:MM:SS' (local time of the commands, UTC here by TZ=UTC) in s since
    the epoch; None for 'Unknown', 'None' or empty. The date part is parsed once per day (a million
    jobs hold three stamps each: strptime alone would take tens of seconds)."""
    if len(text) != 19 or text[10] != "T":
        if not text or text in ("Unknown", "None", "N/A"):
            return None
        raise ValueError(f"not a Slurm time stamp: {text!r}")
    return _day(text[:10]) + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])


@lru_cache(maxsize=4096)
def _day(date: str) -> float:
    """'YYYY-MM-DD' -> its UTC midnight, s since the epoch."""
    return datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()


def slurm_stamp(t: float) -> str:
    """s since the epoch -> Slurm's time text (UTC)."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


_GPU_TRES = re.compile(r"(?:^|,)gres/gpu=(\d+)")
_GPU_UTIL = re.compile(r"(?:^|,)gres/gpuutil=(\d+(?:\.\d+)?)")
_GPU_GRES = re.compile(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)")


def tres_gpus(tres: str) -> int:
    """GPUs in a TRES list ('cpu=4,gres/gpu=2,mem=1G' -> 2; the untyped count, 0 when absent)."""
    m = _GPU_TRES.search(tres)
    return int(m.group(1)) if m else 0


def gres_gpus(gres: str) -> int:
    """GPUs in sinfo's Gres ('gpu:4', 'gpu:h100:4(S:0-1)', 'gpu:a:2,gpu:b:2' -> 4; 0 when none)."""
    return sum(int(n) for n in _GPU_GRES.findall(gres))


def job_from_fields(f: list[str]) -> Job:
    """One sacct --parsable2 line (JOB_FIELDS order, then GPU_UTIL_FIELD when asked) as a Job."""
    alloc = tres_gpus(f[7])
    energy = f[9]
    allocated = bool(f[7])  # a job cancelled while pending has Start = End but no AllocTRES: it never ran
    return Job(partition=f[2], account=f[1], state=f[3].split(" ", 1)[0], gpus=alloc or tres_gpus(f[8]),
               eligible=slurm_time(f[4]), start=slurm_time(f[5]) if allocated else None, end=slurm_time(f[6]),
               energy_j=float(energy) if energy not in ("", "0") and energy.isdigit() else None,
               gpu_util_pct=_gpu_util(f[10]) if len(f) > 10 else None)


def _gpu_util(tres: str) -> float | None:
    """gres/gpuutil of a TRESUsageInAve list ('cpu=00:00:01,gres/gpuutil=87' -> 87.0), % ; None when absent."""
    m = _GPU_UTIL.search(tres)
    return float(m.group(1)) if m else None


class Source(Protocol):
    """What the card reads: each method yields lines of one command's --parsable2 output."""

    def lines(self, name: str, argv: list[str]) -> Iterator[str]: ...


@dataclass
class Commands:
    """Run Slurm's commands here (TZ=UTC so their times are UTC); each argv is recorded."""

    used: list[str] = field(default_factory=list)

    def lines(self, name: str, argv: list[str]) -> Iterator[str]:
        import os
        import shlex

        self.used.append(shlex.join(argv))
        env = dict(os.environ, TZ="UTC", SLURM_TIME_FORMAT="standard")
        with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a chatty stderr cannot block stdout
            try:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
            except FileNotFoundError:
                raise ConfigError(f"{argv[0]} not found: run 'aifbench usage' on a login node of the cluster "
                                  "(or read captured output with --from DIR)") from None
            assert proc.stdout is not None
            try:
                yield from (line.rstrip("\n") for line in proc.stdout)
            finally:
                proc.stdout.close()
                code = proc.wait()
            stderr.seek(0)
            err = " ".join(stderr.read().split())
        if code != 0:
            raise LaunchError(f"{shlex.join(argv)} failed: {err or f'exit {code}'}")


@dataclass
class CapturedDir:
    """Captured output: DIR/<name>.txt holds what the command would have printed."""

    root: Path
    used: list[str] = field(default_factory=list)

    def lines(self, name: str, argv: list[str]) -> Iterator[str]:
        path = self.root / f"{name}.txt"
        if not path.is_file():
            raise ConfigError(f"--from {self.root}: no {name}.txt (the output of: {' '.join(argv)})")
        self.used.append(f"{' '.join(argv)}  < {path}")
        with path.open() as fh:
            yield from (line.rstrip("\n") for line in fh)


def config(source: Source) -> dict[str, str]:
    """`scontrol show config` as key -> value."""
    out = {}
    for line in source.lines("config", ["scontrol", "show", "config"]):
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def slurm_version(source: Source) -> str:
    """'22.05.8' from `sinfo --version`."""
    text = " ".join(source.lines("version", ["sinfo", "--version"])).strip()
    return text.split()[-1] if text else "unknown"


def nodes(source: Source) -> list[Node]:
    """Every node with its partitions and GPUs (`sinfo -N`: one line per node and partition)."""
    found: dict[str, tuple[list[str], int]] = {}
    for line in source.lines("nodes", ["sinfo", "-h", "-N", "-o", "%N|%R|%G"]):
        if not line.strip():
            continue
        name, part, gres = line.split("|", 2)
        parts, gpus = found.setdefault(name, ([], gres_gpus(gres)))
        if part not in parts:
            parts.append(part)
    return [Node(n, tuple(p), g) for n, (p, g) in found.items()]


def jobs(source: Source, since: float, until: float, partition: str | None, gpu_util: bool = False) -> Iterator[Job]:
    """Every allocation in any state during [since, until) (sacct without --state returns the jobs
    pending, running or ending in the window), one at a time; `gpu_util` asks for TRESUsageInAve too."""
    fields = (*JOB_FIELDS, GPU_UTIL_FIELD) if gpu_util else JOB_FIELDS
    argv = ["sacct", "-a", "-X", "-n", "--parsable2", "--format=" + ",".join(fields),
            "-S", slurm_stamp(since), "-E", slurm_stamp(until)]
    if partition:
        argv += ["-r", partition]
    for line in source.lines("sacct", argv):
        f = line.split("|")
        if len(f) == len(fields):
            yield job_from_fields(f)


def events(source: Source, since: float, until: float) -> Iterator[Event]:
    """Node events overlapping [since, until) whose state took the node out of service."""
    argv = ["sacctmgr", "-n", "--parsable2", "show", "event", "event=node", f"start={slurm_stamp(since)}",
            f"end={slurm_stamp(until)}", "format=" + ",".join(EVENT_FIELDS)]
    for line in source.lines("events", argv):
        f = line.split("|")
        if len(f) != len(EVENT_FIELDS) or not f[0]:
            continue
        start = slurm_time(f[1])
        if start is not None and any(w in f[3].upper() for w in DOWN_STATES):
            yield Event(node=f[0], state=f[3], start=start, end=slurm_time(f[2]))


def reservations(source: Source, since: float, until: float) -> Iterator[Reservation]:
    """Reservations overlapping [since, until), with the nodes they hold (names expanded)."""
    argv = ["sacctmgr", "-n", "--parsable2", "show", "reservation", f"start={slurm_stamp(since)}",
            f"end={slurm_stamp(until)}", "format=" + ",".join(RESERVATION_FIELDS)]
    for line in source.lines("reservations", argv):
        f = line.split("|")
        if len(f) != len(RESERVATION_FIELDS):
            continue
        start, end = slurm_time(f[2]), slurm_time(f[3])
        if start is not None and end is not None and f[1]:
            yield Reservation(nodes=tuple(expand_hostlist(f[1])), start=start, end=end)


def expand_hostlist(text: str) -> list[str]:
    """Slurm's host list 'n[1-3,7],gpu01' -> ['n1', 'n2', 'n3', 'n7', 'gpu01'] (zero padding kept)."""
    out: list[str] = []
    for m in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?([^,]*)", text):
        prefix, ranges, suffix = m.group(1), m.group(2), m.group(3)
        if not ranges:
            out.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            for i in range(int(lo), int(hi or lo) + 1):
                out.append(f"{prefix}{str(i).zfill(len(lo))}{suffix}")
    return out


def check_accounting(source: Source, cfg: dict[str, str]) -> None:
    """Refuse (exit 2) a cluster without job accounting, saying what sacct answered."""
    storage = cfg.get("AccountingStorageType", "")
    if storage in ("", "accounting_storage/none", "(null)"):
        answer = ""
        try:
            answer = " ".join(source.lines("sacct-probe", ["sacct", "-n", "-X", "-P", "--format=JobIDRaw", "-S", "now"]))
        except (LaunchError, ConfigError) as exc:
            answer = str(exc)
        raise ConfigError(f"no job accounting configured (AccountingStorageType={storage or 'unset'}); "
                          f"sacct answered: {answer.strip() or '(nothing)'}")
