"""Compaction: a run's loose shards into one file per table, atomically and idempotently.

Per table, the live rows (layout.scan's resolution: loose shards, compacted files minus what
they must filter out) are streamed into a temporary file in the run directory, batch by batch
(never the whole table in memory), with SOURCE_COL naming each row's source shard and the
footer listing every source with its (size, mtime_ns). The file is renamed into place as
`<table>.compact-<digest>.parquet` (digest of the source list: two compactions of the same
shards produce the same name and content); only then are the sources deleted — a loose shard
only when its signature is still the one read (a rank that rewrote it keeps it), and the
compacted files that were merged.

A crash at any point leaves a state layout.scan reads exactly once; a second compaction
finishes the job or, when there is nothing to do, changes nothing. Bad shards (another run,
another schema version, unreadable) are left where they are and named.

The store's rules (docs/store.md): compactions of one run directory take turns (LOCK_NAME,
flock, waited for); the rename and the deletions happen under the directory's exclusive reader
lock (read.snapshot), so a reader sees the run before or after a compaction, never between.
Nothing is deleted whose rows are not in the output: a loose shard only when its signature is
the one read; an older compacted file only after its live rows were copied; rows it held of a
source that a newer generation replaced are counted in `dropped`. Older copies of a loose shard
(layout `stale`) are left in place. A compacted file that fails its checksums is renamed to
`.<name>.damaged` (quarantined, named in `bad`) and its rows are not counted as kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from aifbench.errors import ConfigError, SchemaError
from aifbench.results import layout, read, schema
from aifbench.results.layout import META_KEY, TableFiles

RETRIES = 5
"""rescans when a racing compaction removed a file while this one read it"""
BATCH_SHARDS = 256
"""loose shards read per batch (one row group each): bounds memory while compacting"""
ROW_GROUP_ROWS = 65536
"""rows per Parquet row group: what a reader decodes at once (bounds its peak memory)"""


STATISTICS = ["rank", layout.SOURCE_COL]
"""columns whose row-group minimum and maximum a compacted file records: what readers prune on
(import's rank windows, exchange._rank_range; one source's rows, read.read_source). A row group
holds every case, metric and status of its ranks, so statistics of those prune nothing; text
statistics were a third of the time written (telemetry at 2,048 ranks: 1.4 -> 0.9 s)"""


RUN_CODEC = "zstd"
"""compression of a run's compacted file (large: read once per command, kept)"""
NODE_CODEC = "snappy"
"""compression of a node's file (small, read once by the run's merge), as of a loose shard: a
zstd column chunk costs a decompression set-up that dominates a file of a few ranks (node files
of a 2,048-rank run read in 4.4 -> 2.4 ms (runs), 3.3 -> 1.7 ms (metrics), 2.3 -> 1.4 ms
(telemetry) each, about the same size)"""


LOCK_NAME = ".compact.lock"
"""the lock file in a run directory that makes its compactions take turns"""
QUARANTINE = ".{name}.damaged"
"""what a damaged compacted file is renamed to (never read: its name does not end in .parquet)"""


@dataclass
class CompactReport:
    run_dir: Path
    written: list[Path] = field(default_factory=list)
    removed: int = 0
    """source files deleted after their rows were in a compacted file"""
    bad: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)
    """table -> rows in its compacted file"""
    dropped: list[str] = field(default_factory=list)
    """one line per source whose rows in an older compacted file a newer generation replaced"""
    quarantined: list[Path] = field(default_factory=list)
    """damaged compacted files renamed aside (their rows are no longer read)"""

    def summary(self) -> str:
        """What was kept and dropped, in one line."""
        kept = ", ".join(f"{t} {n}" for t, n in sorted(self.kept.items())) or "nothing rewritten"
        out = f"rows kept: {kept}"
        if self.dropped:
            out += f"; replaced by a newer generation: {'; '.join(self.dropped[:5])}" + (
                f" (+{len(self.dropped) - 5} more)" if len(self.dropped) > 5 else "")
        return out

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


@contextlib.contextmanager
def turn(run_dir: Path) -> Iterator[None]:
    """Wait for this run directory's compaction lock (LOCK_NAME) and hold it."""
    try:
        fh = open(Path(run_dir) / LOCK_NAME, "a")
    except OSError as exc:
        raise ConfigError(f"cannot compact {run_dir}: its lock file cannot be made ({exc.strerror}); "
                          "compaction needs a writable run directory") from None
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except OSError:  # a file system without flock (Lustre mounted without it): racing compactions
            pass         # still leave a state read once (layout.py) and merged by the next one
        yield  # closing the file releases the lock


