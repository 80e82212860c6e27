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
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pandas as pd

from aifbench.errors import ConfigError, no_results
from aifbench.results import schema, store
from aifbench.results.store import Results

if TYPE_CHECKING:
    from pyarrow.dataset import Expression

    from aifbench.results.read import Side

log = logging.getLogger(__name__)

DEFAULT_RESULTS = store.DEFAULT_ROOT
REFERENCE_DIR = "reference"
BASELINES_DIR = "baselines"

# The identity of a row in each table: a row with the same key is the same measurement.
KEYS: dict[str, tuple[str, ...]] = {
    "metrics": ("run_id", "case_id", "rank", "metric", "stat"),
    "samples": ("run_id", "case_id", "rank", "metric", "sample_index"),
    "runs": ("run_id", "rank", "task"),
    "telemetry": ("run_id", "case_id", "rank", "source", "gpu_index", "scope", "window", "segment", "field", "t_s"),
}
# Statistic that stands for a metric when several are stored: the median of the repeats, else
# the single value (energy, loss), the p50 (latency percentiles), the mean (telemetry power,
# clocks), the max (peak memory, temperature).
HEADLINE_STATS = ("median", "value", "p50", "mean", "max")
# What analysis reads (results/read.py pushes both down into the Parquet scan): the headline
# statistics (and max, from which samples.py checks a rate's timing base) of every row, every
# row that did not end ok, and no case timestamps; raw samples only of runs up to
# SAMPLES_MAX_RANKS ranks: beyond, a partition's spread is its ranks' spread (compare pools the
# ranks' values when samples are absent), and reading 600 samples per rank would dominate.
ANALYSIS_STATS = HEADLINE_STATS
UNREAD_COLUMNS = ("started_utc", "ended_utc", "detail")
SAMPLES_MAX_RANKS = 256
RUNS_UNREAD = ("platform", "cpu_model", "job_nodes", "modules", "container", "environment", "launcher", "cpu_cores",
               "memory_bytes", "gpu_memory_bytes", "driver_version", "cuda_version",
               "nccl_version", "cudnn_version", "torch_version", "python_version", "git_commit", "job_step",
               "array_job_id", "array_task_id", "node_index")
"""provenance no analysis reads (the effective configuration, kilobytes a rank, is read
dictionary-encoded: once per distinct text): a runs shard is one row of 43 columns, and each
column read costs per file (10^5 files: the 22 read take about two thirds of the time of 37)"""


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
        twice = df.duplicated(subset=key, keep="first").to_numpy() if len(df) else None
        tables[name] = df[~twice].reset_index(drop=True) if twice is not None and twice.any() else df  # no copy of 10^7 rows kept once
    return Results(tables, list(results.skipped), dict(results.side))


def _shards(paths: Iterable[Path], exclude: Iterable[Path]) -> list[Path]:
    excluded = [p.resolve() for p in exclude if p.exists()]  # a directory that is not there holds nothing
    shards = store.find_shards(paths)
    if not excluded:
        return shards
    inside: dict[Path, bool] = {}  # per directory, not per shard (10^5 shards)
    out = []
    for shard in shards:
        if shard.is_symlink():
            real = shard.resolve()
            hit = any(real.is_relative_to(e) for e in excluded)
        else:
            if shard.parent not in inside:
                where = shard.parent.resolve()
                inside[shard.parent] = any(where.is_relative_to(e) for e in excluded)
            hit = inside[shard.parent]
        if hit:
            continue
        out.append(shard)
    return out


def analysis_columns(table: str) -> list[str]:
    return [c for c in schema.table(table).names if c not in UNREAD_COLUMNS]


def analysis_metrics(extra: Iterable[str] = ()) -> list[str]:
    """Metrics analysis reads: figures of merit (metrics.is_merit), the time bases (a case's time
    when it has nothing else), the power per-watt figures divide by, and `extra` (a --metric asked
    for, a reference's metric)."""
    from aifbench import metrics as metric_dict

    read = {m for m in metric_dict.METRICS if metric_dict.is_merit(m)} | set(metric_dict.names(role="time_base"))
    return sorted(read | {metric_dict.POWER} | set(extra))


