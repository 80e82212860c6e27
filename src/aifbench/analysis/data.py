"""Selecting and shaping results for analysis: which shards, deduplicated, one tidy frame.

`select()` is what every analysis command loads: the given paths (default `results/`), plus
`results/reference/` (runs measured on real GPUs) unless excluded, minus `baselines/`
(frozen copies of runs, read only when a baseline is named). Rows that appear twice (the same
run reached through two paths) are kept once, by each table's key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from aifbench.errors import ConfigError
from aifbench.results import store
from aifbench.results.store import Results

log = logging.getLogger(__name__)

DEFAULT_RESULTS = store.DEFAULT_ROOT
REFERENCE_DIR = "reference"
BASELINES_DIR = "baselines"

# The identity of a row in each table: a row with the same key is the same measurement.
KEYS: dict[str, tuple[str, ...]] = {
    "metrics": ("run_id", "case_id", "rank", "metric", "stat"),
    "samples": ("run_id", "case_id", "rank", "metric", "sample_index"),
    "runs": ("run_id", "rank", "task"),
    "telemetry": ("run_id", "case_id", "rank", "source", "gpu_index", "scope", "field", "t_s"),
}
# Statistic that stands for a metric when several are stored: the median of the repeats, else
# the single value (energy, loss), the p50 (latency percentiles), the mean (telemetry power,
# clocks), the max (peak memory, temperature).
HEADLINE_STATS = ("median", "value", "p50", "mean", "max")


@dataclass
class Selection:
    """Loaded results plus where they came from."""

    results: Results
    reference_runs: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> pd.DataFrame:
        return self.results.tables["metrics"]

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return self.results.skipped


def dedupe(results: Results) -> Results:
    """Keep the first row per table key (the same run may be reached twice)."""
    tables = {}
    for name, df in results.tables.items():
        key = [c for c in KEYS[name] if c in df.columns]
        tables[name] = df.drop_duplicates(subset=key, keep="first").reset_index(drop=True) if len(df) else df
    return Results(tables, list(results.skipped))


def _shards(paths: Iterable[Path], exclude: Iterable[Path]) -> list[Path]:
    excluded = [p.resolve() for p in exclude]
    out = []
    for shard in store.find_shards(paths):
        real = shard.resolve()
        if any(real.is_relative_to(e) for e in excluded):
            continue
        out.append(shard)
    return out


def select(paths: Iterable[Path | str] = (), *, include_reference: bool = True,
           reference_dir: Path | None = None) -> Selection:
    """Load results below `paths` (default `results/`) and the reference runs.

    Reference runs are those under `reference_dir` (default `results/reference`) and under
    `<path>/reference` of every given directory. Raises ConfigError when nothing at all is
    found (an empty selection).
    """
    paths = [Path(p) for p in paths] or [DEFAULT_RESULTS]
    existing = [p for p in paths if p.exists()]
    missing = [p for p in paths if not p.exists()]
    if missing and (existing or paths != [DEFAULT_RESULTS]):
        raise ConfigError(f"no such results file or directory: {missing[0]}")
    ref_dirs = [Path(reference_dir) if reference_dir else DEFAULT_RESULTS / REFERENCE_DIR]
    ref_dirs += [p / REFERENCE_DIR for p in existing if p.is_dir()]
    ref_dirs = [d for d in dict.fromkeys(ref_dirs) if d.is_dir()]
    exclude = [p / BASELINES_DIR for p in existing if p.is_dir()] + ref_dirs
    shards = _shards(existing, exclude)
    ref_shards = _shards(ref_dirs, []) if include_reference else []
    loaded = dedupe(store.load(sorted(set(shards) | set(ref_shards))))
    ref_runs = {s.parent.name for s in ref_shards}
    if not len(loaded.tables["metrics"]):
        where = ", ".join(str(p) for p in paths)
        hint = "" if include_reference else " (reference runs excluded)"
        raise ConfigError(f"no results found under {where}{hint}; run 'aifbench run smoke' first")
    return Selection(loaded, ref_runs)


def load(paths: Iterable[Path | str] = (), *, baselines: bool = False) -> Results:
    """The Python API: every run below `paths` (default `results/`), deduplicated.

    Frozen baseline copies (any `baselines/` directory below a given directory) are read only
    with baselines=True, so a run saved as a baseline is not counted twice. A baseline directory
    named directly in `paths` is read (it was asked for).
    """
    paths = [Path(p) for p in paths] or [DEFAULT_RESULTS]
    exclude = [] if baselines else [b for p in paths if p.is_dir() for b in p.rglob(BASELINES_DIR) if b.is_dir()]
    return dedupe(store.load(_shards(paths, exclude)))


def load_runs(paths: Iterable[Path]) -> Results:
    """Load exactly these paths (a run directory, a baseline) without defaults; deduplicated."""
    return dedupe(store.load(list(paths)))


def headline(metrics: pd.DataFrame, status_ok: bool = True) -> pd.DataFrame:
    """One row per (run, case, rank, metric): the headline statistic's row.

    Adds `case_key` (benchmark + parameters, comparable across runs) and `label` (short text).
    """
    df = metrics
    if status_ok:
        df = df[df["status"] == "ok"]
    df = df[df["stat"].isin(HEADLINE_STATS)].copy()
    order = {s: i for i, s in enumerate(HEADLINE_STATS)}
    df["_o"] = df["stat"].map(order)
    df = df.sort_values("_o").drop_duplicates(["run_id", "case_id", "rank", "metric"]).drop(columns="_o")
    df["case_key"] = df["benchmark"] + " " + df["params"]
    df["label"] = [case_label(b, p) for b, p in zip(df["benchmark"], df["params"])]
    return df.sort_index().reset_index(drop=True)


def case_label(benchmark: str, params_json: str, limit: int = 90) -> str:
    """'gemm dtype=bf16 k=8192 m=8192 n=8192': readable and stable.

    Left out: check-only knobs (check_*) and switched-off options (False, 0, empty), which
    every case of a suite tends to share; the full parameters stay in `params` / `case_key`.
    """
    params = json.loads(params_json)
    text = " ".join(f"{k}={v}" for k, v in params.items()
                    if not k.startswith("check") and v not in (False, 0, "", None))
    text = f"{benchmark} {text}".strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
