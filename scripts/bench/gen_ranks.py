#!/usr/bin/env python3
"""Replicate one real run to N ranks, with planted slow GPUs and nodes (for scale and outlier tests).

    python scripts/bench/gen_ranks.py SEED_RUN_DIR OUT_ROOT --ranks 24576 [--gpus-per-node 4]
        [--slow-gpus 17,4242] [--slow-nodes 100,2000] [--slow-factor 0.8] [--jitter-pct 1]

Each rank gets the seed rank's rows with: rank, world_size, node `node<NNNNN>` (rank //
gpus-per-node), device `cuda:<rank % gpus-per-node>`, a GPU UUID derived from the rank, and
every throughput (a higher-is-better rate of the metric dictionary, its pct_of_peak, and the
time samples it derives from) multiplied by a factor: 1 + N(0, jitter) noise, times
`slow-factor` on a planted slow GPU or on all GPUs of a planted slow node. Times are divided by
the same factor. Written as loose shards, one per rank and table, exactly as ranks write them,
or with --compacted as `aifbench compact` leaves a run (one file per table).
The new run id is `<seed run id>-x<N>`; the planted ranks are printed as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from aifbench import metrics as metric_dict  # noqa: E402
from aifbench.results.schema import RENAMED  # noqa: E402
from aifbench.results.store import shard_name, write_parquet  # noqa: E402

RATE_UNITS = ("TFLOP/s", "GB/s", "1/s")
TABLES = ("metrics", "samples", "runs", "telemetry")


def gpu_uuid(rank: int) -> str:
    return "GPU-" + str(uuid.UUID(int=(0x5EED << 96) + rank))


def factors(n: int, gpn: int, slow_gpus: list[int], slow_nodes: list[int], slow: float, jitter_pct: float,
            seed: int = 7) -> np.ndarray:
    """Per-rank throughput factor: noise, and `slow` on planted GPUs and nodes."""
    f = 1.0 + np.random.default_rng(seed).normal(0.0, jitter_pct / 100.0, n)
    for r in slow_gpus:
        f[r] *= slow
    for node in slow_nodes:
        f[node * gpn:(node + 1) * gpn] *= slow
    return f


def _set(t: pa.Table, name: str, values) -> pa.Table:
    i = t.schema.get_field_index(name)
    return t.set_column(i, name, pa.array(values, t.schema.field(name).type) if not isinstance(values, pa.Array)
                        and not isinstance(values, pa.ChunkedArray) else values.cast(t.schema.field(name).type))


def _const(t: pa.Table, name: str, value) -> pa.Table:
    if name not in t.column_names:
        return t
    return _set(t, name, pa.repeat(pa.scalar(value, t.schema.field(name).type), t.num_rows))


def rank_table(seed: pa.Table, table: str, run_id: str, rank: int, n: int, gpn: int, f: float) -> pa.Table:
    """The seed table as rank `rank` of `n` would have written it."""
    t = _const(seed, "run_id", run_id)
    t = _const(t, "rank", rank)
    t = _const(t, "world_size", n)
    t = _const(t, "node", f"node{rank // gpn:05d}")
    t = _const(t, "device", f"cuda:{rank % gpn}")
    if table == "runs":
        t = _const(t, "gpu_uuid", gpu_uuid(rank))
        t = _const(t, "task", "main")
    if table == "telemetry":
        t = _const(t, "gpu_index", rank % gpn)
        t = _const(t, "gpu_uuid", gpu_uuid(rank))
    if table == "metrics":
        rate = pc.is_in(t["unit"], pa.array(RATE_UNITS))
        higher = pc.is_in(t["metric"], pa.array([m for m, d in metric_dict.METRICS.items() if d.higher_is_better]))
        scale = pc.if_else(pc.and_(rate, higher), f, pc.if_else(pc.equal(t["metric"], "time_s"), 1.0 / f, 1.0))
        t = _set(t, "value", pc.multiply(t["value"], scale))
        t = _set(t, "pct_of_peak", pc.multiply(t["pct_of_peak"], scale))
    if table == "samples":
        t = _set(t, "value", pc.multiply(t["value"], pc.if_else(pc.equal(t["unit"], "s"), 1.0 / f, 1.0)))
    return t


def _write(args: tuple) -> int:
    seed_dir, out_dir, run_id, ranks, n, gpn, fs, tables = args
    seeds = {t: pq.read_table(next(Path(seed_dir).glob(f"{t}.rank*.parquet"))) for t in tables}
    for rank, f in zip(ranks, fs):
        for table, seed in seeds.items():
            path = Path(out_dir) / shard_name(table, rank)
            tmp = path.with_name(f".{path.name}.tmp")
            write_parquet(rank_table(seed, table, run_id, rank, n, gpn, float(f)), tmp)  # as ranks write
            os.replace(tmp, path)
    return len(ranks)


def write_compacted(seed_dir: Path, out: Path, run_id: str, n: int, gpn: int, fs: np.ndarray, tables: list[str],
                    batch: int = 512) -> None:
    """The run as `aifbench compact` would leave it: one file per table, rows tagged with the
    shard each rank would have written (for runs too large to write as 10^5 loose files here)."""
    from aifbench.results.compact import ROW_GROUP_ROWS
    from aifbench.results.layout import META_KEY, SOURCE_COL
    from aifbench.results.read import arrow_schema

    for table in tables:
        seed = pq.read_table(next(Path(seed_dir).glob(f"{table}.rank*.parquet")))
        target = arrow_schema(table, source=True)
        names = [shard_name(table, r) for r in range(n)]
        meta = {"run_id": run_id, "table": table, "schema_version": 1, "sources": {k: [0, 0] for k in names}}
        digest = hashlib.sha256(json.dumps(meta["sources"], sort_keys=True).encode()).hexdigest()[:16]
        with pq.ParquetWriter(out / f".{table}.tmp", target, compression="zstd") as w:
            for start in range(0, n, batch):
                parts = []
                for r in range(start, min(n, start + batch)):
                    t = rank_table(seed, table, run_id, r, n, gpn, float(fs[r]))
                    t = t.rename_columns([RENAMED.get(c, c) for c in t.column_names])  # a v1 seed's names
                    t = t.append_column(SOURCE_COL, pa.repeat(pa.scalar(names[r], pa.large_string()), t.num_rows))
                    parts.append(pa.Table.from_arrays(  # columns the seed's schema version lacks: empty
                        [t[f.name] if f.name in t.column_names else pa.nulls(t.num_rows, f.type) for f in target],
                        schema=target.remove_metadata()).cast(target))
                w.write_table(pa.concat_tables(parts), row_group_size=ROW_GROUP_ROWS)
            w.add_key_value_metadata({META_KEY: json.dumps(meta)})
        os.replace(out / f".{table}.tmp", out / f"{table}.compact-{digest}.parquet")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("seed_run", type=Path, help="a run directory with rank 0's shards")
    p.add_argument("out_root", type=Path, help="results root to write the new run under")
    p.add_argument("--ranks", type=int, required=True)
    p.add_argument("--gpus-per-node", type=int, default=4)
    p.add_argument("--slow-gpus", default="", help="comma-separated ranks to slow down")
    p.add_argument("--slow-nodes", default="", help="comma-separated node numbers (rank // gpus-per-node)")
    p.add_argument("--slow-factor", type=float, default=0.8)
    p.add_argument("--jitter-pct", type=float, default=1.0)
    p.add_argument("--jobs", type=int, default=2, help="writer processes")
    p.add_argument("--compacted", action="store_true",
                   help="write the compacted layout directly (one file per table) instead of loose shards")
    p.add_argument("--tables", default=",".join(TABLES),
                   help="tables to write (default all; analysis never reads telemetry)")
    a = p.parse_args(argv)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    slow_gpus, slow_nodes = ints(a.slow_gpus), ints(a.slow_nodes)
    if not 1 <= a.ranks <= 1_000_000 or any(not 0 <= r < a.ranks for r in slow_gpus) or \
            any(not 0 <= nd < -(-a.ranks // a.gpus_per_node) for nd in slow_nodes):
        p.error("--ranks must be 1..1000000 and planted GPUs / nodes inside the run")
    run_id = f"{a.seed_run.name}-x{a.ranks}"
    out = a.out_root / run_id
    out.mkdir(parents=True, exist_ok=False)
    fs = factors(a.ranks, a.gpus_per_node, slow_gpus, slow_nodes, a.slow_factor, a.jitter_pct)
    chunks = np.array_split(np.arange(a.ranks), max(1, min(a.ranks, a.jobs * 8)))
    tables = [t for t in a.tables.split(",") if t]
    if not tables or set(tables) - set(TABLES):
        p.error(f"--tables: a comma-separated subset of {', '.join(TABLES)}")
    work = [(str(a.seed_run), str(out), run_id, [int(r) for r in c], a.ranks, a.gpus_per_node, fs[c], tables)
            for c in chunks if len(c)]
    if a.compacted:
        write_compacted(a.seed_run, out, run_id, a.ranks, a.gpus_per_node, fs, tables)
        written = a.ranks
    else:
        with ProcessPoolExecutor(a.jobs) as pool:
            written = sum(pool.map(_write, work))
    print(json.dumps({"run_id": run_id, "dir": str(out), "ranks": written, "slow_gpus": slow_gpus,
                      "slow_nodes": slow_nodes, "slow_factor": a.slow_factor}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