def analysis_filter(stats: Iterable[str] = ANALYSIS_STATS, metrics: Iterable[str] | None = None) -> Expression:
    """Rows analysis needs: the given statistics of `metrics` (default analysis_metrics()), and
    every row that did not end ok."""
    import pyarrow.dataset as ds

    wanted = analysis_metrics() if metrics is None else sorted(set(metrics))
    return (ds.field("stat").isin(sorted(set(stats))) & ds.field("metric").isin(wanted)) | (ds.field("status") != "ok")


def load_analysis(shards: list[Path], stats: Iterable[str] = ANALYSIS_STATS, full: bool = False,
                  metrics: Iterable[str] = (), side: dict[str, Side] | None = None) -> Results:
    """Metrics and runs of `shards` with analysis' columns and rows (analysis_filter; `metrics`
    added to analysis_metrics()); samples of runs up to SAMPLES_MAX_RANKS ranks; no telemetry.
    `full`: every table, column and row (export). `side`: store.load's second views of metrics
    or runs, read in the same pass (Results.side)."""
    if full:
        return store.load(shards)
    cols = {"metrics": analysis_columns("metrics"), "runs": [c for c in schema.table("runs").names if c not in
                                                             RUNS_UNREAD]}
    main = store.load(shards, tables=("metrics", "runs"), columns=cols, categorical=True,
                      filters={"metrics": analysis_filter(stats, analysis_metrics(metrics))}, side=side)
    ranks = main.tables["metrics"].groupby("run_id")["rank"].nunique()
    small = {str(r) for r, n in ranks.items() if n <= SAMPLES_MAX_RANKS}
    few = [s for s in shards if s.parent.name in small]
    samples = store.load(few, tables=("samples",)).tables["samples"] if few else schema.empty("samples")
    tables = dict(main.tables, samples=samples)
    tables["metrics"] = categorical(tables["metrics"])
    return Results(tables, main.skipped, main.side)


CATEGORICAL = ("run_id", "case_id", "benchmark", "params", "metric", "unit", "stat", "peak_source", "node",
               "device", "device_name", "system", "partition", "status", "reason", "flags")


def categorical(df: pd.DataFrame) -> pd.DataFrame:
    """Repetitive text columns as categories (sorted, with "" among them so fillna("") works):
    selecting rows then moves integer codes, not strings — what keeps 10^5-rank runs fast."""
    from aifbench.results.read import sorted_categories

    for c in CATEGORICAL:
        if c in df.columns and len(df):
            df[c] = sorted_categories(df[c])
    return df


