"""Reading a run's tables with column and row pushdown, from loose shards and compacted files.

Engine: pyarrow.dataset. It reads only the requested columns (Parquet is columnar) and applies
the row filter per row group while scanning, on all cores, so a reader holds the needed
columns of the kept rows and nothing else; no new dependency (duckdb or polars would add one
for no measured gain at this size: the 24,576-rank figures are in results/reference/scale/).

Every read also checks what a run directory may legally hold: a row whose run_id is not the
directory's, a schema version this aifbench does not read, an empty required column or an
unreadable file marks its file bad — named, skipped whole, never half-counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

try:
    from pyarrow._parquet import ParquetReader as _Reader
except ImportError:  # pragma: no cover - the class pq.ParquetFile wraps; named here to skip its set-up
    _Reader = None

from aifbench import SCHEMA_VERSION
from aifbench.errors import SchemaError
from aifbench.results import schema
from aifbench.results import layout
from aifbench.results.layout import SOURCE_COL, RunFiles, TableFiles

ARROW_TYPES = {"string": pa.large_string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
               "timestamp": pa.timestamp("us", tz="UTC")}
CHECKED = ("run_id", "schema_version")
READAHEAD = {"batch_readahead": 2, "fragment_readahead": 2}
"""the scanner's defaults (16 batches, 4 files) hold many decoded row groups of a compacted file at
once; this keeps the peak near the kept rows' size at a small cost in time"""
PARQUET = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True))
"""every page's CRC (written by store.write_shard and compact) checked on read: a damaged byte is
an error naming the file, never a wrong value"""


@contextlib.contextmanager
def snapshot(run_dir: Path, exclusive: bool = False) -> Iterator[None]:
    """Hold the run directory's reader lock (flock on the directory itself, shared; `exclusive`
    for a compaction committing its output): inside, no compaction renames or deletes a file, so
    a scan and its reads see one state of the run. Where the file system has no flock (some
    network mounts) nothing is held and readers rely on rescanning (store._load_run)."""
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


PLAIN = CHECKED + ("stat", "status", "task", "rank")
"""text columns always read as plain strings: checked and filtered on with compute kernels"""
DICT = pa.dictionary(pa.int32(), pa.large_string())


def arrow_schema(table: str, source: bool = False, dictionary: bool = False, encoded: bool = False) -> pa.Schema:
    """The table's columns as Arrow types (plus the compacted files' source column);
    `dictionary`: text columns other than PLAIN dictionary-encoded (each distinct text once);
    `encoded`: every text column so, the source column too (what compaction reads and writes)."""
    def kind(c: schema.Column) -> pa.DataType:
        t = ARROW_TYPES[c.type]
        return DICT if t == pa.large_string() and (encoded or dictionary and c.name not in PLAIN) else t
    fields = [pa.field(c.name, kind(c)) for c in schema.table(table).columns]
    return pa.schema(fields + ([pa.field(SOURCE_COL, DICT if encoded else pa.large_string())] if source else []))


def _columns(table: str, columns: list[str] | None) -> list[str]:
    names = schema.table(table).names
    return names if columns is None else [c for c in names if c in columns or c in CHECKED]


LOOSE_BATCH = 256
"""loose shards decoded before the batch is filtered and its kept rows set aside: bounds the
rows held beyond the kept ones (a shard holds a few hundred rows)"""
FILE_IX = "__file"
"""per loose row, the index of its shard in the list read (int32; never a string per row)"""


def _filter_columns(table: str, flt: object) -> list[str]:
    """The table's columns a row filter names (read alongside the requested ones)."""
    if flt is None:
        return []
    text = str(flt)
    return [c for c in schema.table(table).names if re.search(rf"\b{re.escape(c)}\b", text)]


