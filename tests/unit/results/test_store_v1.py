"""Stores written before schema v2 (the runs table's job columns named slurm_*) are still read:
loose shards, compacted files (read whole, and scanned), an export of them, and the committed
reference runs, which are such a store."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifbench import SCHEMA_VERSION
from aifbench.results import compact, read, schema, store
from tests._analysis_data import RunSpec, gemm, write_run

RUN = "20260105T120000Z-old-00000a"
REFERENCE = Path(__file__).resolve().parents[3] / "results" / "reference" / "20261204T183449Z-gpu-kernels-14a3a2"


def _to_v1(path: Path, job: int) -> None:
    """Rewrite a runs shard as v1 wrote it: version 1, the job columns under their slurm_* names."""
    t = pq.read_table(path)
    t = t.set_column(t.schema.get_field_index("schema_version"), "schema_version",
                     pa.array([1] * t.num_rows, t.schema.field("schema_version").type))
    for name, value in (("job_id", str(job)), ("array_task_id", str(job % 7)), ("job_nodes", "n[0-1]")):
        t = t.set_column(t.schema.get_field_index(name), name, pa.array([value] * t.num_rows, pa.string()))
    old = {new: old for old, new in schema.RENAMED.items()}
    pq.write_table(t.rename_columns([old.get(c, c) for c in t.column_names]), path)


@pytest.fixture
def v1_store(tmp_path):
    run_dir = write_run(tmp_path, RunSpec(run_id=RUN, nodes=("n0", "n1"), gpus_per_node=2, cases=[gemm(1024)]))
    shards = sorted(run_dir.glob("runs.*.parquet"))
    assert len(shards) == 4
    for rank, path in enumerate(shards):
        _to_v1(path, 1000 + rank)
        assert "slurm_job_id" in pq.read_schema(path).names and "job_id" not in pq.read_schema(path).names
    return run_dir


def _jobs(run_dir: Path) -> list[tuple[int, str, str, str]]:
    res = store.load([run_dir])
    assert res.skipped == []
    runs = res.runs.sort_values("rank")
    return list(zip(runs["rank"], runs["job_id"], runs["array_task_id"], runs["job_nodes"]))


WANT = [(r, str(1000 + r), str((1000 + r) % 7), "n[0-1]") for r in range(4)]


def test_a_v1_store_is_read_by_the_new_column_names(v1_store):
    assert _jobs(v1_store) == WANT
    assert set(store.load([v1_store]).runs["schema_version"]) == {1}  # read as it is; validate() migrates


@pytest.mark.parametrize("scanned", [False, True])
def test_a_compacted_v1_store_keeps_its_job_ids(v1_store, monkeypatch, scanned):
    """Compaction of v1 shards, and v1 compacted files: read whole (small) or scanned (large)."""
    if scanned:
        monkeypatch.setattr(read, "SMALL_COMPACTED", 0)
    assert compact.compact(v1_store).changed
    assert not list(v1_store.glob("runs.rank*.parquet"))  # merged into the compacted file
    assert _jobs(v1_store) == WANT
    (merged,) = [p for p in v1_store.glob("*.parquet") if p.name.startswith("runs") and "rank" not in p.name]
    t = pq.read_table(merged)  # a compacted file as v1 wrote it: the old names on disk
    footer = pq.read_metadata(merged).metadata
    t = t.rename_columns([{v: k for k, v in schema.RENAMED.items()}.get(c, c) for c in t.column_names])
    with pq.ParquetWriter(merged, t.schema) as writer:
        writer.write_table(t)
        writer.add_key_value_metadata({k: v for k, v in footer.items() if k != b"ARROW:schema"})
    assert "slurm_job_id" in pq.read_schema(merged).names
    assert _jobs(v1_store) == WANT


def test_an_export_of_a_v1_store_arrives_as_the_current_version(v1_store, tmp_path):
    from aifbench.analysis.data import load_runs
    from aifbench.analysis.exchange import export_shards, import_bundle

    bundle = tmp_path / "old.parquet"
    export_shards(store.find_shards([v1_store]), bundle)
    import_bundle(bundle, tmp_path / "b")
    runs = load_runs([tmp_path / "b"]).tables["runs"].sort_values("rank")
    assert list(runs["job_id"]) == [w[1] for w in WANT] and set(runs["schema_version"]) == {SCHEMA_VERSION}


def test_a_v1_bundle_is_imported_by_the_new_column_names(v1_store, tmp_path):
    """A bundle an older aifbench exported: its columns by the v1 names, labelled version 1."""
    from aifbench.analysis.data import load_runs
    from aifbench.analysis.exchange import export_shards, import_bundle

    bundle = tmp_path / "b.parquet"
    export_shards(store.find_shards([v1_store]), bundle)
    t = pq.read_table(bundle)
    old = {new: o for o, new in schema.RENAMED.items()}
    t = t.rename_columns([old.get(c, c) for c in t.column_names])
    t = t.set_column(t.schema.get_field_index("schema_version"), "schema_version",
                     pa.array([1] * t.num_rows, t.schema.field("schema_version").type))
    assert "slurm_job_id" in t.column_names and "job_id" not in t.column_names
    footer = pq.read_metadata(bundle).metadata
    v1 = tmp_path / "v1.parquet"
    with pq.ParquetWriter(v1, t.schema) as writer:
        writer.write_table(t)
        writer.add_key_value_metadata({k: v for k, v in footer.items() if k != b"ARROW:schema"})
    import_bundle(v1, tmp_path / "in")
    runs = load_runs([tmp_path / "in"]).tables["runs"].sort_values("rank")
    assert list(runs["job_id"]) == [w[1] for w in WANT] and set(runs["schema_version"]) == {SCHEMA_VERSION}


def test_the_committed_reference_runs_are_a_v1_store_and_read_whole():
    assert "slurm_job_id" in pq.read_schema(next(REFERENCE.glob("runs.*.parquet"))).names
    res = store.load([REFERENCE])
    assert res.skipped == [] and len(res.metrics) and list(res.runs["schema_version"]) == [1]
    assert "job_id" in res.runs.columns and "slurm_job_id" not in res.runs.columns
