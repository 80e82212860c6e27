"""The results store: results/<run_id>/<table>.rank<NNNNN>.<part>.parquet.

Ranks of 100,000 and more get 6 or more digits (the name always has at least 5, so older
stores read unchanged). After compaction (results/compact.py) a run also holds
<table>.compact-<digest>.parquet files; layout.py says how both are read exactly once.

One shard per (run, rank, part, table). A shard is written whole to a temporary file in the
same directory and renamed into place (os.replace is atomic on POSIX), so concurrent ranks,
array tasks and readers never see a half-written file. The runner rewrites its shard after
every case, so a crash loses at most the case in flight. Each shard's footer records a
generation (layout.GEN_KEY) above every one its rank committed before; a resuming rank reads
its committed rows wherever they are (committed_rows: loose or compacted). A reader holds the
run directory's shared lock (read.snapshot) while it reads. The rules: docs/store.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aifbench.atomic import atomic_write
from aifbench.errors import ConfigError, SchemaError, no_results
from aifbench.results import layout, read, schema
from aifbench.results.layout import SHARD_RE as SHARD_RE  # re-exported: store.SHARD_RE names it too

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("results")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_run_id(suite: str, now: datetime | None = None) -> str:
    """'20261120T231800Z-smoke-3fa9c1d2': sortable by start time, unique by a random 32-bit suffix
    (two runs of one suite started in the same second collide with a chance of 2^-32; with the
    24-bit suffix of before, 50 ids made at once collided about once in 14,000 tries)."""
    now = now or datetime.now(timezone.utc)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", suite).strip("-")[:40] or "run"
    return f"{now:%Y%m%dT%H%M%SZ}-{slug}-{secrets.token_hex(4)}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id):
        raise ConfigError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-' only")
    return run_id


def shard_name(table: str, rank: int, part: str = "main") -> str:
    schema.table(table)
    name = f"{table}.rank{rank:05d}.{part}.parquet"
    assert SHARD_RE.match(name), name
    return name


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file through one open file handle.

    pq.read_table(path) may open the path more than once (footer, then pages); if a writer
    renames a new shard into place between the opens, the pages and the footer come from
    different files. One handle pins one inode, so a reader sees the old or the new shard whole.
    """
    with open(path, "rb") as fh:
        return pq.read_table(pa.BufferReader(fh.read()), columns=columns)


def write_shard(path: Path, table: str, df: pd.DataFrame, generation: int = 1) -> Path:
    """Validate `df` against the table schema and write it atomically to `path`, its footer
    recording `generation` (layout.GEN_KEY: a higher one is newer content)."""
    arrow = pa.Table.from_pandas(schema.validate(table, df), preserve_index=False)
    meta = {**(arrow.schema.metadata or {}), layout.GEN_KEY: json.dumps({"generation": int(generation)}).encode()}
    return atomic_write(path, lambda tmp: write_parquet(arrow.replace_schema_metadata(meta), tmp))


DICTIONARY_ROWS = 1024
"""rows from which a shard's columns are dictionary-encoded (write_parquet)"""


def write_parquet(arrow: pa.Table, path: Path | str) -> None:
    """A shard's bytes, with page checksums: the footer keeps the schema's metadata (the
    generation) but no pandas or Arrow schema copies (three quarters of a small shard's footer,
    decoded once per file by a reader of 10^5 shards); the Parquet types alone read back as
    results/read.py casts them. No column statistics (a shard is one row group, read whole: they
    prune nothing), and dictionary pages only for shards of DICTIONARY_ROWS rows or more (below,
    few repeats, and decoding the dictionaries costs more than it saves). Read with
    results/read.py, a metrics shard of 317 rows takes 0.51 ms instead of 0.66 ms and a runs
    shard 0.52 instead of 0.61 (medians of five rounds); a telemetry shard of 4,581 rows keeps its
    dictionaries (18 kB, not 56): results/reference/scale/shard-format-2026-12-06.md."""
    meta = {k: v for k, v in (arrow.schema.metadata or {}).items() if k != b"pandas"}
    with pq.ParquetWriter(path, arrow.schema.remove_metadata(), store_schema=False, write_page_checksum=True,
                          write_statistics=False, use_dictionary=arrow.num_rows >= DICTIONARY_ROWS) as w:
        w.write_table(arrow.replace_schema_metadata(None))
        if meta:
            w.add_key_value_metadata(meta)