def _read_shard(path: Path, names: list[str], target: pa.Schema) -> pa.Table:
    """The `names` columns of one loose shard cast to `target`; a column the shard lacks is
    empty. One open and one read: the file is decoded from memory (a writer renaming a new
    shard into place cannot mix two files), its footer parsed once and every page's checksum
    verified. pyarrow's per-file dataset setup (about five times this decode for a shard of a
    few hundred rows) is never paid, nor ParquetFile's Python set-up (half of a small shard's
    read on a 2-core machine): pyarrow's reader is driven directly where it has one. A column
    `target` types as a dictionary is read as one from the file's dictionary pages (no text
    per row is made; its value type is cast by the caller)."""
    with open(path, "rb") as fh:
        data = pa.BufferReader(fh.read())
    v1 = {new: old for old, new in schema.RENAMED.items()}
    coded = [c for c in names if pa.types.is_dictionary(target.field(c).type)] or None
    r = _Reader() if _Reader is not None else None
    if r is not None:
        try:
            r.open(data, page_checksum_verification=True, pre_buffer=False, read_dictionary=coded)
        except KeyError:  # a column it lacks (a v1 shard): read as texts, encoded by the caller's cast
            r = _Reader()
            r.open(data, page_checksum_verification=True, pre_buffer=False)
        except TypeError:  # a pyarrow whose reader takes other arguments
            r = None
    if r is None:  # the public wrapper, same checks
        pf = pq.ParquetFile(data, page_checksum_verification=True)
        have = set(pf.schema_arrow.names)
        old = schema.renamed_in(have)  # a v1 shard: columns renamed since, by their v1 names
        stored = {c: old.get(c, c) for c in names if old.get(c, c) in have}
        t = pf.read(columns=list(stored.values()), use_threads=False)
    else:
        idx, stored = [], {}
        for c in names:  # the current name, else (a v1 shard) the name it had then
            for s in (c, v1.get(c)):
                if s is None:
                    continue
                try:
                    idx.append(r.column_name_idx(s))
                    stored[c] = s
                    break
                except KeyError:
                    pass
        t = r.read_all(column_indices=idx, use_threads=False)
    if len(stored) == len(names) and all(stored[c] == c for c in names):
        return t.select(names)  # cast by the caller, a batch at once
    cols = [t[stored[c]] if c in stored else pa.nulls(t.num_rows, target.field(c).type) for c in names]
    return pa.Table.from_arrays(cols, names=names)


READERS = min(8, 2 * (os.cpu_count() or 1))
"""threads decoding loose shards at once: pyarrow reads and decodes with the GIL released, so a
2-core machine reads about twice as many small files per second as one thread does (more
threads than cores overlap the waits for files not in the page cache)"""
_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """The process's reader threads (made again in a forked child, which inherits no threads)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(READERS, thread_name_prefix="aifbench-read"))
    return _POOL[1]


def _try_shard(path: Path, names: list[str], target: pa.Schema) -> pa.Table | BaseException:
    """_read_shard's table, or the exception it raised (judged by the caller, in order)."""
    try:
        return _read_shard(path, names, target)
    except (OSError, pa.ArrowException) as exc:
        return exc


Side = tuple[list[str], object]
"""(columns, row filter) of a second view of a table read in the same pass over its files"""


def _stored(path: Path, full: pa.Schema) -> tuple[pa.Schema, dict[str, str]]:
    """`full` with the names a compacted file stores its columns under (a v1 file: the v1 names
    of renamed columns, schema.renamed_in), and current name -> stored name."""
    old = schema.renamed_in(pq.read_schema(path).names)
    return pa.schema([f.with_name(old.get(f.name, f.name)) for f in full]), old