def compact(run_dir: Path, batch: int = BATCH_SHARDS, files: list[Path] | None = None,
            origin: dict[str, Any] | None = None, workers: int | None = None) -> CompactReport:
    """Compact every table of one run directory; see the module docstring. `files`: only these
    files of it (a node's shards, results/node.py: disjoint from every other node's, so node
    merges do not take turns; their commits still take the exclusive reader lock); `origin`
    goes into the footer record (the node that merged them). `workers`: batches read at once
    in threads while the last is written (default: the CPUs, at most MAX_WORKERS; 1 reads each
    batch, then writes it)."""
    if files is not None:
        return _compact(Path(run_dir), batch, files, origin, workers)
    with turn(Path(run_dir)):
        return _compact(Path(run_dir), batch, None, origin, workers)


def _compact(run_dir: Path, batch: int, files: list[Path] | None = None, origin: dict[str, Any] | None = None,
             workers: int | None = None) -> CompactReport:
    if files is None:
        _remove_stale_temporaries(run_dir)
    rf = layout.scan(run_dir, files)
    report = CompactReport(run_dir, bad=list(rf.bad), notes=rf.notes())
    footless = [p for p, _ in rf.bad if layout.COMPACT_RE.match(p.name)]  # footer unreadable: damaged
    if footless:
        with read.snapshot(run_dir, exclusive=True):
            for path in footless:
                _quarantine(path, report)
    for table in sorted(rf.tables):
        if table not in schema.TABLES:
            report.bad.append((run_dir / f"{table}.*", f"unknown table {table!r}; allowed: "
                               + ", ".join(schema.TABLES)))
            continue
        for attempt in range(RETRIES):
            tf = rf.tables.get(table, TableFiles())
            if not tf.loose and len(tf.compacted) <= 1 and not any(tf.compacted.values()):
                for path in tf.compacted:  # nothing to merge: check the one file's pages
                    why = verify(path)
                    if why:
                        report.bad.append((path, why))
                        with read.snapshot(run_dir, exclusive=True):
                            _quarantine(path, report)
                        break
                else:
                    report.removed += _remove_loose(tf.leftovers, tf.sources)  # finish a half-done compaction
                break
            try:
                _compact_table(rf.run_dir, table, tf, report, batch, origin, workers,
                               codec=NODE_CODEC if files is not None else RUN_CODEC)
                break
            except FileNotFoundError:  # a racing compaction merged a file we were reading: its rows
                rf = layout.scan(run_dir, None if files is None else [f for f in files if f.exists()])
    return report


MAX_WORKERS = 8
SMALL_FILES = 64
"""compacted files (node files) read per batch"""


def _read_batch(run_dir: Path, table: str, loose: list[Path], compacted: dict[Path, set[str]],
                sources: dict[Path, dict[str, layout.Signature]],
                generations: dict[Path, dict[str, int]]
                ) -> tuple[pa.Table, list[tuple[Path, str]], dict[str, tuple[int, int, int]]]:
    """(arrow table with SOURCE_COL, bad files, {source name: (size, mtime_ns, generation)}) of
    one batch. A damaged compacted file's sources are not among the sources (compact
    quarantines it); nor is a bad loose shard."""
    bad: list[tuple[Path, str]] = []
    sigs: dict[str, tuple[int, int, int]] = {}
    live = []
    for p in loose:
        try:
            sigs[p.name] = (*layout.signature(p), _generation(p))
            live.append(p)
        except FileNotFoundError:  # gone: another compaction has it
            continue
    tf = TableFiles(loose=live, compacted=dict(compacted), sources={p: sources[p] for p in compacted})
    t = read.read_table(layout.RunFiles(run_dir, {table: tf}), table, source=True, bad=bad, encoded=True)
    damaged = {p for p, _ in bad}
    for path, excluded in compacted.items():
        if path not in damaged:
            gens = generations.get(path, {})
            sigs.update({n: (*sig, gens.get(n, 0)) for n, sig in sources[path].items() if n not in excluded})
    for p in damaged:
        sigs.pop(p.name, None)
    return t, bad, sigs