@dataclass
class ShardWriter:
    """Accumulates one rank's rows per table and rewrites its shards atomically on flush()."""

    root: Path
    run_id: str
    rank: int = 0
    part: str = "main"
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    """tables changed since the last flush"""
    generation: int = 0
    """the generation of the last flush: above what load_existing found committed, and at least
    the wall clock in µs (a writer that did not resume still writes newer content than a copy)"""

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.run_id

    def add(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        schema.table(table)
        new = list(rows)
        if new:
            self.rows.setdefault(table, []).extend(new)
            self.dirty.add(table)

    def replace(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        schema.table(table)
        self.rows[table] = list(rows)
        self.dirty.add(table)

    def flush(self) -> list[Path]:
        """Rewrite the shards of tables changed since the last flush; an emptied table's shard
        is removed, so no rows of an earlier attempt outlive a resume."""
        written = []
        if self.dirty:  # the wall clock in µs, and above every generation this writer has seen
            self.generation = max(self.generation + 1, time.time_ns() // 1000)
        for table in sorted(self.dirty):
            path = self.run_dir / shard_name(table, self.rank, self.part)
            rows = self.rows.get(table, [])
            if rows:
                written.append(write_shard(path, table, pd.DataFrame(rows), self.generation))
            else:
                path.unlink(missing_ok=True)
        self.dirty.clear()
        return written

    def load_existing(self, table: str) -> pd.DataFrame:
        """This writer's own committed rows (for resuming after a requeue), wherever they are: its
        loose shard or, after a compaction, a compacted file. The writer's generation continues
        from theirs, so its next flush is newer than every copy of them."""
        name = shard_name(table, self.rank, self.part)
        t, gen = committed_rows(self.run_dir, table, name)
        self.generation = max(self.generation, gen)
        return schema.validate(table, t.to_pandas()) if t.num_rows else schema.empty(table)


def committed_rows(run_dir: Path, table: str, name: str) -> tuple[pa.Table, int]:
    """(rows, generation) of source shard `name` as the store resolves it (layout.py): the loose
    shard or its copy in a compacted file; a reader's snapshot (read.snapshot) of the run directory."""
    with read.snapshot(run_dir):
        files = sorted(run_dir.glob(f"{table}.compact-*.parquet")) + [p for p in [run_dir / name] if p.exists()]
        rf = layout.scan(run_dir, files)
        return read.read_source(rf, table, name)


@dataclass
class Results:
    """Every table of a set of runs, validated, plus the shards that were skipped."""

    tables: dict[str, pd.DataFrame]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    side: dict[str, pd.DataFrame] = field(default_factory=dict)
    """per table, the second view load(side=...) asked for (read in the same pass)"""

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    @property
    def run_ids(self) -> list[str]:
        return sorted(set(pd.unique(self.tables["runs"]["run_id"])) | set(pd.unique(self.tables["metrics"]["run_id"])))


def find_shards(paths: Iterable[Path | str]) -> list[Path]:
    """All shard and compacted files below the given files or directories, sorted."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file() or p.is_symlink():  # a dangling link is a shard: the reader skips and names it
            found.add(p)
        elif p.is_dir():
            found.update(_parquet_below(p))
        elif p.suffix == ".parquet" and (layout.SHARD_RE.match(p.name) or layout.COMPACT_RE.match(p.name)) \
                and p.parent.is_dir():
            found.add(p)  # listed a moment ago, merged by a compaction since: load() reads its run again
        else:
            raise no_results(p)
    return sorted(found, key=lambda q: q.parts)  # Path order, without Path.__lt__ per comparison (10^5 files)


def _parquet_below(top: Path) -> Iterator[Path]:
    """Every `*.parquet` below `top` not starting with "." (what rglob finds), by os.scandir:
    a listing of 10^5 shards costs a fraction of what rglob's per-entry matching does."""
    stack = [str(top)]
    while stack:
        where = stack.pop()
        try:
            entries = list(os.scandir(where))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for e in entries:
            if e.name.endswith(".parquet") and not e.name.startswith("."):
                yield Path(e.path)
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)


def read_shard(path: Path) -> tuple[str, pd.DataFrame]:
    """(table, validated frame) of one loose shard; SchemaError when it does not validate."""
    m = SHARD_RE.match(path.name)
    if not m:
        raise SchemaError(f"not a shard name (<table>.rank<NNNNN>.<part>.parquet): {path.name}")
    table = m["table"]
    try:
        df = read_parquet(path).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise SchemaError(f"unreadable Parquet: {exc}") from None
    return table, schema.validate(table, df)


Columns = dict[str, list[str]]
"""table -> the columns to read (run_id and schema_version always come along)"""


def load(paths: Iterable[Path | str], tables: Iterable[str] | None = None, columns: Columns | None = None,
         filters: dict[str, object] | None = None, categorical: bool = False,
         side: dict[str, read.Side] | None = None, distinct: Iterable[str] = ()) -> Results:
    """Load `tables` (default all) below `paths`, run directory by run directory, reading only
    `columns` per table and the rows passing `filters` per table (pyarrow.dataset expressions).

    Loose shards and compacted files are read exactly once each (layout.py); files that are not
    this run's, of another schema version, or unreadable are skipped with a warning, as are the
    duplicate provenance rows of a rank present twice. `categorical`: repetitive text columns
    of the metrics and runs tables come as sorted pandas categories (each distinct text held once).
    `side`: table -> (columns, filter) of a second view, read from the same decoded shards (a
    command needing two views of one table reads its files once): Results.side. `distinct`:
    tables read as the set of their distinct rows (of `columns`), reduced while read
    (read.read_table): memory follows the distinct rows, not the rows.
    """
    tables = list(tables or schema.TABLES)
    paths = list(paths)
    columns, filters = columns or {}, filters or {}
    by_dir: dict[Path, list[Path]] = {}
    for f in find_shards(paths):
        by_dir.setdefault(f.parent, []).append(f)
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in tables}
    side = side or {}
    side_parts: dict[str, list[pd.DataFrame]] = {name: [] for name in side}
    skipped: list[tuple[Path, str]] = []
    dirs = [Path(p) for p in paths if Path(p).is_dir()]
    for run_dir, files in sorted(by_dir.items()):
        whole = any(run_dir == d or d in run_dir.parents for d in dirs)
        loaded, bad = _load_run(run_dir, files, tables, columns, filters, categorical, whole, side, set(distinct))
        skipped += bad
        for name, df in loaded.items():
            (side_parts[name[1]] if isinstance(name, tuple) else parts[name]).append(df)
    for path, why in skipped:
        log.warning("skipping invalid shard %s: %s", path, why)  # the CLI shows it on stderr
    out: dict[str, pd.DataFrame] = {}
    for name in schema.TABLES:
        frames = [f for f in parts.get(name, []) if len(f)]
        if frames:
            out[name] = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        elif name in parts and parts[name]:
            out[name] = parts[name][0]
        else:
            out[name] = schema.empty(name) if name not in columns else \
                read.to_frame(read.arrow_schema(name).empty_table().select(read._columns(name, columns[name])))
    views: dict[str, pd.DataFrame] = {}
    for name, (cols, _) in side.items():
        frames = [f for f in side_parts[name] if len(f)]
        views[name] = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0] if frames else \
            read.to_frame(read.arrow_schema(name).empty_table().select(read._columns(name, cols)))
    return Results(out, skipped, views)


