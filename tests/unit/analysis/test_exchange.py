"""export / import between sites: one bundle, idempotent import, newer schema refused, older migrated."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifbench import SCHEMA_VERSION
from aifbench.analysis import exchange
from aifbench.analysis.data import KEYS, load_runs, select
from aifbench.cli import main
from aifbench.errors import SchemaError
from aifbench.results import schema
from tests._analysis_data import RunSpec, gemm, membw, write_run


@pytest.fixture(scope="module")
def site_a(tmp_path_factory) -> Path:
    """Site A's store: a real smoke run (GEMM, memory bandwidth, CPU telemetry) plus a 2-rank GPU-style run."""
    root = tmp_path_factory.mktemp("site_a") / "results"
    assert main(["run", "smoke", "--only", "gemm,membw", "--results", str(root), "--set", "timing.repeats=3"]) == 0
    write_run(root, RunSpec(run_id="20260105T120000Z-gpu-00000a", nodes=("n1",), gpus_per_node=2, power_w=600.0,
                            cases=[gemm(4096), membw(1 << 28)], repeats=5))
    return root


def _counts(root: Path) -> dict[str, int]:
    r = load_runs([root])
    return {name: len(df) for name, df in r.tables.items()}


def _sorted(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return df.sort_values(list(KEYS[name])).reset_index(drop=True)


def test_round_trip_and_second_import_adds_nothing(site_a, tmp_path, capsys):
    bundle = tmp_path / "a.parquet"
    assert main(["export", str(site_a), "-o", str(bundle)]) == 0
    assert "2 run(s)" in capsys.readouterr().out
    meta = exchange.bundle_meta(bundle)
    assert meta["schema_version"] == SCHEMA_VERSION and meta["rows"]["metrics"] > 0
    assert set(pq.read_table(bundle).column("table").to_pylist()) == {"metrics", "samples", "runs", "telemetry"} - (
        set() if meta["rows"]["telemetry"] else {"telemetry"})

    site_b = tmp_path / "site_b"
    assert main(["import", str(bundle), "--results", str(site_b)]) == 0
    assert "new rows" in capsys.readouterr().out
    original, imported = load_runs([site_a]), load_runs([site_b])
    for name in schema.TABLES:
        pd.testing.assert_frame_equal(_sorted(original.tables[name], name), _sorted(imported.tables[name], name))

    before = _counts(site_b)
    shards = sorted(p.name for p in site_b.rglob("*.parquet"))
    assert main(["import", str(bundle), "--results", str(site_b)]) == 0
    assert "nothing new" in capsys.readouterr().out
    assert _counts(site_b) == before and sorted(p.name for p in site_b.rglob("*.parquet")) == shards


def test_import_adds_only_what_is_missing(site_a, tmp_path):
    bundle = tmp_path / "a.parquet"
    exchange.export(select([site_a], include_reference=False).results, bundle)
    site_b = tmp_path / "site_b"
    write_run(site_b, RunSpec(run_id="20260105T120000Z-gpu-00000a", nodes=("n1",), gpus_per_node=2, power_w=600.0,
                              cases=[gemm(4096), membw(1 << 28)], repeats=5))  # the same run, already here
    here = _counts(site_b)
    added = exchange.import_bundle(bundle, site_b)
    smoke_rows = {k: v - here[k] for k, v in _counts(site_a).items()}
    assert added == smoke_rows  # only the smoke run's rows were new
    assert not load_runs([site_b]).tables["metrics"].duplicated(list(KEYS["metrics"])).any()


def _rewrite(bundle: Path, out: Path, edit, meta_version: int | None = None) -> Path:
    table = pq.read_table(bundle)
    meta = json.loads(table.schema.metadata[exchange.META_KEY])
    df = edit(table.to_pandas())
    if meta_version is not None:
        meta["schema_version"] = meta_version
    t = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(t.replace_schema_metadata({exchange.META_KEY: json.dumps(meta).encode()}), out)
    return out


def test_newer_schema_is_refused_with_a_clear_message(site_a, tmp_path, capsys):
    bundle = tmp_path / "a.parquet"
    exchange.export(select([site_a], include_reference=False).results, bundle)
    newer = _rewrite(bundle, tmp_path / "newer.parquet", lambda df: df.assign(schema_version=SCHEMA_VERSION + 1),
                     meta_version=SCHEMA_VERSION + 1)
    assert main(["import", str(newer), "--results", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this aifbench" in err and "upgrade aifbench" in err
    # rows of a newer version inside a bundle labelled current are refused too, and nothing is written
    sneaky = _rewrite(bundle, tmp_path / "sneaky.parquet",
                      lambda df: df.assign(schema_version=df["schema_version"].where(df["table"] != "samples", 99)))
    with pytest.raises(SchemaError, match="newer than this aifbench supports"):
        exchange.import_bundle(sneaky, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_older_schema_is_migrated(site_a, tmp_path, monkeypatch):
    """A bundle from 'schema 0' (metrics.value was called 'val') arrives migrated to the current version."""
    def v0_to_v1(name: str, df: pd.DataFrame) -> pd.DataFrame:
        df = df.rename(columns={"val": "value"}) if name == "metrics" else df
        return df.assign(schema_version=1)

    monkeypatch.setitem(schema.MIGRATIONS, 0, v0_to_v1)
    bundle = tmp_path / "a.parquet"
    exchange.export(select([site_a], include_reference=False).results, bundle)

    def to_v0(df: pd.DataFrame) -> pd.DataFrame:
        m = df["table"] == "metrics"
        df = df.assign(schema_version=0)
        df["val"] = df["value"].where(m)
        df["value"] = df["value"].where(~m)
        return df

    old = _rewrite(bundle, tmp_path / "old.parquet", to_v0, meta_version=0)
    added = exchange.import_bundle(old, tmp_path / "b")
    got = load_runs([tmp_path / "b"]).tables["metrics"]
    want = load_runs([site_a]).tables["metrics"]
    assert added["metrics"] == len(want) and set(got["schema_version"]) == {SCHEMA_VERSION}
    assert _sorted(got, "metrics")["value"].equals(_sorted(want, "metrics")["value"])


def test_bad_bundles_exit_2(site_a, tmp_path, capsys):
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(plain)
    assert main(["import", str(plain), "--results", str(tmp_path / "b")]) == 2
    assert "not an aifbench bundle" in capsys.readouterr().err
    (tmp_path / "junk.parquet").write_text("junk")
    assert main(["import", str(tmp_path / "junk.parquet")]) == 2
    assert "not a readable Parquet bundle" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "absent.parquet")]) == 2
    assert "no such bundle" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "-o", str(tmp_path / "e.parquet")]) == 2
    assert not (tmp_path / "e.parquet").exists()