def selected_shards(paths: Iterable[Path | str] = (), include_reference: bool = True,
                    reference_dir: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(shards, reference shards) that select() reads: below `paths` (default `results/`) minus
    baselines and reference runs, and the reference runs when included. ConfigError for a
    path that does not exist."""
    given = [Path(p) for p in paths] or [DEFAULT_RESULTS]
    existing = [p for p in given if p.exists()]
    missing = [p for p in given if not p.exists()]
    if missing and (existing or given != [DEFAULT_RESULTS]):
        raise no_results(missing[0])
    ref_dirs = [Path(reference_dir) if reference_dir else DEFAULT_RESULTS / REFERENCE_DIR]
    ref_dirs += [p / REFERENCE_DIR for p in existing if p.is_dir()]
    ref_dirs = [d for d in dict.fromkeys(ref_dirs) if d.is_dir()]
    exclude = [p / BASELINES_DIR for p in existing if p.is_dir()] + ref_dirs
    return _shards(existing, exclude), (_shards(ref_dirs, []) if include_reference else [])


def select(paths: Iterable[Path | str] = (), *, include_reference: bool = True,
           reference_dir: Path | None = None, stats: Iterable[str] = ANALYSIS_STATS,
           full: bool = True, metrics: Iterable[str] = ()) -> Selection:
    """Load results below `paths` (default `results/`) and the reference runs.

    Reference runs are those under `reference_dir` (default `results/reference`) and under
    `<path>/reference` of every given directory. `full` (default) reads every table, column and
    row; full=False only what analysis needs (load_analysis: what compare, report and validate
    use at 10^5 ranks), `stats` adding statistics (a reference may judge p5). Raises ConfigError when nothing at all is
    found (an empty selection).
    """
    shards, ref_shards = selected_shards(paths, include_reference, reference_dir)
    loaded = dedupe(load_analysis(sorted(set(shards) | set(ref_shards)), stats, full, metrics))
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
    given = [Path(p) for p in paths] or [DEFAULT_RESULTS]
    exclude = [] if baselines else [b for p in given if p.is_dir() for b in p.rglob(BASELINES_DIR) if b.is_dir()]
    return dedupe(store.load(_shards(given, exclude)))


def load_runs(paths: Iterable[Path], stats: Iterable[str] = ANALYSIS_STATS, full: bool = True,
              metrics: Iterable[str] = (), side: dict[str, Side] | None = None) -> Results:
    """Load exactly these paths (a run directory, a baseline) without defaults; deduplicated.
    full=False: only analysis' columns and rows (load_analysis), with its `side` views."""
    return dedupe(load_analysis(store.find_shards(list(paths)), stats, full, metrics, side))


def text_values(values: pd.Series) -> np.ndarray:
    """A text column as a numpy object array of str: a categorical's by its codes (one Python
    string per category, not per row of 10^7), others as astype(str) gives them."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        if not len(codes) or codes.min() >= 0:
            out: np.ndarray = np.asarray([str(c) for c in values.cat.categories], dtype=object)[codes]
            return out
    texts: np.ndarray = values.astype(str).to_numpy(dtype=object)
    return texts


def per_distinct(values: pd.Series | list[pd.Series], fn: Callable[[Any], Any]) -> np.ndarray:
    """fn(value) of every row as an object array, fn called once per distinct value (10^7 rows
    hold a few distinct texts; a missing value is passed as it is). Several columns: fn gets
    the tuple of a row's values, once per distinct tuple (their codes combined, no tuple per row)."""
    if isinstance(values, pd.Series):
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        firsts: list[Any] = list(uniques)
    else:
        codes = np.zeros(len(values[0]), dtype=np.int64)
        for col in values:
            mine, distinct = pd.factorize(col, use_na_sentinel=False)
            codes, _ = pd.factorize(codes * len(distinct) + mine)  # renumbered: never beyond the row count
        _, at = np.unique(codes, return_index=True)
        firsts = [tuple(col.iloc[i] for col in values) for i in at]
    out = np.empty(len(firsts), dtype=object)
    out[:] = [fn(u) for u in firsts]
    taken: np.ndarray = out[codes]
    return taken


def headline(metrics: pd.DataFrame, status_ok: bool = True) -> pd.DataFrame:
    """One row per (run, case, rank, metric): the headline statistic's row.

    Adds `case_key` (benchmark + parameters, comparable across runs) and `label` (short text).
    """
    # which rows, found on the key columns alone; then one copy of those rows (not of all 10^7)
    rank = metrics["stat"].map({s: float(i) for i, s in enumerate(HEADLINE_STATS)}).astype(float).to_numpy()
    keep = ~np.isnan(rank)
    if status_ok:
        keep &= (metrics["status"] == "ok").to_numpy(dtype=bool)
    key = ["run_id", "case_id", "rank", "metric"]
    first = metrics.loc[keep, key].assign(_o=rank[keep]).sort_values("_o", kind="stable").drop_duplicates(key)
    df = metrics.loc[np.sort(first.index.to_numpy())].copy(deep=False)  # loc copied the rows once
    # once per case, not per rank: one text per case id, mapped (categorical in, categorical out)
    cases = df[["case_id", "benchmark", "params"]].drop_duplicates()
    if cases["case_id"].is_unique:
        keys = {str(c): f"{b} {p}" for c, b, p in cases.itertuples(index=False)}
        labels = {str(c): case_label(str(b), str(p)) for c, b, p in cases.itertuples(index=False)}
        case = df["case_id"].astype("category").cat.remove_unused_categories()
        for col, text in (("case_key", keys), ("label", labels)):
            names = [text[str(c)] for c in case.cat.categories]
            df[col] = pd.Categorical.from_codes(case.cat.codes, names) if len(set(names)) == len(names) \
                else case.astype(str).map(text)
    else:
        df["case_key"] = df["benchmark"].astype(str) + " " + df["params"].astype(str)
        df["label"] = [case_label(b, p) for b, p in zip(df["benchmark"].astype(str), df["params"].astype(str))]
    return _comparable_keys(df).sort_index().reset_index(drop=True)


HARNESS_KNOBS: dict[str, tuple[str, ...]] = {"collectives": ("inner", "gpu_only")}
"""parameters that change how aifbench drives a case, not what is measured: left out of `case_key`,
so a collective measured by aifbench and one imported from nccl-tests (aifbench.importers) meet"""
BY_RANKS = ("collectives",)
"""benchmarks whose figures depend on the rank count: `case_key` carries `ranks=<world_size>`"""


def _comparable_keys(df: pd.DataFrame) -> pd.DataFrame:
    """case_key of the benchmarks in HARNESS_KNOBS / BY_RANKS: parameters without the harness knobs,
    plus the rank count (the same op and size at another rank count is another case)."""
    mask = df["benchmark"].astype(str).isin(set(HARNESS_KNOBS) | set(BY_RANKS)).to_numpy()
    if not mask.any():
        return df
    part = df.loc[mask]
    def key(t: tuple[str, str, str]) -> str:  # once per distinct (benchmark, params, ranks), not per row
        b, p, w = t
        params = {k: v for k, v in json.loads(p).items() if k not in HARNESS_KNOBS.get(b, ())}
        return f"{b} {json.dumps(params, sort_keys=True)}" + (f" ranks={w}" if b in BY_RANKS else "")
    keys = per_distinct([part[c].astype(object) if c == "world_size" else part[c] for c in ("benchmark", "params", "world_size")],
                        lambda t: key((str(t[0]), str(t[1]), str(t[2]))))
    case_key = text_values(df["case_key"])  # texts shared by rows (object), not a text per row of 10^7
    case_key[mask] = keys
    df["case_key"] = pd.Series(case_key, index=df.index, dtype=object)
    return df


def case_label(benchmark: str, params_json: str, limit: int | None = 90) -> str:
    """'gemm m=4096 n=4096 k=4096 dtype=fp16': the benchmark and param_text(); cut to `limit`
    characters with '…' (plot labels), whole with limit=None (tables, check names)."""
    text = f"{benchmark} {param_text(benchmark, json.loads(params_json))}".strip()
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def param_text(benchmark: str, params: dict[str, Any]) -> str:
    """The one label rule of a case's parameters, everywhere a case is named: every parameter
    whose value differs from the benchmark's default, in the order its Config declares them
    (parameters it does not declare after, by name), booleans spelled true/false as in TOML;
    'defaults' when none differs. A benchmark without a known Config shows every parameter."""
    defaults = benchmark_defaults(benchmark)
    order = list(defaults) + sorted(k for k in params if k not in defaults)
    text = " ".join(f"{k}={param_value(params[k])}" for k in order
                    if k in params and (k not in defaults or not _same(params[k], defaults[k])))
    return text or ("defaults" if defaults else "")


def param_value(value: object) -> str:
    """A parameter value as a label spells it: true/false, lists as [a, b], the rest as str()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(param_value(v) for v in value) + "]"
    return "none" if value is None else str(value)


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def benchmark_defaults(benchmark: str) -> dict[str, object]:
    """A built-in benchmark's parameter defaults in declaration order ({} for others)."""
    import dataclasses

    from aifbench.benchmarks.configs import CONFIGS

    cls = CONFIGS.get(benchmark)
    if cls is None:
        return {}
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    stored: dict[str, object] = json.loads(json.dumps(out, default=str))  # as stored: tuples as lists
    return stored