READ_RETRIES = 5
"""rescans of a run directory when a file vanished under a reader (a compaction without flock)"""


def _load_run(run_dir: Path, files: list[Path], tables: list[str], columns: Columns, filters: dict[str, object],
              categorical: bool = False, whole: bool = True, side: dict[str, read.Side] | None = None,
              distinct: set[str] | None = None) -> tuple[dict[str | tuple[str, str], pd.DataFrame], list[tuple[Path, str]]]:
    """One run directory's tables from one snapshot (read.snapshot: no compaction commits while
    it is read); `whole`: the directory was asked for, so its files are listed again inside the
    snapshot. Rescans when a file vanished all the same (a file system without flock). The
    frames are keyed by table, a side view (load's `side`) by ("side", table)."""
    side = side or {}
    listed = {f.name.split(".", 1)[0] for f in files}
    for attempt in range(READ_RETRIES):
        with read.snapshot(run_dir):
            if whole:
                files = find_shards([run_dir])
            elif not all(f.exists() or f.is_symlink() for f in files):  # a compaction merged some: its tables' files now
                files = [f for f in find_shards([run_dir]) if f.name.split(".", 1)[0] in listed]
            mine = [f for f in files if f.name.split(".", 1)[0] in tables  # other tables' footers are not read
                    or f.name.split(".", 1)[0] not in schema.TABLES]
            rf = layout.scan(run_dir, [f for f in mine if f.exists() or f.is_symlink()])  # a dangling link is named
            try:
                frames: dict[str | tuple[str, str], pd.DataFrame] = {}
                for name in tables:
                    twice = name == "runs" and {"rank", "task"} <= set(columns.get(name) or ("rank", "task"))
                    cat = categorical and name in ("metrics", "runs")
                    views: list[pa.Table] = []
                    frames[name] = read.to_frame(  # the Arrow table held by to_frame alone: let go column by column
                        read.read_table(rf, name, columns.get(name), filters.get(name), source=twice, dictionary=cat,
                                        side=side.get(name), side_out=views, distinct=name in (distinct or ())),
                        categorical=cat)
                    if views:
                        frames[("side", name)] = read.to_frame(views[0])
                break
            except FileNotFoundError:
                whole = True
    else:
        raise ConfigError(f"{run_dir}: files kept vanishing while read ({READ_RETRIES} tries); try again")
    for note in rf.notes():
        log.warning("%s", note)
    bad = list(rf.bad)
    if "metrics" in frames:
        bad += [(run_dir, f"metrics.params not JSON: {t!r}") for t in read.check_params(frames["metrics"])]
    if "runs" in frames and {"rank", "task"} <= set(frames["runs"].columns):
        frames["runs"], ranked_twice = _rank_twice(frames["runs"])
        bad += ranked_twice
    return frames, bad