def _loose(paths: list[Path], table: str, cols: list[str], flt: pc.Expression | None, bad: list[tuple[Path, str]],
           dictionary: bool = False, full: pa.Schema | None = None, side: Side | None = None,
           side_out: list[pa.Table] | None = None, distinct: bool = False, encoded: bool = False) -> pa.Table:
    """The `cols` of the rows of loose shards that pass `flt`, with FILE_IX (index into
    `paths`); `distinct`: each batch's distinct rows only (see read_table); `encoded`: the
    dictionary columns of `full` read as dictionaries from the files, never decoded (else they
    are decoded, filtered, then encoded: only kept rows are hashed). Shard by shard (see
    _read_shard; READERS at once), filtered LOOSE_BATCH shards at a time; a shard that cannot
    be read or cast is named in `bad` and left out whole. `side`: its columns of the rows
    passing its filter are appended to `side_out` (one table, with FILE_IX) from the same
    decoded shards: a second view costs no second read of the files."""
    full = arrow_schema(table, dictionary=dictionary) if full is None else full
    wanted = cols + (side[0] if side else [])
    names = list(dict.fromkeys(wanted + _filter_columns(table, flt) + (_filter_columns(table, side[1]) if side else [])))
    target = pa.schema([full.field(c) for c in names])
    plain = target if encoded else pa.schema(
        [pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in target])
    out: list[pa.Table] = []
    side_parts: list[pa.Table] = []
    for start in range(0, len(paths), LOOSE_BATCH):
        parts, ix, which = [], [], []
        batch = range(start, min(len(paths), start + LOOSE_BATCH))
        got = _pool().map(lambda i: _try_shard(paths[i], names, plain), batch) if len(batch) > 1 else \
            [_try_shard(paths[i], names, plain) for i in batch]
        for i, t in zip(batch, got):
            if isinstance(t, FileNotFoundError):
                if not paths[i].is_symlink():
                    raise t  # merged by a racing compaction: the caller rescans
                bad.append((paths[i], "a link to a file that does not exist"))  # a dangling link stays
                continue
            if isinstance(t, BaseException):
                bad.append((paths[i], f"unreadable Parquet or not {table} schema v{SCHEMA_VERSION}: {t}"))
                continue
            parts.append(t)
            ix.append(np.full(t.num_rows, i, np.int32))
            which.append(i)
        if not parts:
            continue
        try:  # one cast per batch; a file whose column cannot be cast is found file by file
            # one chunk per batch, not one per shard: a dictionary cast later makes one dictionary per chunk,
            # and pandas unifies them all (10^5 at 24,576 ranks)
            t = pa.concat_tables(parts, promote_options="permissive")
            t = (t if encoded else t.combine_chunks()).cast(plain)  # encoded: dictionaries unified by the writer
        except (pa.ArrowException, ValueError):
            keep = []
            for p, part, file_ix in zip([paths[j] for j in which], parts, ix):
                try:
                    keep.append((part.cast(plain), file_ix))
                except (pa.ArrowException, ValueError) as exc:
                    bad.append((p, f"unreadable Parquet or not {table} schema v{SCHEMA_VERSION}: {exc}"))
            if not keep:
                continue
            t, ix = pa.concat_tables([k[0] for k in keep]), [k[1] for k in keep]
        t = t.append_column(FILE_IX, pa.array(np.concatenate(ix), pa.int32()))
        if side is not None:
            s = t.filter(side[1]) if side[1] is not None else t
            side_parts.append(s.select(side[0] + [FILE_IX]).cast(
                pa.schema([target.field(c) for c in side[0]] + [pa.field(FILE_IX, pa.int32())])))
        if flt is not None:
            t = t.filter(flt)
        t = t.select(cols + [FILE_IX])  # dictionary-encoded after the filter: only kept rows are hashed
        t = t.cast(pa.schema([target.field(c) for c in cols] + [pa.field(FILE_IX, pa.int32())]))
        out.append(distinct_rows(t) if distinct else t)
    if side is not None and side_out is not None:
        side_out.append(pa.concat_tables(side_parts) if side_parts else
                        pa.schema([full.field(c) for c in side[0]] + [pa.field(FILE_IX, pa.int32())]).empty_table())
    if not out:
        return pa.schema([full.field(c) for c in cols] + [pa.field(FILE_IX, pa.int32())]).empty_table()
    return pa.concat_tables(out)


DISTINCT_ROWS = 1 << 20
"""scanned rows of a compacted file reduced to their distinct rows at once (a distinct read)"""


def distinct_rows(t: pa.Table) -> pa.Table:
    """`t`'s distinct rows, each where it first occurs (the order of first appearance kept)."""
    if not t.num_rows:
        return t
    t = t.unify_dictionaries()  # the grouper takes one dictionary per column, not one per chunk
    return t.group_by(t.column_names, use_threads=False).aggregate([]).select(t.column_names)


def _distinct_scan(scan: ds.Scanner) -> pa.Table:
    """The distinct rows of a scan, held DISTINCT_ROWS scanned rows at a time besides them."""
    kept: list[pa.Table] = []
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in scan.to_batches():
        held.append(batch)
        rows += batch.num_rows
        if rows >= DISTINCT_ROWS:
            kept.append(distinct_rows(pa.Table.from_batches(held, scan.projected_schema)))
            held, rows = [], 0
    kept.append(distinct_rows(pa.Table.from_batches(held, scan.projected_schema)))
    return distinct_rows(pa.concat_tables(kept))


