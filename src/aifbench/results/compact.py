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
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from aifbench.results import layout, read, schema
from aifbench.results.layout import META_KEY, TableFiles

RETRIES = 5
"""rescans when a racing compaction removed a file while this one read it"""
BATCH_SHARDS = 256
"""loose shards read per batch (one row group each): bounds memory while compacting"""
ROW_GROUP_ROWS = 65536
"""rows per Parquet row group: what a reader decodes at once (bounds its peak memory)"""


@dataclass
class CompactReport:
    run_dir: Path
    written: list[Path] = field(default_factory=list)
    removed: int = 0
    """source files deleted after their rows were in a compacted file"""
    bad: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def compact(run_dir: Path, batch: int = BATCH_SHARDS, files: list[Path] | None = None,
            origin: dict | None = None, workers: int | None = None) -> CompactReport:
    """Compact every table of one run directory; see the module docstring. `files`: only these
    files of it (a node's shards: results/node.py); `origin` goes into the footer record (the
    node that merged them). `workers`: processes reading batches (default: the CPUs, at most
    MAX_WORKERS; 1 reads in this process)."""
    run_dir = Path(run_dir)
    if files is None:
        _remove_stale_temporaries(run_dir)
    rf = layout.scan(run_dir, files)
    report = CompactReport(run_dir, bad=list(rf.bad), notes=rf.notes())
    for table in sorted(rf.tables):
        if table not in schema.TABLES:
            report.bad.append((run_dir / f"{table}.*", f"unknown table {table!r}; allowed: "
                               + ", ".join(schema.TABLES)))
            continue
        for attempt in range(RETRIES):
            tf = rf.tables.get(table, TableFiles())
            if not tf.loose and len(tf.compacted) <= 1 and not any(tf.compacted.values()):
                report.removed += _remove_loose(tf.leftovers, tf.sources)  # finish a half-done compaction
                break
            try:
                _compact_table(rf.run_dir, table, tf, report, batch, origin, workers)
                break
            except FileNotFoundError:  # a racing compaction merged a file we were reading: its rows
                rf = layout.scan(run_dir, None if files is None else [f for f in files if f.exists()])
    return report


MAX_WORKERS = 8
SMALL_FILES = 64
"""compacted files (node files) read per batch"""


def _read_batch(run_dir: Path, table: str, loose: list[Path], compacted: dict[Path, set[str]],
                sources: dict[Path, dict[str, layout.Signature]]) -> tuple:
    """(arrow table with SOURCE_COL, bad files, {source name: signature}) of one batch."""
    bad: list[tuple[Path, str]] = []
    sigs: dict[str, layout.Signature] = {}
    for path, excluded in compacted.items():
        sigs.update({n: sig for n, sig in sources[path].items() if n not in excluded})
    live = []
    for p in loose:
        try:
            sigs[p.name] = layout.signature(p)
            live.append(p)
        except FileNotFoundError:  # gone: another compaction has it
            continue
    tf = TableFiles(loose=live, compacted=dict(compacted), sources={p: sources[p] for p in compacted})
    t = read.read_table(layout.RunFiles(run_dir, {table: tf}), table, source=True, bad=bad)
    for p, _ in bad:
        sigs.pop(p.name, None)
        for name in sources.get(p, {}):
            sigs.pop(name, None)
    return t, bad, sigs


def _jobs(tf: TableFiles, batch: int) -> list[tuple[list[Path], dict[Path, set[str]]]]:
    """The batches of one table: large compacted files alone, small ones (node files) and
    loose shards in groups."""
    out: list[tuple[list[Path], dict[Path, set[str]]]] = []
    small: list[Path] = []
    for path, excluded in tf.compacted.items():
        if excluded or path.stat().st_size > read.SMALL_COMPACTED:
            out.append(([], {path: excluded}))
        else:
            small.append(path)
    out += [([], {p: set() for p in small[i:i + SMALL_FILES]}) for i in range(0, len(small), SMALL_FILES)]
    out += [(tf.loose[i:i + batch], {}) for i in range(0, len(tf.loose), batch)]
    return out


def _batches(run_dir: Path, table: str, tf: TableFiles, batch: int, bad: list, sources: dict,
             workers: int | None = None):
    """Arrow tables of live rows with SOURCE_COL, in order; fills `sources` with what was read.
    Batches are read in worker processes when there are CPUs for it (at most two per worker
    waiting, so memory stays a few batches), and written here in order."""
    jobs = _jobs(tf, batch)
    workers = min(MAX_WORKERS, os.cpu_count() or 1, len(jobs)) if workers is None else workers
    if workers <= 1 or len(jobs) < 4:
        for loose, compacted in jobs:
            t, b, sigs = _read_batch(run_dir, table, loose, compacted, tf.sources)
            bad += b
            sources.update(sigs)
            yield t
        return
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    def submit(pool, job):
        return pool.submit(_read_batch, run_dir, table, job[0], job[1], {p: tf.sources[p] for p in job[1]})

    with ProcessPoolExecutor(workers) as pool:
        todo = iter(jobs)
        pending = deque(submit(pool, job) for _, job in zip(range(2 * workers), todo))
        while pending:
            t, b, sigs = pending.popleft().result()
            job = next(todo, None)
            if job is not None:
                pending.append(submit(pool, job))
            bad += b
            sources.update(sigs)
            yield t


def _compact_table(run_dir: Path, table: str, tf: TableFiles, report: CompactReport, batch: int,
                   origin: dict | None = None, workers: int | None = None) -> None:
    target = read.arrow_schema(table, source=True)
    tmp = run_dir / f".{table}.compact-tmp-{os.getpid()}-{secrets.token_hex(4)}.parquet"
    sources: dict[str, layout.Signature] = {}
    try:
        with pq.ParquetWriter(tmp, target, compression="zstd") as writer:
            for t in _batches(run_dir, table, tf, batch, report.bad, sources, workers):
                if t.num_rows:
                    writer.write_table(t.cast(target), row_group_size=ROW_GROUP_ROWS)
            meta = {"run_id": run_dir.name, "table": table, "schema_version": schema.SCHEMA_VERSION,
                    "sources": {k: list(v) for k, v in sorted(sources.items())}, **(origin or {})}
            writer.add_key_value_metadata({META_KEY: json.dumps(meta)})
        digest = hashlib.sha256(json.dumps(meta["sources"], sort_keys=True).encode()).hexdigest()[:16]
        final = run_dir / f"{table}.compact-{digest}.parquet"
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    report.written.append(final)
    unread = {p for p, _ in report.bad}
    for old in tf.compacted:
        if old != final and old not in unread:  # an unreadable file stays where it is, named
            old.unlink(missing_ok=True)
            report.removed += 1
    loose = [p for p in tf.loose + tf.leftovers if p.name in sources]
    report.removed += _remove_loose(loose, {final: sources})


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


def _remove_loose(paths: list[Path], recorded: dict[Path, dict[str, layout.Signature]]) -> int:
    """Delete loose shards whose current signature is the one a compacted file recorded."""
    sigs: dict[str, layout.Signature] = {}
    for src in recorded.values():
        sigs.update(src)
    n = 0
    for p in paths:
        try:
            if layout.signature(p) == sigs.get(p.name):
                p.unlink()
                n += 1
        except FileNotFoundError:
            continue
    return n
