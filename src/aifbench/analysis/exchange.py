"""Exchange between sites: every table of a selection in one Parquet bundle, and back.

A bundle is one Parquet file: the rows of all four tables stacked, a `table` column naming
each row's table, the union of the tables' columns (a column a table lacks is empty). File
metadata key `aifbench` holds {"bundle_format", "schema_version", "aifbench_version",
"created_utc", "rows"}. Import validates every row against the schema first (older versions
migrated, newer refused), then writes only rows whose key (data.KEYS: run, case, rank, metric,
stat, ...) is not already in the store, as new shards `<table>.rank<N>.import-<hex>.parquet`
in the run's directory: importing the same bundle twice adds nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aifbench import SCHEMA_VERSION, __version__
from aifbench.analysis.data import KEYS
from aifbench.atomic import atomic_write
from aifbench.errors import ConfigError, SchemaError, one_of
from aifbench.results import layout, read, schema, store
from aifbench.results.store import Results

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
META_KEY = b"aifbench"
TABLE_COLUMN = "table"


def bundle_frame(results: Results) -> pd.DataFrame:
    """All tables stacked with a `table` column (column union; absent columns empty)."""
    frames = []
    for name in schema.TABLES:
        df = results.tables[name]
        if len(df):
            frames.append(df.assign(**{TABLE_COLUMN: name}))
    if not frames:
        raise ConfigError("nothing to export: the selection has no rows")
    out = pd.concat(frames, ignore_index=True, sort=False)
    return out[[TABLE_COLUMN] + [c for c in out.columns if c != TABLE_COLUMN]]


def export(results: Results, path: Path) -> dict[str, int]:
    """Write the bundle atomically; returns rows per table."""
    df = bundle_frame(results)
    rows = {name: int((df[TABLE_COLUMN] == name).sum()) for name in schema.TABLES}
    meta = {"bundle_format": BUNDLE_FORMAT, "schema_version": SCHEMA_VERSION, "aifbench_version": __version__,
            "created_utc": datetime.now(timezone.utc).isoformat(), "rows": rows}
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return rows


ROW_GROUP_ROWS = 65536
"""rows per row group of a bundle: what export holds and import reads at once"""


def bundle_schema() -> pa.Schema:
    """The `table` column, then the union of the tables' columns in table order (Arrow types of
    results/read.py; a column two tables share has one type)."""
    fields: dict[str, pa.Field] = {TABLE_COLUMN: pa.field(TABLE_COLUMN, pa.large_string())}
    for name in schema.TABLES:
        for f in read.arrow_schema(name):
            fields.setdefault(f.name, f)
    return pa.schema(list(fields.values()))


def export_shards(shards: list[Path], path: Path) -> tuple[dict[str, int], list[str], list[tuple[Path, str]]]:
    """Stream the rows of `shards` (run directory by run directory, table by table, a bounded
    batch at a time: read.iter_table) into a bundle written atomically; memory does not grow
    with the run. A run id reached twice (two copies of a run) is exported once. Returns (rows
    per table, run ids, skipped files with why); ConfigError, nothing written, when no metrics
    row is found."""
    by_dir: dict[Path, list[Path]] = {}
    for f in shards:
        by_dir.setdefault(f.parent, []).append(f)
    target = bundle_schema()
    rows = {name: 0 for name in schema.TABLES}
    runs: list[str] = []
    skipped: list[tuple[Path, str]] = []

    meta = {"bundle_format": BUNDLE_FORMAT, "schema_version": SCHEMA_VERSION, "aifbench_version": __version__,
            "created_utc": datetime.now(timezone.utc).isoformat()}
    # the schema carries the record without row counts (they are known at the end only and go
    # into the footer, which bundle_meta reads): a tool rewriting the table keeps the record
    target = target.with_metadata({META_KEY: json.dumps(meta).encode()})

    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, target, compression="zstd") as writer:
            for run_dir, files in sorted(by_dir.items()):
                if run_dir.name in runs:
                    continue
                with read.snapshot(run_dir):
                    rf = layout.scan(run_dir, [f for f in files if f.exists()])
                    bad = list(rf.bad)
                    for name in schema.TABLES:
                        pending: list[pa.Table] = []  # batches gathered into row groups of ROW_GROUP_ROWS:
                        held = 0                      # a row group per batch of 16 shards made a footer
                        for t in read.iter_table(rf, name, bad, ROW_GROUP_ROWS):  # of 10^4 groups at 24,576 ranks
                            pending.append(_as_bundle(t, name, target))
                            rows[name] += t.num_rows
                            held += t.num_rows
                            if held >= ROW_GROUP_ROWS:
                                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                                pending, held = [], 0
                        if pending:
                            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                skipped.extend(bad)
                runs.append(run_dir.name)
            if not rows["metrics"]:
                raise ConfigError("nothing to export: the selection has no metrics rows")
            writer.add_key_value_metadata({META_KEY: json.dumps({**meta, "rows": rows}).encode()})

    atomic_write(path, write)
    return rows, runs, skipped


def _as_bundle(t: pa.Table, name: str, target: pa.Schema) -> pa.Table:
    """One table's rows in the bundle's columns (the others empty), `table` naming it."""
    n = t.num_rows
    cols = [pa.array([name] * n, pa.large_string()) if f.name == TABLE_COLUMN else
            t[f.name].cast(f.type) if f.name in t.column_names else pa.nulls(n, f.type) for f in target]
    return pa.Table.from_arrays(cols, schema=target)


def bundle_meta(path: Path) -> dict[str, Any]:
    try:
        md = pq.read_metadata(path).metadata or {}  # the footer: written last by a streaming export
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{path}: not a readable Parquet bundle ({exc})") from None
    if META_KEY not in md:
        raise ConfigError(f"{path}: not an aifbench bundle (no '{META_KEY.decode()}' metadata); "
                          "make one with 'aifbench export'")
    meta: dict[str, Any] = json.loads(md[META_KEY])
    return meta


def _check_meta(path: Path) -> None:
    meta = bundle_meta(path)
    version = int(meta.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        raise SchemaError(f"{path}: bundle has results schema version {version}, newer than this aifbench "
                          f"{__version__} reads (version {SCHEMA_VERSION}); upgrade aifbench to import it")
    if int(meta.get("bundle_format", 0)) > BUNDLE_FORMAT:
        raise SchemaError(f"{path}: bundle format {meta['bundle_format']} is newer than this aifbench "
                          f"supports ({BUNDLE_FORMAT}); upgrade aifbench")


def _split(path: Path, df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The validated (migrated) rows of each table in one bundle frame, deduplicated by key."""
    if TABLE_COLUMN not in df.columns:
        raise ConfigError(f"{path}: no '{TABLE_COLUMN}' column; not an aifbench bundle")
    unknown = set(df[TABLE_COLUMN].dropna().unique()) - set(schema.TABLES)
    if unknown:
        raise SchemaError(f"{path}: {one_of('table', sorted(map(str, unknown))[0], schema.TABLES)}")
    out = {}
    for name in schema.TABLES:
        part = df[df[TABLE_COLUMN] == name].drop(columns=TABLE_COLUMN)
        if not len(part):
            out[name] = schema.empty(name)
            continue
        # a column without any value in this table's rows belongs to another table (or is an
        # empty optional one, which validate() restores); an older version's columns stay for
        # its migration (validate migrates each version's rows)
        part = part[[c for c in part.columns if part[c].notna().any()]]
        try:
            valid = schema.validate(name, part)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None
        out[name] = valid.drop_duplicates(list(KEYS[name]))
    return out


