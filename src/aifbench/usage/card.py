"""The card: its versioned table of figures, its provenance, and how it is made, saved and read.

A card is one JSON file, <results>/usage/<card_id>.json:
    {"table": "usage", "usage_version": 1, "provenance": {...}, "figures": [row, ...]}
Each row has the columns of USAGE_TABLE. A file of a newer usage_version is refused; older
versions are migrated through MIGRATIONS when there are any (version 1 is the first).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from aifbench.errors import ConfigError, SchemaError
from aifbench.results.schema import Column, Table
from aifbench.usage import slurm
from aifbench.usage.classes import AccountClasses
from aifbench.usage.compute import Figure, compute

USAGE_VERSION = 1
USAGE_TABLE = Table("usage", "the utilisation card: one row per figure per partition of a period", (
    Column("partition", "string", "", "Slurm partition the figure is of"),
    Column("section", "string", "", "capacity | day | state | wait_size | wait_class | size | class | energy | gpu_util"),
    Column("group", "string", "", "'period', a UTC day YYYY-MM-DD, a job state, a size class (GPUs) or an account class"),
    Column("metric", "string", "", "what the figure is (docs/operators-usage.md defines each)"),
    Column("value", "float", "see unit", "the figure; empty when not available", required=False),
    Column("unit", "string", "", "GPU-h, %, s, jobs, kWh, kWh/GPU-h"),
    Column("note", "string", "", "why a figure is not available; empty otherwise", required=False),
))
PROVENANCE_KEYS = ("card_id", "system", "cluster", "slurm_version", "partitions", "since_utc", "until_utc",
                   "account_classes", "commands", "source", "created_utc", "aifbench_version")
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


@dataclass(frozen=True)
class Card:
    provenance: dict[str, Any]
    figures: list[Figure]

    @property
    def card_id(self) -> str:
        return str(self.provenance["card_id"])

    def to_json(self) -> str:
        return json.dumps({"table": USAGE_TABLE.name, "usage_version": USAGE_VERSION, "provenance": self.provenance,
                           "figures": [asdict(f) for f in self.figures]}, indent=1)

    def value(self, partition: str, section: str, group: str, metric: str) -> float | None:
        for f in self.figures:
            if (f.partition, f.section, f.group, f.metric) == (partition, section, group, metric):
                return f.value
        raise KeyError((partition, section, group, metric))


def parse_time(option: str, text: str) -> float:
    """'2026-11-01' (midnight) or '2026-11-01T12:30[:00]', UTC, to s since the epoch; else exit 2."""
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ConfigError(f"{option} {text!r}: not a date; allowed: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (UTC)")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_period(since: float, until: float, now: float) -> None:
    """A period that is reversed, empty or reaches into the future is refused (exit 2)."""
    if until <= since:
        raise ConfigError(f"--until {iso(until)} is not after --since {iso(since)}: the period must be forward")
    if until > now:
        raise ConfigError(f"--until {iso(until)} is in the future (now {iso(now)}): accounting holds only the past")


def make(source: slurm.Source, *, system: str, partition: str | None, since: float, until: float,
         classes: AccountClasses, now: float | None = None, source_label: str = "slurm commands") -> Card:
    """Read everything the card needs from `source` and compute it (see compute.py)."""
    from aifbench import __version__

    now = time.time() if now is None else now
    check_period(since, until, now)
    cfg = slurm.config(source)
    slurm.check_accounting(source, cfg)
    nodes = slurm.nodes(source)
    known = sorted({p for n in nodes for p in n.partitions})
    if partition is not None and partition not in known:
        raise ConfigError(f"unknown partition {partition!r}; allowed: {', '.join(known) or '(none)'}")
    partitions = [partition] if partition else known
    energy_type = cfg.get("AcctGatherEnergyType", "")
    energy_note = "" if energy_type not in ("", "(null)", "acct_gather_energy/none") else \
        f"not available: Slurm records no ConsumedEnergy (AcctGatherEnergyType={energy_type or 'unset'})"
    gpu_util = "gres/gpuutil" in cfg.get("AccountingStorageTRES", "").split(",")
    gpu_util_note = "" if gpu_util else \
        "not available: accounting holds no GPU-utilisation TRES (AccountingStorageTRES has no gres/gpuutil)"
    version = slurm.slurm_version(source)
    figures = compute(slurm.jobs(source, since, until, partition, gpu_util), nodes,
                      list(slurm.events(source, since, until)), list(slurm.reservations(source, since, until)),
                      since, until, now, partitions, classes.classify, classes.names, energy_note, gpu_util_note)
    cluster = cfg.get("ClusterName", "unknown")
    card_id = f"{system}-{partition or 'all'}-{datetime.fromtimestamp(since, timezone.utc):%Y%m%dT%H%M%S}" \
              f"-{datetime.fromtimestamp(until, timezone.utc):%Y%m%dT%H%M%S}"
    provenance = {"card_id": card_id, "system": system, "cluster": cluster, "slurm_version": version,
                  "partitions": partitions, "since_utc": iso(since), "until_utc": iso(until),
                  "account_classes": classes.names, "commands": list(getattr(source, "used", [])),
                  "source": source_label, "created_utc": iso(now), "aifbench_version": __version__}
    return Card(provenance, figures)


def save(card: Card, store: Path) -> Path:
    """Write the card atomically to <store>/usage/<card_id>.json."""
    from aifbench.atomic import atomic_write_text

    path = store / "usage" / f"{card.card_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, card.to_json() + "\n")
    return path


def load(path_or_id: str, store: Path) -> Card:
    """A card from a file path, or by card id (or unique prefix) in <store>/usage."""
    path = Path(path_or_id)
    if not path.is_file():
        found = sorted((store / "usage").glob(f"{path_or_id}*.json")) if (store / "usage").is_dir() else []
        if len(found) != 1:
            known = sorted(p.stem for p in (store / "usage").glob("*.json")) if (store / "usage").is_dir() else []
            raise ConfigError(f"{'ambiguous' if found else 'unknown'} card {path_or_id!r}; "
                              f"allowed: a card file or one of {', '.join(known) or '(no card in ' + str(store / 'usage') + ')'}")
        path = found[0]
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not JSON: {exc}") from None
    return from_doc(doc, str(path))


def from_doc(doc: Any, where: str) -> Card:
    """Check a card document against USAGE_TABLE and its version (migrating older ones)."""
    if not isinstance(doc, dict) or doc.get("table") != USAGE_TABLE.name:
        raise SchemaError(f"{where}: not a usage card (no \"table\": \"usage\")")
    version = doc.get("usage_version")
    if not isinstance(version, int) or version < 1:
        raise SchemaError(f"{where}: usage_version missing or not a positive integer")
    if version > USAGE_VERSION:
        raise SchemaError(f"{where}: usage_version {version} is newer than this aifbench supports ({USAGE_VERSION})")
    for v in range(version, USAGE_VERSION):
        doc = MIGRATIONS[v](doc)
    missing = [k for k in PROVENANCE_KEYS if k not in doc.get("provenance", {})]
    if missing:
        raise SchemaError(f"{where}: provenance lacks {', '.join(missing)}")
    figures = []
    for i, row in enumerate(doc.get("figures", [])):
        if set(row) != set(USAGE_TABLE.names):
            raise SchemaError(f"{where}: figure #{i + 1} has columns {sorted(row)}; expected {USAGE_TABLE.names}")
        figures.append(Figure(**row))
    return Card(doc["provenance"], figures)
