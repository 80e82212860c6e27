"""Schema v1: round trip, validation errors, versions and migrations."""

import json
import math
from datetime import datetime, timezone

import pandas as pd
import pytest

from aifbench import SCHEMA_VERSION
from aifbench.errors import SchemaError
from aifbench.results import schema
from aifbench.results.store import read_shard, shard_name, write_shard


def metric_row(**over):
    now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    row = dict(schema_version=SCHEMA_VERSION, run_id="r1", case_id="0000-gemm-x", rank=0, benchmark="gemm",
               params=json.dumps({"m": 8}), metric="tflops", value=1.5, unit="TFLOP/s", stat="median",
               n_samples=5, noisy=False, pct_of_peak=None, peak=None, peak_source="", detail="", world_size=1,
               node="n1", device="cpu", device_name="cpu", system="local", partition="", started_utc=now,
               ended_utc=now, status="ok", reason="", flags="")
    row.update(over)
    return row


def test_round_trip_preserves_values_and_types(tmp_path):
    rows = [metric_row(), metric_row(metric="time_s", unit="s", value=0.25, stat="p95"),
            metric_row(status="failed", value=math.nan, reason="RuntimeError: out of memory")]
    path = write_shard(tmp_path / shard_name("metrics", 0), "metrics", pd.DataFrame(rows))
    table, back = read_shard(path)
    assert table == "metrics"
    assert list(back.columns) == schema.METRICS_TABLE.names
    assert back.loc[1, "value"] == 0.25 and back.loc[1, "stat"] == "p95"
    assert str(back["rank"].dtype) == "Int64"
    assert back.loc[2, "reason"] == "RuntimeError: out of memory" and pd.isna(back.loc[2, "value"])
    assert back.loc[0, "started_utc"] == pd.Timestamp("2026-11-20", tz="UTC")


@pytest.mark.parametrize("change, message", [
    ({"status": "done"}, "status"),
    ({"value": None}, "status ok has no value"),
    ({"params": "{not json"}, "params"),
    ({"rank": 1.5}, "rank"),
    ({"run_id": None}, "run_id"),
])
def test_invalid_rows_are_refused_with_the_column_named(change, message):
    with pytest.raises(SchemaError, match=message):
        schema.validate("metrics", pd.DataFrame([metric_row(**change)]))


def test_missing_and_unknown_columns():
    df = pd.DataFrame([metric_row()])
    with pytest.raises(SchemaError, match="missing columns metric"):
        schema.validate("metrics", df.drop(columns=["metric"]))
    with pytest.raises(SchemaError, match="unknown columns secret"):
        schema.validate("metrics", df.assign(secret="x"))


def test_newer_schema_is_refused():
    with pytest.raises(SchemaError, match="newer than this aifbench supports"):
        schema.validate("metrics", pd.DataFrame([metric_row(schema_version=SCHEMA_VERSION + 1)]))


def test_older_schema_goes_through_the_migration_chain(monkeypatch):
    """A 'version 0' frame (there was none: no migration) goes 0 -> 1 (patched in) -> 2 (v1 -> v2)."""
    assert 0 not in schema.MIGRATIONS and set(schema.MIGRATIONS) == set(range(1, SCHEMA_VERSION))
    old = pd.DataFrame([metric_row(schema_version=0)]).drop(columns=["detail"])
    with pytest.raises(SchemaError, match="no migration"):
        schema.validate("metrics", old)

    def upgrade(table, df):
        return df.assign(schema_version=df["schema_version"] + 1, detail="migrated")

    monkeypatch.setitem(schema.MIGRATIONS, 0, upgrade)
    out = schema.validate("metrics", old)
    assert out.loc[0, "detail"] == "migrated" and out.loc[0, "schema_version"] == SCHEMA_VERSION


def test_v1_job_columns_take_their_scheduler_neutral_names():
    """v2 renamed the runs table's slurm_* columns; a v1 frame is migrated, its values kept."""
    assert set(schema.RENAMED.values()) <= set(schema.RUNS_TABLE.names)
    assert not [c for c in schema.RUNS_TABLE.names if c.startswith("slurm_")]
    current = schema.empty("runs").columns
    v1 = {c: None for c in current if c not in schema.RENAMED.values()}
    v1.update(schema_version=1, run_id="r", rank=0, world_size=2, task="main", suite="s", system="x", launcher="slurm",
              status="ok", started_utc="2026-01-01T00:00:00Z", config="{}", config_hash="h", node="n1", platform="p",
              device="cpu", device_name="cpu", torch_version="2", python_version="3", aifbench_version="0.1.0",
              slurm_job_id="12", slurm_step_id="0", slurm_array_job_id="11", slurm_array_task_id="3",
              slurm_node_id="1", slurm_nodelist="n[1-2]")
    out = schema.validate("runs", pd.DataFrame([v1]))
    row = out.iloc[0]
    assert (row["schema_version"], row["job_id"], row["job_step"], row["array_job_id"], row["array_task_id"],
            row["node_index"], row["job_nodes"]) == (SCHEMA_VERSION, "12", "0", "11", "3", "1", "n[1-2]")


def test_reference_is_generated_from_the_code():
    text = schema.reference_markdown()
    for t in schema.TABLES.values():
        assert f"## {t.name}" in text
        for c in t.columns:
            assert f"| {c.name} | {c.type} |" in text


def test_a_migration_may_rename_columns_in_a_mixed_version_frame(monkeypatch):
    current = dict(schema_version=SCHEMA_VERSION, run_id="r", case_id="c", rank=0, metric="time_s",
                   sample_index=0, value=1.0, unit="s")
    old = dict(current, schema_version=SCHEMA_VERSION - 1, sample_index=1, val=2.0)
    del old["value"]

    def rename(table, df):
        return df.rename(columns={"val": "value"}).assign(schema_version=df["schema_version"] + 1)

    monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION - 1, rename)
    out = schema.validate("samples", pd.DataFrame([current, old]))
    assert sorted(out["value"]) == [1.0, 2.0] and set(out["schema_version"]) == {SCHEMA_VERSION}


@pytest.mark.parametrize("bad", ["abc", None, 1.5])
def test_a_missing_or_non_integer_schema_version_is_refused(bad):
    with pytest.raises(SchemaError, match="schema_version"):
        schema.validate("metrics", pd.DataFrame([metric_row(), metric_row(schema_version=bad)]))
