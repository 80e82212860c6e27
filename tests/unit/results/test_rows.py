"""Metrics rows are built in one place (results/rows.py) with exactly the schema's columns: the
runner's rows (ok, failed, skipped) and collect's failed row for a case a task never reported."""

from dataclasses import dataclass, fields
from datetime import datetime, timezone

import pandas as pd
import pytest

from aifbench.benchmarks import registry
from aifbench.benchmarks.base import Benchmark, Measurement, Metric, param
from aifbench.config import load_suite
from aifbench.launch import collect
from aifbench.launch.base import JobInfo
from aifbench.launch.jobspec import Submission
from aifbench.plan import Plan, build_plan
from aifbench.results import rows, schema
from aifbench.runner import execute
from aifbench.telemetry.config import TelemetryConfig
from tests.conftest import write


@dataclass(frozen=True, kw_only=True, slots=True)
class RowProbeConfig:
    behaviour: str = param("ok", "what the probe does", choices=("ok", "crash", "skip"))


@registry.register
class RowProbe(Benchmark):
    name = "test_row_probe"
    description = "a benchmark that succeeds, crashes or skips as its case says"
    Config = RowProbeConfig
    emits = ("gbps", "time_s")

    def skip_reason(self):
        return "asked to skip" if self.config.behaviour == "skip" else None

    def check(self):
        pass

    def measure(self, timer):
        if self.config.behaviour == "crash":
            raise RuntimeError("simulated failure")
        stats = timer.time(lambda: sum(range(100)), warmup=0, repeats=3)
        return Measurement([Metric("time_s", stats.median_s, n_samples=stats.n, peak=1.0, peak_source="test"),
                            Metric("gbps", 2.0, stat="max", noisy=True)], {"time_s": stats.samples_s})


SUITE = """
[suite]
name = "rows"
[[case]]
benchmark = "test_row_probe"
sweep = { behaviour = ["ok", "crash", "skip"] }
"""

PY_TYPES = {"string": str, "int": int, "float": float, "bool": bool, "timestamp": datetime}


@pytest.fixture
def built(monkeypatch):
    """Every row rows.case_rows returns while the test runs, with who asked for it."""
    seen: list[tuple[str, dict]] = []
    real = rows.case_rows

    def spy(case, metrics, emits=()):
        out = real(case, metrics, emits)
        seen.extend((case.status, r) for r in out)
        return out

    monkeypatch.setattr(rows, "case_rows", spy)
    return seen


def _check_types(row: dict) -> None:
    assert list(row) == schema.METRICS_TABLE.names  # exactly the schema's columns, in its order
    for col in schema.METRICS_TABLE.columns:
        value = row[col.name]
        if value is None or (col.type == "float" and value != value):  # empty: None, or NaN for floats
            assert not col.required or col.name == "value", f"{col.name} is required but empty"
            continue
        assert isinstance(value, PY_TYPES[col.type]), f"{col.name}: {value!r} is not {col.type}"
        assert not (col.type == "int" and isinstance(value, bool)), col.name
        if col.type == "timestamp":
            assert value.tzinfo is not None, f"{col.name} is not timezone-aware"


def _runner_rows(tmp_path) -> Plan:
    suite = load_suite(str(write(tmp_path / "rows.toml", SUITE)))
    plan = build_plan(suite, run_id="rows-run", device="cpu", results_root=tmp_path / "res",
                      telemetry=TelemetryConfig(interval_s=0))
    execute(plan)
    return plan


def test_runner_rows_have_exactly_the_schema_columns(tmp_path, built):
    _runner_rows(tmp_path)
    assert sorted({status for status, _ in built}) == ["failed", "ok", "skipped"]
    for _, row in built:
        _check_types(row)
    ok = [r for s, r in built if s == "ok"]
    assert {r["metric"] for r in ok} == {"time_s", "gbps"}
    timed = next(r for r in ok if r["metric"] == "time_s")
    assert timed["pct_of_peak"] == pytest.approx(100 * timed["value"]) and timed["unit"] == "s"
    unmeasured = [r for s, r in built if s != "ok"]
    assert [r["metric"] for r in unmeasured] == ["gbps", "gbps"]  # the benchmark's first metric, no value
    assert all(r["value"] != r["value"] and r["n_samples"] == 0 for r in unmeasured)
    assert schema.validate("metrics", pd.DataFrame([r for _, r in built]))["status"].tolist() == \
        [s for s, _ in built]


def test_collect_failed_row_comes_from_the_same_builder(tmp_path, built):
    plan = _runner_rows(tmp_path)
    built.clear()
    record = Submission(run_id=plan.run_id, system="local-slurm", partition="debug", scheduler="slurm",
                        mode="array", folder=str(tmp_path), results_root=str(tmp_path / "res"),
                        submitted_utc="2026-12-04T10:00:00+00:00", nodes=2, tasks_per_node=2)
    info = JobInfo("7_1", "TIMEOUT", "TIMEOUT", nodes="n1")
    now = datetime(2026, 12, 4, 11, tzinfo=timezone.utc)
    row = collect.failed_row(plan.cases[0], plan, record, info, 3, "slurm job 7_1 TIMEOUT", now)
    assert [r for _, r in built] == [row]  # collect asked results/rows.py, not a copy of its own
    _check_types(row)
    assert (row["status"], row["metric"], row["world_size"], row["rank"], row["node"]) == \
        ("failed", "gbps", 4, 3, "n1")
    assert row["started_utc"] == datetime(2026, 12, 4, 10, tzinfo=timezone.utc) and row["ended_utc"] == now
    schema.validate("metrics", pd.DataFrame([row]))


def test_case_columns_and_metric_columns_are_the_schema():
    """The row's keys have one source: CaseColumns + a Metric's columns + schema_version."""
    case = {f.name for f in fields(rows.CaseColumns)}
    metric = set(rows._metric_columns(Metric("time_s", 1.0), True))
    assert case | metric | {"schema_version"} == set(schema.METRICS_TABLE.names)
    assert not case & metric


def test_a_row_that_disagrees_with_the_schema_is_refused():
    with pytest.raises(ValueError, match="extra \\['colour'\\]"):
        rows._row({name: None for name in schema.METRICS_TABLE.names} | {"colour": "red"})
