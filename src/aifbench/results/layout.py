"""Which files of a run directory hold which rows: loose shards, compacted files, leftovers.

A run directory holds loose shards `<table>.rank<N>.<part>.parquet` (one per rank, part and
table, written atomically by the rank itself) and, after `compact`, compacted files
`<table>.compact-<digest>.parquet`. A compacted file's rows carry the column SOURCE_COL (the
loose shard each row came from, dictionary-encoded) and its footer lists every source with
the (size, mtime_ns, generation) it had when read. Every loose shard carries a generation in its
footer (GEN_KEY): its writer's flush count, continued across requeues from what is committed, so
a higher generation is newer content whatever the file's size or mtime says. The rules that make
every state of a run readable, whatever crashed, raced or was copied back (docs/store.md):

- a loose shard listed in a compacted file with the same (size, mtime_ns) is a leftover of a
  compaction that stopped before deleting it (half-compacted): the compacted copy is read;
- a loose shard listed with a higher generation was rewritten after compaction (a requeued
  rank): the loose shard is read and that source's rows are filtered out of compacted files;
- a loose shard listed with the same or a lower generation is an older copy (a backup or rsync
  put back): it is not read and never deleted (`stale`); the compacted rows win;
- a source listed in two compacted files (two compactions raced) is read from one file only:
  the highest generation, then the newest signature, then the file name decides; the other file
  filters it out.
So every source shard is read exactly once, and only its newest committed generation.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aifbench.errors import SchemaError

SHARD_RE = re.compile(r"^(?P<table>[a-z]+)\.rank(?P<rank>\d{5,})\.(?P<part>[A-Za-z0-9_-]+)\.parquet$")
COMPACT_RE = re.compile(r"^(?P<table>[a-z]+)\.compact-(?P<digest>[0-9a-f]{16})\.parquet$")
SOURCE_COL = "_shard"
META_KEY = b"aifbench.compacted"
GEN_KEY = b"aifbench.shard"
"""footer key of a loose shard: {"generation": N}"""

Signature = tuple[int, int]
"""(size in bytes, mtime in ns) of a loose shard"""


def signature(path: Path) -> Signature:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def shard_generation(path: Path) -> int | None:
    """The generation a loose shard's footer records; None when it has none (written by an
    aifbench before generations); SchemaError when the footer cannot be read."""
    try:
        meta = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise SchemaError(f"unreadable Parquet footer: {exc}") from None
    try:
        return int(json.loads(meta[GEN_KEY])["generation"])
    except (KeyError, ValueError, TypeError):
        return None


def compact_meta(path: Path) -> dict[str, Any]:
    """The footer record of a compacted file: run_id, table, schema_version, sources."""
    try:
        meta = pq.read_metadata(path).metadata or {}
        record: dict[str, Any] = json.loads(meta[META_KEY])
        return record
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        raise SchemaError(f"compacted file without a readable source list: {exc}") from None


@dataclass
class TableFiles:
    """The files of one table in one run directory, resolved: what to read and what to skip."""

    loose: list[Path] = field(default_factory=list)
    """loose shards to read whole"""
    compacted: dict[Path, set[str]] = field(default_factory=dict)
    """compacted file -> source shard names whose rows must be filtered out of it"""
    leftovers: list[Path] = field(default_factory=list)
    """loose shards already in a compacted file (half-compacted run): not read"""
    sources: dict[Path, dict[str, Signature]] = field(default_factory=dict)
    """compacted file -> its sources as recorded"""
    raced: list[str] = field(default_factory=list)
    """source names found in more than one compacted file (read once)"""
    generations: dict[Path, dict[str, int]] = field(default_factory=dict)
    """compacted file -> the generation of each source that recorded one"""
    stale: list[Path] = field(default_factory=list)
    """loose shards of an older (or the same) generation than their compacted copy: not read, kept"""


@dataclass
class RunFiles:
    run_dir: Path
    tables: dict[str, TableFiles] = field(default_factory=dict)
    bad: list[tuple[Path, str]] = field(default_factory=list)
    """files that are not readable as part of this run, with why"""

    def notes(self) -> list[str]:
        """One line per detected irregularity (half-compacted, raced compactions)."""
        out = []
        for name, tf in sorted(self.tables.items()):
            if tf.leftovers:
                out.append(f"{self.run_dir.name}: half-compacted {name}: {len(tf.leftovers)} shard(s) such as "
                           f"{tf.leftovers[0].name} are already in a compacted file (read once; "
                           f"'aifbench compact' finishes the job)")
            if tf.raced:
                out.append(f"{self.run_dir.name}: {len(tf.raced)} {name} shard(s) such as {tf.raced[0]} are in "
                           f"{len(tf.compacted)} compacted files (raced compactions; read once)")
            if tf.stale:
                out.append(f"{self.run_dir.name}: {len(tf.stale)} {name} shard(s) such as {tf.stale[0].name} are "
                           f"older copies of rows a compacted file holds newer (not read, left in place)")
        return out


def scan(run_dir: Path, files: list[Path] | None = None) -> RunFiles:
    """Resolve the parquet files of one run directory (or the given subset of it)."""
    run_dir = Path(run_dir)
    if files is None:
        files = sorted(p for p in run_dir.glob("*.parquet") if not p.name.startswith("."))
    out = RunFiles(run_dir)
    loose: dict[str, dict[str, Path]] = {}
    for p in files:
        m = SHARD_RE.match(p.name)
        c = COMPACT_RE.match(p.name)
        if m:
            loose.setdefault(m["table"], {})[p.name] = p
        elif c:
            try:
                meta = compact_meta(p)
            except SchemaError as exc:
                out.bad.append((p, str(exc)))
                continue
            tf = out.tables.setdefault(c["table"], TableFiles())
            tf.sources[p] = {k: (int(v[0]), int(v[1])) for k, v in meta["sources"].items()}
            tf.generations[p] = {k: int(v[2]) for k, v in meta["sources"].items() if len(v) > 2}
        else:
            out.bad.append((p, "not a shard name (<table>.rank<NNNNN>.<part>.parquet or "
                               "<table>.compact-<digest>.parquet)"))
    for table in set(loose) | set(out.tables):
        _resolve(out.tables.setdefault(table, TableFiles()), loose.get(table, {}))
    return out


def _resolve(tf: TableFiles, loose: dict[str, Path]) -> None:
    owner: dict[str, tuple[int, Signature, Path]] = {}
    for path in sorted(tf.sources):
        tf.compacted[path] = set()
        gens = tf.generations.get(path, {})
        for name, sig in tf.sources[path].items():
            mine = (gens.get(name, -1), sig, path)
            if name in owner:
                tf.raced.append(name)
                if (mine[0], mine[1], path.name) <= (owner[name][0], owner[name][1], owner[name][2].name):
                    tf.compacted[path].add(name)
                    continue
                tf.compacted[owner[name][2]].add(name)
            owner[name] = mine
    for name, path in sorted(loose.items()):
        if name not in owner:
            tf.loose.append(path)
            continue
        try:
            sig = signature(path)
        except FileNotFoundError:  # deleted by a compaction finishing right now: its copy is read
            continue
        if sig == owner[name][1]:
            tf.leftovers.append(path)
        elif _newer(path, owner[name][0]):  # rewritten after compaction: the loose shard is newer
            tf.loose.append(path)
            for p in tf.compacted:
                tf.compacted[p].add(name)
        else:
            tf.stale.append(path)


def _newer(path: Path, recorded: int) -> bool:
    """Whether a loose shard holds a newer generation than its compacted copy recorded; without a
    generation on either side (files of an earlier aifbench) a rewritten shard counts as newer."""
    try:
        gen = shard_generation(path)
    except (SchemaError, FileNotFoundError):  # a damaged copy never hides the compacted rows
        return False
    if gen is None or recorded < 0:
        return True
    return gen > recorded


def shard_id(name: str) -> tuple[int, str] | None:
    """(rank, part) of a loose shard name, None for any other name."""
    m = SHARD_RE.match(os.path.basename(name))
    return (int(m["rank"]), m["part"]) if m else None