def _jobs(tf: TableFiles, batch: int) -> list[tuple[list[Path], dict[Path, set[str]]]]:
    """The batches of one table in rank order (the rows of a merged run follow their ranks, so a
    row group's rank statistics span a few hundred ranks, and output lists rows as ranks wrote
    them): large compacted files alone, small ones (node files) and loose shards in groups."""
    last = (1 << 62, "")

    def first(names: Iterable[str]) -> tuple[int, str]:
        """The lowest (rank, part) among shard names (a name of another form sorts last)."""
        return min((layout.shard_id(n) or last for n in names), default=last)

    keyed: list[tuple[tuple[int, str], tuple[list[Path], dict[Path, set[str]]]]] = []
    small: list[tuple[tuple[int, str], Path]] = []
    for path, excluded in tf.compacted.items():
        if excluded or path.stat().st_size > read.SMALL_COMPACTED:
            keyed.append((first(tf.sources.get(path, {})), ([], {path: excluded})))
        else:
            small.append((first(tf.sources.get(path, {})), path))
    small.sort()
    for i in range(0, len(small), SMALL_FILES):
        group = small[i:i + SMALL_FILES]
        keyed.append((group[0][0], ([], {p: set() for _, p in group})))
    loose = sorted(tf.loose, key=lambda p: first([p.name]))
    keyed += [(first([loose[i].name]), (loose[i:i + batch], {})) for i in range(0, len(loose), batch)]
    return [job for _, job in sorted(keyed, key=lambda kj: kj[0])]


def _batches(run_dir: Path, table: str, tf: TableFiles, batch: int, bad: list[tuple[Path, str]],
             sources: dict[str, tuple[int, int, int]], workers: int | None = None) -> Iterator[pa.Table]:
    """Arrow tables of live rows with SOURCE_COL, in order; fills `sources` with what was read.
    Batches are read in `workers` threads while the caller writes the last one (pyarrow decodes
    and encodes with the GIL released; threads share the tables, where processes pickled every
    row across: 1.6x slower at 2,048 ranks on 2 CPUs). At most two batches per thread wait, so
    memory stays a few batches; they are yielded in order."""
    jobs = _jobs(tf, batch)

    def args(job: tuple[list[Path], dict[Path, set[str]]]) -> tuple[
            Path, str, list[Path], dict[Path, set[str]], dict[Path, dict[str, layout.Signature]], dict[Path, dict[str, int]]]:
        return (run_dir, table, job[0], job[1], {p: tf.sources[p] for p in job[1]},
                {p: tf.generations.get(p, {}) for p in job[1]})

    workers = min(MAX_WORKERS, os.cpu_count() or 1, len(jobs)) if workers is None else workers
    if workers <= 1 or len(jobs) < 4:
        for job in jobs:
            t, b, sigs = _read_batch(*args(job))
            bad += b
            sources.update(sigs)
            yield t
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="aifbench-compact") as pool:
        todo = iter(jobs)
        pending = deque(pool.submit(_read_batch, *args(job)) for _, job in zip(range(2 * workers), todo))
        while pending:
            t, b, sigs = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_read_batch, *args(nxt)))
            bad += b
            sources.update(sigs)
            yield t


def _generation(path: Path) -> int:
    """A loose shard's generation (0 when its footer has none or cannot be read)."""
    try:
        return layout.shard_generation(path) or 0
    except SchemaError:
        return 0


def _compact_table(run_dir: Path, table: str, tf: TableFiles, report: CompactReport, batch: int,
                   origin: dict[str, Any] | None = None, workers: int | None = None, codec: str = RUN_CODEC) -> None:
    target = read.arrow_schema(table, source=True, encoded=True)
    tmp = run_dir / f".{table}.compact-tmp-{os.getpid()}-{secrets.token_hex(4)}.parquet"
    sources: dict[str, tuple[int, int, int]] = {}
    before = len(report.bad)
    rows = 0
    try:
        with pq.ParquetWriter(tmp, target, compression=codec, write_page_checksum=True, store_schema=False,
                              write_statistics=STATISTICS) as writer:
            for t in _batches(run_dir, table, tf, batch, report.bad, sources, workers):
                if t.num_rows:  # one dictionary per column and batch: the writer stores its codes as they
                    writer.write_table(t.cast(target).unify_dictionaries(),  # are, no text hashed again
                                       row_group_size=ROW_GROUP_ROWS)
                    rows += t.num_rows
            meta = {"run_id": run_dir.name, "table": table, "schema_version": schema.SCHEMA_VERSION,
                    "sources": {k: list(v) for k, v in sorted(sources.items())}, **(origin or {})}
            writer.add_key_value_metadata({META_KEY: json.dumps(meta)})
        digest = hashlib.sha256(json.dumps(meta["sources"], sort_keys=True).encode()).hexdigest()[:16]
        final = run_dir / f"{table}.compact-{digest}.parquet"
        os.chmod(tmp, 0o644)
        damaged = {p for p, _ in report.bad[before:] if p in tf.compacted}
        dropped = _superseded(tf, damaged)
        with read.snapshot(run_dir, exclusive=True):  # readers see the run before or after, never between
            os.replace(tmp, final)
            for old in tf.compacted:
                if old in damaged:
                    _quarantine(old, report)
                elif old != final:
                    old.unlink(missing_ok=True)
                    report.removed += 1
            loose = [p for p in tf.loose + tf.leftovers if p.name in sources]
            report.removed += _remove_loose(loose, {final: {k: (v[0], v[1]) for k, v in sources.items()}})
    finally:
        tmp.unlink(missing_ok=True)
    report.written.append(final)
    report.kept[table] = rows
    report.dropped += dropped