def test_export_skips_and_names_a_corrupt_shard(site_a, tmp_path, capsys, caplog):
    import logging
    import shutil

    root = tmp_path / "results"
    shutil.copytree(site_a, root)
    run = next(p for p in root.iterdir() if "smoke" in p.name)
    (run / "samples.rank00000.main.parquet").write_bytes(b"broken")
    with caplog.at_level(logging.WARNING):  # the CLI prints warnings on stderr (tests/unit/cli/test_cli.py)
        assert main(["export", str(root), "-o", str(tmp_path / "x.parquet")]) == 0
    out = capsys.readouterr()
    assert "samples.rank00000.main.parquet" in caplog.text and "2 run(s)" in out.out
    tables = exchange.read_bundle(tmp_path / "x.parquet")
    assert run.name not in set(tables["samples"]["run_id"]) and run.name in set(tables["metrics"]["run_id"])


def _stored(root: Path) -> dict[str, pd.DataFrame]:
    return {name: _sorted(df, name) for name, df in load_runs([root]).tables.items()}


def test_import_checks_the_store_a_rank_window_at_a_time(tmp_path, monkeypatch):
    """An import into a store that holds part of the run (some ranks loose, some compacted)
    reads the stored rows a window of ranks at a time, never more than the window, and adds
    exactly the missing rows, whatever the order of the bundle's rows; a changed value in a
    late window is still a conflict."""
    from aifbench.results import compact

    spec = RunSpec(run_id="20260105T120000Z-gpu-0000aa", nodes=("n1", "n2", "n3", "n4"), gpus_per_node=4,
                   cases=[gemm(4096), membw(1 << 28)], repeats=5)
    site_a = tmp_path / "a"
    write_run(site_a, spec)
    bundle = tmp_path / "a.parquet"
    exchange.export_shards(sorted(site_a.rglob("*.parquet")), bundle)
    shuffled = _rewrite(bundle, tmp_path / "shuffled.parquet", lambda df: df.sample(frac=1.0, random_state=3))

    site_b = tmp_path / "b"  # ranks 0-7 compacted, ranks 8-11 loose, ranks 12-15 missing
    run_b = write_run(site_b, spec)
    for p in run_b.glob("*.parquet"):
        if layout_rank(p) >= 12:
            p.unlink()
    compact.compact(run_b, files=[p for p in run_b.glob("*.parquet") if layout_rank(p) < 8])
    have = _counts(site_b)

    held: list[int] = []
    read_window = exchange.StoredRows._read
    monkeypatch.setattr(exchange.StoredRows, "_read",
                        lambda self, lo, hi: held.append(len(df := read_window(self, lo, hi))) or df)
    monkeypatch.setattr(exchange, "WINDOW_ROWS", 40)
    added = exchange.import_bundle(shuffled, site_b)
    full = _counts(site_a)
    assert added == {k: full[k] - have[k] for k in full} and added["metrics"] > 0
    per_rank = max(len(df) // 16 for df in load_runs([site_a]).tables.values())
    assert len(held) > len(schema.TABLES) and max(held) <= max(40, per_rank)  # windows, never a whole table
    assert max(have.values()) > max(40, per_rank)
    after = _stored(site_b)
    for name, df in _stored(site_a).items():
        pd.testing.assert_frame_equal(df, after[name])
    assert exchange.import_bundle(bundle, site_b) == {name: 0 for name in schema.TABLES}

    def change_rank_11(df: pd.DataFrame) -> pd.DataFrame:
        hit = (df["table"] == "metrics") & (df["rank"] == 11) & (df["status"] == "ok")
        df.loc[hit[hit].index[:1], "value"] = 1.0
        return df
    changed = _rewrite(bundle, tmp_path / "changed.parquet", change_rank_11)
    with pytest.raises(SchemaError, match="1 row.s. conflict"):
        exchange.import_bundle(changed, site_b)
    assert _stored(site_b).keys() == after.keys() and all(
        _stored(site_b)[n].equals(after[n]) for n in after)


def layout_rank(p: Path) -> int:
    """The rank of a loose shard's name (-1 for any other file)."""
    from aifbench.results import layout

    got = layout.shard_id(p.name)
    return got[0] if got else -1


def test_export_gathers_small_batches_into_full_row_groups(tmp_path, monkeypatch):
    """Export reads a few shards at a time but writes row groups of ROW_GROUP_ROWS rows (a row
    group per batch made a footer of 10^4 groups at 24,576 ranks, which import holds whole)."""
    from aifbench.results import read

    spec = RunSpec(run_id="20260105T120000Z-gpu-0000ab", nodes=("n1", "n2"), gpus_per_node=4,
                   cases=[gemm(4096)], repeats=3)
    write_run(tmp_path / "a", spec)
    monkeypatch.setattr(read, "STREAM_SHARDS", 2)  # 4 batches per table
    monkeypatch.setattr(exchange, "ROW_GROUP_ROWS", 25)
    rows, _, _ = exchange.export_shards(sorted((tmp_path / "a").rglob("*.parquet")), tmp_path / "b.parquet")
    meta = pq.read_metadata(tmp_path / "b.parquet")
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    expected = sum(-(-n // 25) for n in rows.values() if n)  # ceil(rows / 25) per table, never one per batch
    assert sum(groups) == sum(rows.values()) and len(groups) <= expected + len(schema.TABLES)
    assert exchange.import_bundle(tmp_path / "b.parquet", tmp_path / "c") == rows


def test_import_names_a_damaged_stored_shard_once_and_imports_its_rows_again(tmp_path, caplog, monkeypatch):
    """A stored shard that cannot be read is named once in one warning, however many rank windows
    the import reads, and the bundle's rows it held count as new (the store did not show them)."""
    spec = RunSpec(run_id="20260105T120000Z-gpu-0000ac", nodes=("n1", "n2"), gpus_per_node=4, cases=[gemm(4096)],
                   repeats=3)
    write_run(tmp_path / "a", spec)
    bundle = tmp_path / "a.parquet"
    exchange.export_shards(sorted((tmp_path / "a").rglob("*.parquet")), bundle)
    run_b = write_run(tmp_path / "b", spec)
    damaged = run_b / "metrics.rank00003.main.parquet"
    damaged.write_bytes(b"not parquet")
    monkeypatch.setattr(exchange, "WINDOW_ROWS", 20)  # several windows per table
    with caplog.at_level("WARNING", logger="aifbench.analysis.exchange"):
        added = exchange.import_bundle(bundle, tmp_path / "b")
    lines = [r.getMessage() for r in caplog.records if "may be imported again" in r.getMessage()]
    assert len(lines) == 1 and "1 invalid shard(s) (metrics.rank00003.main.parquet)" in lines[0], lines
    per_rank = len(load_runs([tmp_path / "a"]).tables["metrics"]) // 8
    assert added["metrics"] == per_rank and added["runs"] == added["samples"] == 0