def _rank_twice(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """Provenance rows of one (run, rank, task) from two shards: named, the first kept."""
    dup = runs.duplicated(["run_id", "rank", "task"], keep=False) & runs["rank"].notna()
    out = []
    for (run_id, rank, task), part in runs[dup].groupby(["run_id", "rank", "task"]):
        shards = ", ".join(sorted(part[layout.SOURCE_COL].astype(str)))
        out.append((Path(str(run_id)), f"rank {rank} (task {task}) present twice: {shards}; the first is read"))
    keep = ~runs.duplicated(["run_id", "rank", "task"], keep="first")
    return runs[keep].drop(columns=[layout.SOURCE_COL]).reset_index(drop=True), out



def run_dirs(root: Path) -> list[Path]:
    """Run directories under a store root, oldest first (run ids sort by start time)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet")))


def resolve_run(root: Path, run_id: str | None) -> Path:
    """The directory of `run_id` under root (a unique prefix is enough), or the latest run."""
    if not Path(root).exists():
        raise no_results(root)
    dirs = [d for d in run_dirs(root) if d.name != "reference"]
    if not dirs:
        raise ConfigError(f"no runs under {root}")
    if run_id is None:
        return dirs[-1]
    return match_run(dirs, run_id, root)


def match_run(dirs: list[Path], run_id: str, root: Path, what: str = "run") -> Path:
    """The one of `dirs` (oldest first) named `run_id`, else the one it is a unique prefix of;
    a ConfigError naming the latest runs (none) or the candidates (ambiguous) otherwise."""
    exact = [d for d in dirs if d.name == run_id]
    matches = exact or [d for d in dirs if d.name.startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"no {what} {run_id!r} under {root}; latest runs (newest first): "
                          + (", ".join(d.name for d in reversed(dirs[-5:])) or "(none)"))
    raise ConfigError(f"{what} id prefix {run_id!r} is ambiguous: " + ", ".join(d.name for d in matches))