def iter_bundle(path: Path) -> Iterator[dict[str, pd.DataFrame]]:
    """A bundle's tables, validated and migrated, one row group (ROW_GROUP_ROWS) at a time."""
    _check_meta(path)
    try:
        fh = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{path}: not a readable Parquet bundle ({exc})") from None
    if TABLE_COLUMN not in fh.schema_arrow.names:
        raise ConfigError(f"{path}: no '{TABLE_COLUMN}' column; not an aifbench bundle")
    for batch in fh.iter_batches(batch_size=ROW_GROUP_ROWS):
        yield _split(path, batch.to_pandas())


def read_bundle(path: Path) -> dict[str, pd.DataFrame]:
    """Every table of a bundle, validated and migrated to this schema version (whole: for small
    bundles and tests; import streams with iter_bundle)."""
    _check_meta(path)
    return _split(path, store.read_parquet(path).to_pandas())


def _new_rows(df: pd.DataFrame, existing: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    if not len(existing) or not len(df):
        return df
    seen = existing[key].drop_duplicates()
    merged = df.merge(seen, on=key, how="left", indicator=True)
    return df[(merged["_merge"] == "left_only").to_numpy()]


COMPARED = {"metrics": ("status", "value", "unit", "n_samples"), "samples": ("value", "unit"),
            "runs": ("config_hash", "node", "device_name"), "telemetry": ("value", "unit")}
"""the columns of a row whose key the store already has that must agree with the store's row"""


def conflicts(df: pd.DataFrame, existing: pd.DataFrame, name: str) -> list[str]:
    """One line per bundle row whose key (KEYS) the store has with other values (COMPARED)."""
    key, cols = list(KEYS[name]), [c for c in COMPARED[name] if c in df.columns and c in existing.columns]
    if not len(df) or not len(existing) or not cols:
        return []
    theirs = existing[key + cols].drop_duplicates(key)
    both = df[key + cols].merge(theirs, on=key, how="inner", suffixes=("", "_store"))
    differ = pd.Series(False, index=both.index)
    for c in cols:
        a, b = both[c], both[f"{c}_store"]
        differ |= ~((a == b).fillna(False).astype(bool) | (a.isna() & b.isna()))
    out = []
    for r in both[differ].itertuples(index=False):
        row = r._asdict()
        what = ", ".join(f"{c} {row[c]!r} (store: {row[c + '_store']!r})" for c in cols
                         if not (pd.isna(row[c]) and pd.isna(row[c + '_store'])) and row[c] != row[c + '_store'])
        out.append(f"{name} {'/'.join(str(row[k]) for k in key)}: {what}")
    return out


WINDOW_ROWS = 1 << 18
"""stored rows an import holds at once per run and table (key and COMPARED columns): the rows of
as many ranks as about this many rows cover (StoredRows)"""


RANGE_FILES = 64
"""loose shards whose rank column is read at once to learn which ranks each holds (an import's
shard holds a bundle row group: 64 of them are 4 M ranks of 8 bytes)"""


class StoredRows:
    """The key and COMPARED columns of one run's table already in the store, read a window of
    ranks at a time: an import checks each bundle row group against the stored rows of the same
    ranks only, so its memory follows WINDOW_ROWS, not the run (a 24,576-rank run holds 10^8
    telemetry rows). Which files hold which ranks is learned once: a loose shard's rank column
    (one small column per file), a compacted file's row-group statistics (without them the file
    counts as holding every rank); a window reads only the files it overlaps, with the rank
    range pushed down into the read."""

    def __init__(self, run_dir: Path, name: str) -> None:
        self.run_dir, self.name = run_dir, name
        self.cols = list(dict.fromkeys([*KEYS[name], *COMPARED[name]]))
        self.bad: dict[Path, str] = {}
        """files left out as unreadable or not this run's, with why (each once, however many windows)"""
        self.window: tuple[int, int, pd.DataFrame] | None = None
        self._scan()

    def _scan(self) -> None:
        """The table's resolved files and the rank range of each (lo, hi; no rows: no range)."""
        self.tf: layout.TableFiles | None = None
        self.loose: dict[Path, tuple[int, int]] = {}
        self.compacted: dict[Path, tuple[int, int]] = {}
        self.per_rank = 1.0
        if not self.run_dir.is_dir():
            return
        files = [f for f in store.find_shards([self.run_dir]) if f.name.split(".", 1)[0] == self.name]
        with read.snapshot(self.run_dir):
            rf = layout.scan(self.run_dir, [f for f in files if f.exists()])
            self.bad.update(rf.bad)
            self.tf = rf.tables.get(self.name)
            if self.tf is None:
                return
            rows = 0
            for start in range(0, len(self.tf.loose), RANGE_FILES):  # a few files' rank column at a time
                chunk = self.tf.loose[start:start + RANGE_FILES]
                bad: list[tuple[Path, str]] = []
                ranks = read._loose(chunk, self.name, ["rank"], None, bad)
                self.bad.update(bad)
                rows += ranks.num_rows
                if ranks.num_rows:
                    by_file = ranks.group_by(read.FILE_IX).aggregate([("rank", "min"), ("rank", "max")])
                    for ix, lo, hi in zip(*(by_file[c].to_pylist() for c in (read.FILE_IX, "rank_min", "rank_max"))):
                        self.loose[chunk[ix]] = (lo, hi)
        for path in self.tf.compacted:
            lo, hi, n = _rank_range(path)
            self.compacted[path] = (lo, hi)
            rows += n
        spans = list(self.loose.values()) + list(self.compacted.values())
        if spans:
            lo_all, hi_all = min(s[0] for s in spans), max(s[1] for s in spans)
            self.per_rank = max(1.0, rows / (hi_all - lo_all + 1))

    @property
    def width(self) -> int:
        """Ranks whose stored rows make about WINDOW_ROWS rows."""
        return max(1, int(WINDOW_ROWS / self.per_rank))

    def rows(self, lo: int, hi: int) -> pd.DataFrame:
        """The stored rows of ranks lo..hi (a window at least that wide is read and kept for the
        next call: bundle row groups come in rank order)."""
        if self.window is None or not (self.window[0] <= lo and hi <= self.window[1]):
            hi = max(hi, lo + self.width - 1)
            self.window = (lo, hi, self._read(lo, hi))
        df = self.window[2]
        return df[((df["rank"] >= lo) & (df["rank"] <= hi)).to_numpy()]

    def _read(self, lo: int, hi: int) -> pd.DataFrame:
        empty = schema.empty(self.name)[self.cols]
        for _ in range(store.READ_RETRIES):
            if self.tf is None:
                return empty
            tf = dataclasses.replace(
                self.tf, loose=[p for p, (a, b) in self.loose.items() if a <= hi and b >= lo],
                compacted={p: x for p, x in self.tf.compacted.items() if self.compacted[p][0] <= hi and self.compacted[p][1] >= lo})
            if not tf.loose and not tf.compacted:
                return empty
            flt = (pc.field("rank") >= lo) & (pc.field("rank") <= hi)
            bad: list[tuple[Path, str]] = []
            try:
                with read.snapshot(self.run_dir):
                    t = read.read_table(layout.RunFiles(self.run_dir, {self.name: tf}), self.name, self.cols, flt,
                                        bad=bad)
                self.bad.update(bad)
                return read.to_frame(t)[self.cols]
            except FileNotFoundError:  # merged by a compaction meanwhile: its files now
                self._scan()
        raise ConfigError(f"{self.run_dir}: files kept vanishing while read ({store.READ_RETRIES} tries); try again")


def _rank_range(path: Path) -> tuple[int, int, int]:
    """(lowest rank, highest rank, rows) of a compacted file from its row groups' statistics; the
    widest range when a row group has none."""
    meta = pq.read_metadata(path)
    col = meta.schema.to_arrow_schema().get_field_index("rank")  # -1: none
    lo, hi = None, None
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(col).statistics if col >= 0 else None
        if st is None or not st.has_min_max:
            return -(1 << 62), 1 << 62, meta.num_rows
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return (lo if lo is not None else 0), (hi if hi is not None else -1), meta.num_rows


def _check_rows(rows: pd.DataFrame, have: StoredRows, name: str) -> tuple[pd.DataFrame, list[str]]:
    """The rows of one run and table not yet stored, and one line per row that conflicts
    (`conflicts`), checked a rank window at a time against the stored rows of those ranks."""
    key, ranks = list(KEYS[name]), rows["rank"].astype("int64").to_numpy()
    width = have.width
    new, clash, start = [], [], int(ranks.min())
    top = int(ranks.max())
    while start <= top:
        end = start + width - 1
        inside = (ranks >= start) & (ranks <= end)
        if inside.any():  # the stored rows of the ranks this part has, not of the whole window
            part, stored = rows[inside], have.rows(start, int(ranks[inside].max()))
            clash += conflicts(part, stored, name)
            new.append(_new_rows(part, stored, key))
        later = ranks[ranks > end]
        start = int(later.min()) if len(later) else top + 1
    return (pd.concat(new) if len(new) > 1 else new[0]), clash


def import_bundle(path: Path, root: Path) -> dict[str, int]:
    """Add the bundle's rows missing from store `root`; returns new rows per table.

    Streams: the bundle is read one row group at a time and each group's new rows of a run and
    table are written as one shard (part `import-<token>-<group>`) into a staging directory; only when every group
    validated and no row conflicts are they renamed into the run directories, so a bad or
    conflicting bundle imports nothing. What the store already has (key and COMPARED columns)
    is read a window of ranks at a time (StoredRows: memory bounded by WINDOW_ROWS per run and
    table, whatever the run's size; rows repeated across a bundle's row groups are not looked
    for: export writes each row once). A bundle row whose key the store has
    with other values (`conflicts`) refuses the whole import, naming the rows (SchemaError):
    the store's committed rows are never overwritten."""
    import shutil

    root = Path(root)
    added = {name: 0 for name in schema.TABLES}
    token = secrets.token_hex(4)
    staging = root / f".import-{token}"
    seen: dict[tuple[str, str], StoredRows] = {}
    clash: list[str] = []
    clashes = 0
    try:
        for k, tables in enumerate(iter_bundle(path)):
            for name, df in tables.items():
                for run_id, rows in df.groupby("run_id", sort=True, observed=True):
                    run_id = store.check_run_id(str(run_id))
                    if (run_id, name) not in seen:
                        seen[(run_id, name)] = StoredRows(root / run_id, name)
                    for other in seen.values():  # one window held at a time (bundles come run by run)
                        if other is not seen[(run_id, name)]:
                            other.window = None
                    rows, theirs = _check_rows(rows, seen[(run_id, name)], name)
                    clashes += len(theirs)
                    clash += theirs[:3 - len(clash)]
                    if not len(rows):
                        continue
                    # one shard per run, table and row group (named after its first rank): a
                    # shard per rank would cost a file write per rank and group
                    shard = staging / run_id / store.shard_name(name, int(rows["rank"].min()), f"import-{token}-{k}")
                    store.write_shard(shard, name, rows)
                    added[name] += len(rows)
        for have in seen.values():
            names = sorted(p.name for p in have.bad)
            if names:
                log.warning("run %s has %d invalid shard(s) (%s%s); their rows may be imported again", have.run_dir.name,
                            len(names), ", ".join(names[:3]), " ..." if len(names) > 3 else "")
        if clashes:
            raise SchemaError(f"{path}: {clashes} row(s) conflict with rows the store has (nothing imported; "
                              f"the store's rows stand): " + "; ".join(clash) + (" ..." if clashes > 3 else ""))
        for run in sorted(staging.iterdir()) if staging.is_dir() else []:
            (root / run.name).mkdir(parents=True, exist_ok=True)
            for shard in sorted(run.iterdir()):
                os.replace(shard, root / run.name / shard.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return added
