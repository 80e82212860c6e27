"""Baselines: a run frozen as the reference of a partition, later runs checked for drift.

`save` copies the run's shards to <results>/baselines/<name>/<run_id>/ with a baseline.json
beside them (written to a temporary directory, renamed into place: never half-saved). A
baseline is read by name, or a run id is accepted wherever a baseline is asked for.
Drift is `compare` against the baseline: a metric drifted when the Mann-Whitney test on the
raw samples and the bootstrap interval of the median ratio both say so (stats.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from aifbench.analysis.data import BASELINES_DIR, load_runs
from aifbench.atomic import atomic_dir
from aifbench.errors import ConfigError
from aifbench.results import store
from aifbench.results.store import Results

META = "baseline.json"


@dataclass(frozen=True, kw_only=True, slots=True)
class BaselineInfo:
    name: str
    run_id: str
    saved_utc: str
    system: str
    partition: str
    device_name: str
    ranks: int
    note: str = ""


def root(results: Path) -> Path:
    return Path(results) / BASELINES_DIR


def _describe(name: str, run: Results, note: str) -> BaselineInfo:
    runs = run.tables["runs"]
    m = run.tables["metrics"]
    src = runs if len(runs) else m
    first = src.sort_values("rank").iloc[0]
    part = first.get("partition")
    return BaselineInfo(name=name, run_id=str(first["run_id"]), saved_utc=datetime.now(timezone.utc).isoformat(),
                        system=str(first["system"]), partition="" if pd.isna(part) else str(part),
                        device_name=str(first["device_name"]), ranks=int(src["rank"].nunique()), note=note)


def save(results: Path, run_id: str | None, name: str, *, note: str = "", force: bool = False) -> BaselineInfo:
    """Freeze run `run_id` (prefix ok; latest when None) as baseline `name`."""
    if not store.RUN_ID_RE.match(name):
        raise ConfigError(f"invalid baseline name {name!r}: a letter or digit first, then letters, digits, "
                          "'.', '_' and '-' (at most 128)")
    run_dir = store.resolve_run(results, run_id)
    run = load_runs([run_dir])
    if run.skipped:
        raise ConfigError(f"run {run_dir.name} has invalid shards, not saved as a baseline: "
                          + "; ".join(f"{p.name}: {why}" for p, why in run.skipped))
    if not len(run.tables["metrics"]):
        raise ConfigError(f"run {run_dir.name} has no metrics")
    dest = root(results) / name
    if dest.exists() and not force:
        raise ConfigError(f"baseline {name!r} exists ({dest}); choose another name or pass --force")
    info = _describe(name, run, note)
    with atomic_dir(dest) as tmp:
        shutil.copytree(run_dir, tmp / run_dir.name, ignore=shutil.ignore_patterns(".*"))
        (tmp / META).write_text(json.dumps(asdict(info), indent=1) + "\n")
    return info


def list_baselines(results: Path) -> list[BaselineInfo]:
    out: list[BaselineInfo] = []
    base = root(results)
    if not base.is_dir():
        return out
    for d in sorted(base.iterdir()):
        meta = d / META
        if d.name.startswith(".") or not meta.is_file():
            continue
        out.append(BaselineInfo(**json.loads(meta.read_text())))
    return out


def load(results: Path, name_or_run: str) -> tuple[str, Results]:
    """(description, results) of a baseline name, else of a run id under `results`."""
    d = root(results) / name_or_run
    if (d / META).is_file():
        info = BaselineInfo(**json.loads((d / META).read_text()))
        return f"baseline {info.name} (run {info.run_id})", load_runs([d / info.run_id])
    try:
        run_dir = store.resolve_run(results, name_or_run)
    except ConfigError:
        names = [b.name for b in list_baselines(results)]
        raise ConfigError(f"no baseline or run {name_or_run!r} under {results}; baselines: "
                          + (", ".join(names) or "(none)")) from None
    return f"run {run_dir.name}", load_runs([run_dir])