DAMAGED = "damaged compacted file (its pages fail their checksum or do not decode)"


SMALL_COMPACTED = 1 << 20
"""bytes: a compacted file up to this size (a node's file: 4 ranks' metrics are about 40 kB) is
read whole like a loose shard; larger ones (a run's) are scanned row group by row group, their
text columns decoded as dictionaries (a 100,000-rank runs file of 6.7 MB holds 0.5 GB of
configuration texts, one per rank, read whole)"""


def _compacted(tf: TableFiles, table: str, cols: list[str], flt: pc.Expression | None, source: bool,
               dictionary: bool = False, bad: list[tuple[Path, str]] | None = None,
               distinct: bool = False, encoded: bool = False) -> list[pa.Table]:
    """The live rows of each compacted file; a damaged one is appended to `bad` (named, left out:
    every other file and run stays readable; `aifbench compact` quarantines it). `distinct`:
    only distinct rows, reduced DISTINCT_ROWS scanned rows at a time (see read_table)."""
    out = []
    small = []
    full = arrow_schema(table, source=True, dictionary=dictionary, encoded=encoded)
    for path, excluded in tf.compacted.items():
        if not excluded and path.stat().st_size <= SMALL_COMPACTED:
            small.append(path)
            continue
        f = flt
        if excluded:
            keep = ~pc.field(SOURCE_COL).isin(pa.array(sorted(excluded), pa.large_string()))
            f = keep if f is None else (f & keep)
        try:
            stored, old = _stored(path, _coded(table, full) if dictionary else full)
            want = cols + ([SOURCE_COL] if source else [])
            dset = ds.dataset(str(path), schema=stored, format=PARQUET)
            scan = dset.scanner(columns=[old.get(c, c) for c in want], filter=f, **READAHEAD)
            got = _distinct_scan(scan) if distinct else _narrow_scan(scan) if dictionary else scan.to_table()
            out.append(got.rename_columns(want))
        except FileNotFoundError:
            raise  # merged by a racing compaction: the caller rescans
        except (OSError, pa.ArrowException) as exc:
            if bad is None:
                raise
            bad.append((path, f"{DAMAGED}: {exc}"))
    if small:  # many node files: one read each, no per-file dataset setup
        damaged: list[tuple[Path, str]] = []
        t = _loose(small, table, cols + ([SOURCE_COL] if source else []), flt, damaged, full=full, distinct=distinct,
                   encoded=encoded)
        if damaged and bad is None:
            raise OSError(damaged[0][1])
        (bad if bad is not None else []).extend((p, f"{DAMAGED}: {why}") for p, why in damaged)
        out.append(t.drop_columns([FILE_IX]))
    return out


def read_source(rf: RunFiles, table: str, name: str) -> tuple[pa.Table, int]:
    """(rows, generation) of one source shard `name` as resolved: the loose shard, else its live
    copy in a compacted file; empty and generation 0 when the store has none. Every column."""
    tf = rf.tables.get(table)
    cols = _columns(table, None)
    empty = arrow_schema(table).empty_table()
    if tf is None:
        return empty, 0
    for p in tf.loose:
        if p.name == name:
            bad: list[tuple[Path, str]] = []
            t = _drop_bad_files(_loose([p], table, cols, None, bad), table, rf.run_dir.name, bad, rf.run_dir, [p])
            if bad:
                raise SchemaError(f"{p}: {bad[0][1]}")
            return t.drop_columns([FILE_IX]).cast(empty.schema), layout.shard_generation(p) or 0
    for path, excluded in tf.compacted.items():
        if name in tf.sources.get(path, {}) and name not in excluded:
            stored, old = _stored(path, arrow_schema(table, source=True))
            dset = ds.dataset(str(path), schema=stored, format=PARQUET)
            t = dset.to_table(columns=[old.get(c, c) for c in cols], filter=pc.field(SOURCE_COL) == name)
            return t.rename_columns(cols).cast(empty.schema), tf.generations.get(path, {}).get(name, 0)
    return empty, 0


