"""Metrics-table rows: the one place a stored row is assembled.

The runner (a case it measured, failed or skipped) and `collect` (a case a Slurm task never
reported) both describe the case in a `CaseColumns` and get its rows from `case_rows`; the
keys, their order and their number come from the schema's column list (`METRICS_TABLE`), so a
row cannot drift from what `schema.validate` expects. Torch-free: plain values and `Metric`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from aifbench import SCHEMA_VERSION
from aifbench.measurement import Metric
from aifbench.results.schema import METRICS_TABLE

PLACEHOLDER_METRIC = "time_s"
"""the metric of a case that measured nothing when its benchmark declares none"""


@dataclass(frozen=True, kw_only=True, slots=True)
class CaseColumns:
    """The columns every metrics row of one case on one rank shares (schema: metrics table)."""

    run_id: str
    case_id: str
    rank: int
    benchmark: str
    params: Mapping[str, Any]
    """the case's effective parameters; stored as JSON with sorted keys"""
    world_size: int
    node: str
    device: str
    device_name: str
    system: str
    partition: str
    started_utc: datetime
    ended_utc: datetime
    status: str
    """ok | failed | skipped"""
    reason: str = ""
    flags: str = ""
    """telemetry validity flags, comma-separated"""


def _metric_columns(m: Metric, ok: bool) -> dict[str, Any]:
    return {"metric": m.metric, "value": m.value if ok else math.nan, "unit": m.unit, "stat": m.stat,
            "n_samples": m.n_samples, "noisy": m.noisy, "peak": m.peak, "peak_source": m.peak_source,
            "pct_of_peak": m.pct_of_peak if ok else None, "detail": m.detail}


def _row(values: dict[str, Any]) -> dict[str, Any]:
    """`values` in the schema's column order; a key too many or too few is a programming error."""
    names = METRICS_TABLE.names
    if set(values) != set(names):
        raise ValueError(f"metrics row keys differ from the schema: extra {sorted(set(values) - set(names))}, "
                         f"missing {sorted(set(names) - set(values))}")
    return {name: values[name] for name in names}


def case_rows(case: CaseColumns, metrics: Sequence[Metric], emits: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The metrics rows of one case: one per metric when the case is ok; otherwise one row
    without a value for `placeholder(emits)` (the benchmark's first declared metric)."""
    ok = case.status == "ok"
    common = asdict(case)
    common.update(schema_version=SCHEMA_VERSION, params=json.dumps(dict(case.params), sort_keys=True))
    chosen = list(metrics) if ok else [placeholder(emits)]
    return [_row({**common, **_metric_columns(m, ok)}) for m in chosen]


def placeholder(emits: Sequence[str] = ()) -> Metric:
    """The one metric of a case that measured nothing (failed or skipped): its benchmark's first
    declared metric, no value, no samples."""
    return Metric(emits[0] if emits else PLACEHOLDER_METRIC, math.nan, stat="median", n_samples=0)
