"""Results schema v2: tables, columns, types, units, validation and migrations.

The column reference printed by `aifbench schema` is generated from TABLES, so the docs
cannot drift from the code. Every shard carries `schema_version`; older shards are migrated
on read through MIGRATIONS, newer ones are refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from aifbench import SCHEMA_VERSION as SCHEMA_VERSION  # re-exported: the version the schema writes
from aifbench.errors import SchemaError, one_of

STATUSES = ("ok", "failed", "skipped")

# pandas dtypes for the logical types used below
DTYPES = {
    "string": "string",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "timestamp": "datetime64[ns, UTC]",
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # key of DTYPES
    unit: str
    meaning: str
    required: bool = True  # must be present and non-null in every row


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    meaning: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: str, unit: str, meaning: str, required: bool = True) -> Column:
    return Column(name, type_, unit, meaning, required)


_KEY = (
    _c("schema_version", "int", "", "results schema version of this row"),
    _c("run_id", "string", "", "run identifier: UTC start, suite, random suffix"),
)
_CASE = (
    _c("case_id", "string", "", "stable id of one case: benchmark and its parameters"),
    _c("rank", "int", "", "global rank of the process that measured (0 when alone)"),
)

METRICS_TABLE = Table("metrics", "one row per metric per case per rank (tidy)", _KEY + _CASE + (
    _c("benchmark", "string", "", "registered benchmark name"),
    _c("params", "string", "", "the case's effective parameters, JSON with sorted keys"),
    _c("metric", "string", "", "metric name from the metric dictionary (aifbench schema --metrics)"),
    _c("value", "float", "see unit", "the value; empty when status is not ok", required=False),
    _c("unit", "string", "", "unit of value, fixed per metric by the dictionary"),
    _c("stat", "string", "", "statistic over the samples: median, iqr, p5, p95, min, max, mean, p50, p90, p99, value; A/B metrics (aifbench.ab): mean with ci_low, ci_high (its 95 % paired t interval)"),
    _c("n_samples", "int", "", "number of raw samples behind the value"),
    _c("noisy", "bool", "", "spread (IQR / median) or drift (|median of last third - median of first third| / median) of the timing samples above 10 % (aifbench.timing.NOISE_THRESHOLD); A/B metrics (aifbench.ab): the 95 % interval is wider than the band it is judged against", required=False),
    _c("pct_of_peak", "float", "%", "value / peak * 100; empty when no peak is known", required=False),
    _c("peak", "float", "see unit", "the datasheet peak divided by, in the metric's unit", required=False),
    _c("peak_source", "string", "", "where the peak comes from, or why there is none", required=False),
    _c("detail", "string", "", "how this value was obtained where a metric allows several ways (energy: method=counter scope=gpu)", required=False),
    _c("world_size", "int", "", "number of ranks in the run"),
    _c("node", "string", "", "hostname of the node that measured"),
    _c("device", "string", "", "torch device used: cpu, cuda:0, ..."),
    _c("device_name", "string", "", "device model, e.g. 'NVIDIA H100 80GB HBM3' or the CPU model"),
    _c("system", "string", "", "system profile name (local when run by hand)"),
    _c("partition", "string", "", "Slurm partition, empty outside Slurm", required=False),
    _c("started_utc", "timestamp", "UTC", "start of the case"),
    _c("ended_utc", "timestamp", "UTC", "end of the case"),
    _c("status", "string", "", "ok | failed | skipped"),
    _c("reason", "string", "", "why a case failed or was skipped; empty when ok", required=False),
    _c("flags", "string", "", "telemetry validity flags seen in the window, comma-separated; empty = clean", required=False),
))

SAMPLES_TABLE = Table("samples", "raw samples behind each timed metric", _KEY + _CASE + (
    _c("metric", "string", "", "which quantity was sampled: time_s, itl_s, ..."),
    _c("sample_index", "int", "", "0-based index of the repeat"),
    _c("value", "float", "see unit", "one raw sample"),
    _c("unit", "string", "", "unit of value"),
))

RUNS_TABLE = Table("runs", "provenance: one row per rank (and array task) of a run", _KEY + (
    _c("rank", "int", "", "global rank"),
    _c("world_size", "int", "", "number of ranks"),
    _c("task", "string", "", "shard part: 'main', or the Slurm array task ('a3')"),
    _c("suite", "string", "", "suite name"),
    _c("system", "string", "", "system profile name"),
    _c("partition", "string", "", "Slurm partition", required=False),
    _c("launcher", "string", "", "inprocess | local | slurm"),
    _c("status", "string", "", "running; then ok (every case ended ok or skipped), failed (a case failed) or interrupted (stopped before its last case)"),
    _c("started_utc", "timestamp", "UTC", "start of the run on this rank"),
    _c("ended_utc", "timestamp", "UTC", "end of the run on this rank", required=False),
    _c("config", "string", "", "the effective configuration (suite, overrides, cases), JSON"),
    _c("config_hash", "string", "", "sha256 of config, first 16 hex digits"),
    _c("node", "string", "", "hostname"),
    _c("platform", "string", "", "OS and machine (uname)"),
    _c("cpu_model", "string", "", "CPU model name", required=False),
    _c("cpu_cores", "int", "", "logical CPUs of the node", required=False),
    _c("memory_bytes", "int", "B", "node memory", required=False),
    _c("device", "string", "", "torch device of this rank"),
    _c("device_name", "string", "", "device model"),
    _c("gpu_uuid", "string", "", "GPU UUID", required=False),
    _c("gpu_memory_bytes", "int", "B", "GPU memory", required=False),
    _c("gpu_count", "int", "", "GPUs visible to the process", required=False),
    _c("gpu_pci_device_id", "string", "", "PCI device id of the GPU (0x2330 = H100 SXM5)", required=False),
    _c("driver_version", "string", "", "GPU driver", required=False),
    _c("cuda_version", "string", "", "CUDA runtime torch was built with", required=False),
    _c("nccl_version", "string", "", "NCCL version", required=False),
    _c("cudnn_version", "string", "", "cuDNN version", required=False),
    _c("torch_version", "string", "", "torch version"),
    _c("python_version", "string", "", "Python version"),
    _c("aifbench_version", "string", "", "aifbench version"),
    _c("git_commit", "string", "", "commit of the aifbench checkout, '+dirty' when modified", required=False),
    _c("job_id", "string", "", "the scheduler's job id (Slurm: SLURM_JOB_ID; slurm_job_id before schema v2); empty outside a scheduler", required=False),
    _c("job_step", "string", "", "the job step the rank ran in (Slurm: SLURM_STEP_ID; slurm_step_id before schema v2)", required=False),
    _c("array_job_id", "string", "", "job id of the array the job belongs to (Slurm: SLURM_ARRAY_JOB_ID; slurm_array_job_id before schema v2)", required=False),
    _c("array_task_id", "string", "", "index of the job in its array (Slurm: SLURM_ARRAY_TASK_ID; slurm_array_task_id before schema v2)", required=False),
    _c("node_index", "string", "", "0-based index of the rank's node among the job's nodes (Slurm: SLURM_NODEID; slurm_node_id before schema v2)", required=False),
    _c("job_nodes", "string", "", "the job's nodes as the scheduler lists them (Slurm: SLURM_JOB_NODELIST; slurm_nodelist before schema v2)", required=False),
    _c("modules", "string", "", "modules loaded in the job (LOADEDMODULES, ':'-separated)", required=False),
    _c("container", "string", "", "container image or uenv the rank ran in, as its runtime reports it", required=False),
    _c("environment", "string", "", "software environment the job script asked for (system, modules, uenv or image, venv), JSON", required=False),
    _c("telemetry", "string", "", "telemetry source (nvml, cpu) or 'unavailable: reason'", required=False),
))

TELEMETRY_TABLE = Table("telemetry", "time series sampled during each timed window", _KEY + _CASE + (
    _c("source", "string", "", "nvml | cpu | replay"),
    _c("gpu_index", "int", "", "NVML index of the GPU; empty for CPU sources", required=False),
    _c("gpu_uuid", "string", "", "GPU UUID (matches the CUDA device)", required=False),
    _c("scope", "string", "", "what a reading covers: gpu, module (GH200: + Grace CPU and memory), cpu-package, process, system"),
    _c("window", "string", "", "timed region the reading was sampled in: main (the benchmark's own timed work), "
       "ref, prefill, decode, bare (aifbench.telemetry.regions)", required=False),
    _c("segment", "int", "", "0-based entry of that region: a region timed in several stretches has one segment "
       "per stretch", required=False),
    _c("t_s", "float", "s", "seconds since the region's first poll (gaps between segments included)"),
    _c("field", "string", "", "power_w, sm_clock_mhz, temperature_c, ..."),
    _c("value", "float", "see unit", "the reading", required=False),
    _c("unit", "string", "", "unit of value"),
))

TABLES: dict[str, Table] = {t.name: t for t in (METRICS_TABLE, SAMPLES_TABLE, RUNS_TABLE, TELEMETRY_TABLE)}

# Migrations: MIGRATIONS[v] turns a table at version v into version v + 1.
Migration = Callable[[str, pd.DataFrame], pd.DataFrame]

RENAMED: dict[str, str] = {
    "slurm_job_id": "job_id",
    "slurm_step_id": "job_step",
    "slurm_array_job_id": "array_job_id",
    "slurm_array_task_id": "array_task_id",
    "slurm_node_id": "node_index",
    "slurm_nodelist": "job_nodes",
}
"""schema v1 column -> its v2 name: v2 named the runs table's job columns after no scheduler.
The only change from v1 to v2, so the Parquet reader (results/read.py) reads a v1 file as
current by these names (renamed_in), and MIGRATIONS[1] renames a v1 frame."""
READ_AS_CURRENT = frozenset({1, SCHEMA_VERSION})
"""versions whose rows the reader takes as they are once RENAMED is applied (their rows keep
their schema_version; validate() migrates them)"""


def renamed_in(names: Iterable[str]) -> dict[str, str]:
    """current column -> the v1 name a file with columns `names` stores it under (empty for a
    current file)."""
    have = set(names)
    return {new: old for old, new in RENAMED.items() if old in have and new not in have}


def _v1_to_v2(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """v1 -> v2: the runs table's slurm_* columns take their scheduler-neutral names (RENAMED)."""
    return df.rename(columns={old: new for new, old in renamed_in(df.columns).items()}).assign(schema_version=2)


MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2}


INTERVAL_BOUNDS = ("ci_low", "ci_high")
"""stats that bound a confidence interval: a t interval around a small mean of noisy rounds may
reach below 0 even for a metric that cannot be negative (its mean still cannot)"""


def signed_metrics() -> tuple[str, ...]:
    """The metrics whose value may be negative (metrics.py's trait `signed`)."""
    from aifbench import metrics

    return metrics.names(signed=True)


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise one_of("table", name, TABLES) from None


def migrate(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Bring a table to SCHEMA_VERSION; refuse a newer one."""
    if "schema_version" not in df.columns:
        raise SchemaError(f"{name}: no schema_version column")
    numeric = pd.to_numeric(df["schema_version"], errors="coerce")
    if numeric.isna().any() or (numeric % 1 != 0).any():
        raise SchemaError(f"{name}.schema_version: empty or not an integer in some rows")
    df = df.assign(schema_version=numeric.astype("int64"))
    versions = set(int(v) for v in df["schema_version"].unique())
    newer = [v for v in versions if v > SCHEMA_VERSION]
    if newer:
        raise SchemaError(
            f"{name}: schema version {max(newer)} is newer than this aifbench supports "
            f"({SCHEMA_VERSION}); upgrade aifbench to read it")
    if versions == {SCHEMA_VERSION}:
        return df
    parts = []
    for v in sorted(versions):
        part = df[df["schema_version"] == v]
        # a frame mixing versions carries every version's columns: keep this version's own
        part = part.dropna(axis=1, how="all") if len(versions) > 1 else part
        for step in range(v, SCHEMA_VERSION):
            if step not in MIGRATIONS:
                raise SchemaError(f"{name}: no migration from schema version {step}")
            part = MIGRATIONS[step](name, part)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def validate(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Check and coerce one table to its schema; raise SchemaError naming the problem.

    Returns the frame with exactly the schema's columns, in order, with the schema's dtypes.
    """
    spec = table(name)
    df = migrate(name, df) if len(df) else df
    missing = [c.name for c in spec.columns if c.required and c.name not in df.columns]
    if missing:
        raise SchemaError(f"{name}: missing columns {', '.join(missing)}")
    extra = [c for c in df.columns if c not in spec.names]
    if extra:
        raise SchemaError(f"{name}: unknown columns {', '.join(extra)}")
    out = pd.DataFrame(index=df.index)
    for col in spec.columns:
        series = df[col.name] if col.name in df.columns else pd.Series([None] * len(df), index=df.index)
        try:
            out[col.name] = _coerce(series, col.type)
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"{name}.{col.name}: cannot read as {col.type}: {exc}") from None
        if col.required and out[col.name].isna().any():
            raise SchemaError(f"{name}.{col.name}: empty value in a required column")
    for col in spec.columns:
        if col.type == "float" and np.isinf(out[col.name].to_numpy(dtype="float64")).any():
            raise SchemaError(f"{name}.{col.name}: infinite value (allowed: a finite number"
                              f"{'' if col.required else ', or empty'})")
    if "status" in spec.names and name == "metrics":
        bad = set(out["status"].unique()) - set(STATUSES)
        if bad:
            raise SchemaError(f"{name}.status: {sorted(bad)} not in {STATUSES}")
        ok_without_value = (out["status"] == "ok") & out["value"].isna()
        if ok_without_value.any():
            raise SchemaError(f"{name}: a row with status ok has no value (NaN or empty; allowed: a finite number)")
        negative = out[(out["value"] < 0) & ~out["metric"].isin(signed_metrics())
                       & ~out["stat"].isin(INTERVAL_BOUNDS)]
        if len(negative):
            raise SchemaError(f"{name}.value: {negative['value'].iloc[0]:g} for metric "
                              f"{negative['metric'].iloc[0]!r}, which cannot be negative (allowed: >= 0)")
    if "params" in spec.names and name == "metrics":
        for text in out["params"].unique():
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise SchemaError(f"{name}.params: not JSON ({exc}): {text[:60]!r}") from None
    return out.reset_index(drop=True)