def _per_value(col: pa.ChunkedArray, test: Callable[[Any], Any]) -> pa.ChunkedArray:
    """`test` (array -> booleans) of each row's value; a dictionary column's tested once per
    distinct value and taken by code (an encoded read: no text per row is made)."""
    if not pa.types.is_dictionary(col.type):
        return test(col)
    return pa.chunked_array([test(c.dictionary).take(c.indices) for c in col.chunks], pa.bool_())


def _among(values: pa.Array | pa.ChunkedArray, allowed: Iterable[str]) -> pa.Array | pa.ChunkedArray:
    """Boolean per text: it is one of `allowed` (texts)."""
    return pc.is_in(values.cast(pa.large_string()), pa.array(list(allowed), pa.large_string()))  # type: ignore[call-overload]


def _bad_rows(t: pa.Table, table: str, run_id: str) -> pa.ChunkedArray:
    """Boolean per row: breaks what a shard of this run may hold."""
    current = pa.array(sorted(schema.READ_AS_CURRENT), t.schema.field("schema_version").type)
    wrong = pc.or_(_per_value(t["run_id"], lambda v: pc.not_equal(v, run_id)),
                   pc.invert(pc.is_in(t["schema_version"], current)))
    required = {c.name for c in schema.table(table).columns if c.required}
    for name in t.column_names:
        if name in required:
            wrong = pc.or_(wrong, pc.is_null(t[name]))
    for name in t.column_names:  # infinities break every float column (schema.validate refuses them)
        if pa.types.is_floating(t.schema.field(name).type):
            wrong = pc.or_(wrong, pc.fill_null(pc.is_inf(t[name]), False))
    if table == "metrics" and "status" in t.column_names:
        wrong = pc.or_(wrong, _per_value(t["status"], lambda v: pc.invert(_among(v, schema.STATUSES))))
        if "value" in t.column_names:
            ok = _per_value(t["status"], lambda v: pc.equal(v, "ok"))
            missing = pc.or_(pc.is_null(t["value"]), pc.fill_null(pc.is_nan(t["value"]), False))
            wrong = pc.or_(wrong, pc.and_(ok, missing))
            if "metric" in t.column_names:
                unsigned = _per_value(t["metric"], lambda v: pc.invert(_among(v, schema.signed_metrics())))
                if "stat" in t.column_names:  # an interval's bound may be below 0 (schema.INTERVAL_BOUNDS)
                    unsigned = pc.and_(unsigned, _per_value(
                        t["stat"], lambda v: pc.invert(_among(v, schema.INTERVAL_BOUNDS))))
                wrong = pc.or_(wrong, pc.fill_null(pc.and_(pc.less(t["value"], 0.0), unsigned), False))
    return pc.fill_null(wrong, True)


def _why(t: pa.Table, run_id: str) -> str:
    versions = sorted(set(t["schema_version"].drop_null().to_pylist()))
    runs = sorted(set(t["run_id"].drop_null().to_pylist()))
    if runs and runs != [run_id]:
        return f"belongs to run {', '.join(map(str, runs[:3]))}, not to the run {run_id} it is stored in"
    if versions and max(versions) > SCHEMA_VERSION:
        return (f"schema version {max(versions)} is newer than this aifbench reads ({SCHEMA_VERSION}); "
                "upgrade aifbench to read it")
    if versions and not set(versions) <= schema.READ_AS_CURRENT:
        return f"schema version {min(set(versions) - schema.READ_AS_CURRENT)}: no migration to version {SCHEMA_VERSION}"
    return ("empty required column, an infinite number, a status ok without a finite value, or a negative "
            f"value of a metric that cannot be negative: breaks schema v{SCHEMA_VERSION}")


def _drop_bad_files(t: pa.Table, table: str, run_id: str, bad: list[tuple[Path, str]], where: Path,
                    paths: list[Path] | None = None) -> pa.Table:
    """`t` without the rows of files that break what this run may hold (each named in `bad`):
    loose rows name their file by FILE_IX (into `paths`), compacted rows by SOURCE_COL."""
    if not t.num_rows:
        return t
    mask = _bad_rows(t, table, run_id)
    if not pc.any(mask).as_py():
        return t
    who = FILE_IX if FILE_IX in t.column_names else SOURCE_COL if SOURCE_COL in t.column_names else None
    files = set(t.filter(mask)[who].to_pylist()) if who else {str(where)}
    for f in sorted(files):
        part = t.filter(pc.equal(t[who], f)) if who else t
        named = paths[int(f)] if who == FILE_IX and paths is not None else where / os.path.basename(str(f))
        bad.append((named, _why(part, run_id)))
    if who is None:
        return t.slice(0, 0)
    kind = t.schema.field(who).type  # a dictionary column (an encoded read) is matched on its texts
    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    return t.filter(pc.invert(pc.is_in(t[who], pa.array(sorted(files), kind))))