def _superseded(tf: TableFiles, damaged: set[Path]) -> list[str]:
    """'<source>: N row(s)' for each source whose rows in a compacted file are filtered out (a newer
    generation of it is read instead, or another compacted file holds it)."""
    out = []
    for path, excluded in tf.compacted.items():
        if not excluded or path in damaged:
            continue
        dset = ds.dataset(str(path), schema=read.arrow_schema(tf_table(path), source=True), format=read.PARQUET)
        t = dset.to_table(columns=[layout.SOURCE_COL],
                          filter=pc.field(layout.SOURCE_COL).isin(pa.array(sorted(excluded), pa.large_string())))
        for d in sorted(pc.value_counts(t[layout.SOURCE_COL]).to_pylist(), key=lambda d: d["values"]):
            if d["values"] not in tf.raced:  # a raced source's rows are in another compacted file
                out.append(f"{d['values']}: {d['counts']} row(s)")
    return out


def tf_table(path: Path) -> str:
    """The table a compacted file holds, from its name."""
    m = layout.COMPACT_RE.match(path.name)
    assert m is not None, f"{path.name}: not a compacted file's name"  # callers pass compacted files only
    return m["table"]


def verify(path: Path) -> str | None:
    """Why a compacted file is damaged (every page read, its checksum checked), None when whole.
    Batch by batch: memory stays near one row group."""
    try:
        fh = pq.ParquetFile(path, page_checksum_verification=True)
        for _ in fh.iter_batches(batch_size=ROW_GROUP_ROWS):
            pass
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as exc:
        return f"{read.DAMAGED}: {exc}"
    return None


def _quarantine(path: Path, report: CompactReport) -> None:
    """Rename a damaged compacted file aside, so the run's other files stay readable."""
    target = path.with_name(QUARANTINE.format(name=path.name))
    try:
        os.replace(path, target)
        report.quarantined.append(target)
    except FileNotFoundError:
        pass


STALE_TMP_S = 3600.0
"""a temporary file of a compaction untouched this long was left by a crash"""


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of crashed compactions (never read: their names start with a dot)."""
    import time

    for p in run_dir.glob(".*.compact-tmp-*.parquet"):
        try:
            if time.time() - p.stat().st_mtime > STALE_TMP_S:
                p.unlink()
        except FileNotFoundError:
            continue
    for p in run_dir.glob(".*.parquet.del-*"):  # a shard set aside for deletion when a compaction died:
        name = p.name[1:].split(".del-")[0]      # back under its name, unless a newer one is there (then
        try:                                     # it is either a leftover or older, never read twice)
            os.link(p, run_dir / name)
        except FileExistsError:
            pass
        except FileNotFoundError:
            continue
        p.unlink(missing_ok=True)


def _remove_loose(paths: list[Path], recorded: dict[Path, dict[str, layout.Signature]]) -> int:
    """Delete loose shards whose current signature is the one a compacted file recorded."""
    sigs: dict[str, layout.Signature] = {}
    for src in recorded.values():
        sigs.update(src)
    n = 0
    for p in paths:
        try:
            if layout.signature(p) == sigs.get(p.name):
                n += _remove_if_unchanged(p, sigs[p.name])
        except FileNotFoundError:
            continue
    return n


def _remove_if_unchanged(path: Path, sig: layout.Signature) -> bool:
    """Delete `path` only if it is still the file read: it is renamed aside first (atomic: whichever
    version is there now), then checked; a version a rank wrote between the check above and the
    rename is put back (unless a yet newer one is already in place), never deleted."""
    aside = path.with_name(f".{path.name}.del-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if layout.signature(aside) == sig:
        aside.unlink()
        return True
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    aside.unlink()
    return False