def _coerce(series: pd.Series, type_: str) -> pd.Series:
    if type_ == "timestamp":
        return pd.to_datetime(series, utc=True)
    if type_ == "bool":
        return series.astype("boolean")
    if type_ == "int":
        numeric = pd.to_numeric(series)
        if (numeric.dropna() % 1 != 0).any():
            raise ValueError("non-integer value")
        return numeric.astype("Int64")
    if type_ == "float":
        return pd.to_numeric(series).astype("float64")
    return series.astype("string")


def empty(name: str) -> pd.DataFrame:
    """An empty frame with the table's columns and dtypes."""
    spec = table(name)
    return pd.DataFrame({c.name: pd.Series(dtype=DTYPES[c.type]) for c in spec.columns})


def reference_markdown() -> str:
    """The column reference of every table, as Markdown (what `aifbench schema` prints)."""
    lines = [f"# aifbench results schema v{SCHEMA_VERSION}", ""]
    for spec in TABLES.values():
        lines += [f"## {spec.name}", "", spec.meaning, "",
                  "| column | type | unit | required | meaning |", "|---|---|---|---|---|"]
        for c in spec.columns:
            meaning = c.meaning.replace("|", "\\|")  # a '|' inside a cell would split it
            lines.append(f"| {c.name} | {c.type} | {c.unit} | {'yes' if c.required else ''} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