def read_table(rf: RunFiles, table: str, columns: list[str] | None = None, filter: pc.Expression | None = None,
               source: bool = False, bad: list[tuple[Path, str]] | None = None,
               dictionary: bool = False, side: Side | None = None,
               side_out: list[pa.Table] | None = None, distinct: bool = False, encoded: bool = False) -> pa.Table:
    """One table of one run: the requested columns (+ run_id, schema_version) of rows passing
    `filter` (a pyarrow.dataset expression), each source shard once. `source`: add SOURCE_COL,
    the loose shard a row came from. Bad files are appended to `bad` and left out. `dictionary`:
    text columns stay dictionary-encoded (to_frame(categorical=True) keeps them so). `side`
    (columns, filter): that view of the same table is appended to `side_out` as read_table would
    return it (plain text columns), the loose shards decoded once for both. `distinct`: the
    table's distinct rows (first occurrences, in order) for a reader that needs only which
    combinations of `columns` exist (runs.summary: a case's status per rank): each batch is
    reduced while read, so memory follows the distinct rows (10^6 at 10^5 ranks), not the rows
    (10^7); a file that breaks the run's rules is still named and left out whole. `encoded`:
    every text column, SOURCE_COL too, as dictionaries read from the files' dictionary pages,
    never a text per row (what compaction copies: compact.py)."""
    bad = rf.bad if bad is None else bad
    tf = rf.tables.get(table)
    cols = _columns(table, columns)
    if side is not None:
        side_cols = _columns(table, side[0])
        if side_out is None:
            side_out = []
        if tf is None:
            side_out.append(arrow_schema(table).empty_table().select(side_cols))
        else:
            side_out.append(_side(rf, tf, table, side_cols, side[1], bad))
            side = (side_cols, side[1])
    if tf is None:
        return arrow_schema(table, source, dictionary, encoded).empty_table().select(
            cols + ([SOURCE_COL] if source else []))
    run_id = rf.run_dir.name
    extra: list[pa.Table] = []
    loose = _drop_bad_files(_loose(tf.loose, table, cols, filter, bad, dictionary,
                                   full=arrow_schema(table, encoded=True) if encoded else None,
                                   side=side if side is not None and tf.loose else None, side_out=extra,
                                   distinct=distinct, encoded=encoded),
                            table, run_id, bad, rf.run_dir, tf.loose)
    if extra and side_out:  # the side view's loose rows, judged as their own read would judge them
        mine: list[tuple[Path, str]] = []
        rows = _drop_bad_files(extra[0], table, run_id, mine, rf.run_dir, tf.loose).drop_columns([FILE_IX])
        bad.extend(b for b in mine if b not in bad)
        side_out[-1] = pa.concat_tables([rows, side_out[-1].cast(rows.schema)])
    if source:
        names = pa.array([p.name for p in tf.loose], pa.large_string())
        if encoded:  # the shard names once, FILE_IX as their indices
            col = pa.chunked_array([pa.DictionaryArray.from_arrays(ix, names) for ix in loose[FILE_IX].chunks], DICT)
        else:
            col = names.take(loose[FILE_IX]) if len(names) else pa.array([], pa.large_string())
        loose = loose.append_column(SOURCE_COL, col)
    loose = loose.drop_columns([FILE_IX])
    parts = [loose] + [_drop_bad_files(c, table, run_id, bad, rf.run_dir)
                       for c in _compacted(tf, table, cols, filter, source, dictionary, bad, distinct, encoded)]
    if dictionary and table in CODED:  # a run id, a statistic, a status per row of 10^7, held as codes
        parts = [_encode(table, p) for p in parts]
    target = _common_schema(parts)
    out = pa.concat_tables([p.cast(target) for p in parts])
    return distinct_rows(out) if distinct else out


NARROW = pa.int16()
"""dictionary index type of a scanned batch whose dictionary fits it (a row group of 65,536 rows
holds a few dozen distinct texts per column): 2 bytes a row and column instead of 4; pandas
makes int8 or int16 category codes of either"""
NARROW_MAX = int(np.iinfo(np.int16).max)
"""the most distinct texts a NARROW batch dictionary holds"""


def _narrow_scan(scan: ds.Scanner) -> pa.Table:
    """A scan's rows, each batch's dictionary columns with NARROW indices where they fit (a
    column with a batch that does not fit keeps int32 in every batch): the kept rows of a
    10^5-rank run's metrics take about half the memory while read."""
    names = scan.projected_schema.names
    chunks: dict[str, list[pa.Array]] = {n: [] for n in names}
    for batch in scan.to_batches():
        for name, col in zip(names, batch.columns):
            if pa.types.is_dictionary(col.type) and len(col.dictionary) <= NARROW_MAX:
                col = col.cast(pa.dictionary(NARROW, col.type.value_type))
            chunks[name].append(col)
    schema = pa.schema([f.with_type(_widest({c.type for c in chunks[f.name]} or {f.type}))
                        for f in scan.projected_schema])
    return pa.Table.from_arrays([pa.chunked_array([c.cast(f.type) for c in chunks[f.name]], f.type)
                                 for f in schema], schema=schema)


def _common_schema(parts: list[pa.Table]) -> pa.Schema:
    """The schema the parts of one read are cast to: the first part's, a dictionary column with
    the widest index type of the parts with rows (a NARROW scan beside int32 loose shards: int32)."""
    return pa.schema([f.with_type(_widest({p.schema.field(f.name).type for p in parts if p.num_rows} or {f.type}))
                      for f in parts[0].schema])


def _widest(types: set[pa.DataType]) -> pa.DataType:
    """One type for a column's chunks or parts: theirs when they agree, else the dictionary
    type with the widest index (int16 chunks cast up to int32, never down)."""
    return max(types, key=lambda t: t.index_type.bit_width if pa.types.is_dictionary(t) else 0)


CODED = {"metrics": ("run_id", "stat", "status")}
"""PLAIN columns a dictionary read of the table holds as codes all the same (categories in
pandas), a compacted file read so from the start (its pages store them so): never a text per
row of 10^7 (the checks and filters on them are compute kernels, which read either)"""


def _coded(table: str, s: pa.Schema) -> pa.Schema:
    for name in CODED.get(table, ()):
        if name in s.names:
            s = s.set(s.get_field_index(name), pa.field(name, DICT))
    return s


def _encode(table: str, t: pa.Table) -> pa.Table:
    """`t` with its CODED columns dictionary-encoded (a dictionary column left as it is)."""
    for name in CODED.get(table, ()):
        if name in t.column_names and not pa.types.is_dictionary(t.schema.field(name).type):
            t = t.set_column(t.schema.get_field_index(name), name, pc.dictionary_encode(t[name]).cast(DICT))
    return t


def _side(rf: RunFiles, tf: TableFiles, table: str, cols: list[str], flt: pc.Expression | None,
          bad: list[tuple[Path, str]]) -> pa.Table:
    """The side view's rows of the compacted files (the loose ones come from the main pass)."""
    run_id = rf.run_dir.name
    mine: list[tuple[Path, str]] = []
    parts = [_drop_bad_files(c, table, run_id, mine, rf.run_dir) for c in _compacted(tf, table, cols, flt, False, False, mine)]
    bad.extend(b for b in mine if b not in bad)
    empty = arrow_schema(table).empty_table().select(cols)
    return pa.concat_tables([empty] + [p.cast(empty.schema) for p in parts])


def to_frame(t: pa.Table, categorical: bool = False) -> pd.DataFrame:
    """Arrow to pandas with the schema's dtypes (Int64, boolean, string, datetime64[ns, UTC]).
    `categorical`: dictionary columns become pandas categories (sorted, "" among them, so
    fillna("") and sorting behave as on strings); otherwise they are decoded to strings."""
    if not categorical:
        t = t.cast(pa.schema([pa.field(f.name, pa.large_string()) if pa.types.is_dictionary(f.type) else f
                              for f in t.schema]))
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(),
               pa.large_string(): pd.StringDtype("pyarrow"), pa.string(): pd.StringDtype("pyarrow")}
    cols: dict[str, pd.Series] = {}
    rows = t.num_rows
    for name in t.column_names:  # column by column, each Arrow column let go once converted: the
        one, t = t.select([name]), t.drop_columns([name])  # peak is one table and one column, not two tables
        s = one.to_pandas(types_mapper=mapping.get, self_destruct=True)[name]
        del one
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.astype("datetime64[ns, UTC]")
        elif isinstance(s.dtype, pd.CategoricalDtype):
            s = sorted_categories(s)
        cols[name] = s
    return pd.DataFrame(cols, index=pd.RangeIndex(rows), copy=False)


def sorted_categories(values: pd.Series) -> pd.Series:
    """A categorical with its categories sorted and "" among them."""
    values = values.astype("category")
    if "" not in values.cat.categories:
        values = values.cat.add_categories([""])
    return values.cat.reorder_categories(sorted(values.cat.categories))


def check_params(df: pd.DataFrame) -> list[str]:
    """Distinct `params` texts that are not JSON (a metrics row must carry JSON parameters)."""
    out = []
    if "params" in df.columns:
        for text in df["params"].dropna().unique():
            try:
                json.loads(text)
            except json.JSONDecodeError:
                out.append(str(text)[:60])
    return out


STREAM_SHARDS = 16
"""loose shards per batch of iter_table: every column and row of a shard is kept (a telemetry
shard holds thousands of rows), so fewer than a filtered read takes at once"""


def iter_table(rf: RunFiles, table: str, bad: list[tuple[Path, str]], rows: int = 65536) -> Iterator[pa.Table]:
    """Every column of every live row of one table, as Arrow tables of bounded size (at most
    LOOSE_BATCH loose shards, or one row group of `rows` of a compacted file): what export
    streams. The same rules as read_table: each source once, bad files named in `bad` and left
    out whole (a compacted file is checked in a first pass, so no source is half-written)."""
    tf = rf.tables.get(table)
    if tf is None:
        return
    cols, run_id, target = _columns(table, None), rf.run_dir.name, arrow_schema(table)
    for start in range(0, len(tf.loose), STREAM_SHARDS):
        chunk = tf.loose[start:start + STREAM_SHARDS]
        t = _drop_bad_files(_loose(chunk, table, cols, None, bad), table, run_id, bad, rf.run_dir, chunk)
        if t.num_rows:
            yield t.drop_columns([FILE_IX])
    for path, excluded in tf.compacted.items():
        try:
            skip = set(excluded) | _bad_sources(path, table, run_id, excluded, bad, rows, rf.run_dir)
            for t in _row_groups(path, table, skip, rows):
                yield t.drop_columns([SOURCE_COL]).cast(target)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            bad.append((path, f"{DAMAGED}: {exc}"))


def _row_groups(path: Path, table: str, skip: set[str], rows: int) -> Iterator[pa.Table]:
    """A compacted file's rows, batch by batch, cast to the table (with SOURCE_COL), without `skip`."""
    full = arrow_schema(table, source=True)
    fh = pq.ParquetFile(path, page_checksum_verification=True)
    drop = pa.array(sorted(skip), pa.large_string())
    new = {old: current for current, old in schema.renamed_in(fh.schema_arrow.names).items()}  # a v1 file
    for batch in fh.iter_batches(batch_size=rows):
        t = pa.Table.from_batches([batch])
        t = t.rename_columns([new.get(c, c) for c in t.column_names])
        t = pa.Table.from_arrays([t[c] if c in t.column_names else pa.nulls(t.num_rows, full.field(c).type)
                                  for c in full.names], names=full.names).cast(full)
        if len(drop):
            t = t.filter(pc.invert(pc.is_in(t[SOURCE_COL], drop)))
        if t.num_rows:
            yield t


def _bad_sources(path: Path, table: str, run_id: str, excluded: set[str], bad: list[tuple[Path, str]],
                 rows: int, where: Path) -> set[str]:
    """Sources of a compacted file whose rows break what this run may hold (named in `bad`)."""
    out: set[str] = set()
    for t in _row_groups(path, table, set(excluded), rows):
        before = len(bad)
        _drop_bad_files(t, table, run_id, bad, where)
        out.update(os.path.basename(str(p)) for p, _ in bad[before:])
    return out
