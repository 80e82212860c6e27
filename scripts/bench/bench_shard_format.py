#!/usr/bin/env python3
"""Time the read of one loose shard under the Parquet write options a shard could have.

    python scripts/bench/bench_shard_format.py RUN_DIR --shards 500 --repeat 5 \
        --out results/reference/scale/shard-format-<date>.json

For each table of a loose run (RUN_DIR, e.g. a replica made by scripts/bench/gen_ranks.py), the
first --shards shards are rewritten into a scratch directory with each variant of the writer's
options (column statistics, dictionary pages, compression; page checksums always on, as
store.write_parquet writes them) and read back --repeat times, interleaved, with the project's
own reader (results/read.py `_read_shard`: one open, one read, pyarrow's reader driven
directly, every page checksum verified). Reported per variant: the median over rounds of the
mean read time per shard (ms; the spread across rounds beside it) and the mean file size (kB).
The variant store.write_parquet uses is marked. JSON and a Markdown table go to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from aifbench.results import read  # noqa: E402
from aifbench.results.layout import SHARD_RE  # noqa: E402
from aifbench.results.store import DICTIONARY_ROWS  # noqa: E402
from bench_scale import _commit  # noqa: E402  (beside this file: the commit of the code measured)

VARIANTS: dict[str, dict[str, object]] = {
    "statistics, dictionary (pyarrow's defaults)": {},
    "no statistics, dictionary": {"write_statistics": False},
    "no statistics, no dictionary": {"write_statistics": False, "use_dictionary": False},
    "no statistics, no dictionary, zstd": {"write_statistics": False, "use_dictionary": False, "compression": "zstd"},
}


def used(rows: int) -> str:
    """The variant store.write_parquet writes for a shard of `rows` rows."""
    return "no statistics, dictionary" if rows >= DICTIONARY_ROWS else "no statistics, no dictionary"


def write(tables: list[pa.Table], where: Path, table: str, options: dict[str, object]) -> list[Path]:
    out = []
    for i, t in enumerate(tables):
        p = where / f"{table}.rank{i:05d}.main.parquet"
        with pq.ParquetWriter(p, t.schema, store_schema=False, write_page_checksum=True, **options) as w:  # type: ignore[arg-type]
            w.write_table(t)
        out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--shards", type=int, default=500)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if not a.run_dir.is_dir() or a.shards < 1 or a.repeat < 1:
        p.error("RUN_DIR must be a run directory of loose shards; --shards and --repeat at least 1")
    result: dict[str, object] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python scripts/bench/bench_shard_format.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, {platform.platform()}", "code": _commit(),
        "load_start": os.getloadavg(), "pyarrow": pa.__version__, "tables": {}}
    for table in ("runs", "metrics", "samples", "telemetry"):
        shards = sorted(q for q in a.run_dir.iterdir() if (m := SHARD_RE.match(q.name)) and m["table"] == table)[:a.shards]
        if not shards:
            continue
        tables = [pq.read_table(q).replace_schema_metadata(None) for q in shards]
        names = read._columns(table, None)
        target = read.arrow_schema(table)
        with tempfile.TemporaryDirectory() as tmp:
            files: dict[str, list[Path]] = {}
            for v, options in VARIANTS.items():
                (Path(tmp) / str(len(files))).mkdir()
                files[v] = write(tables, Path(tmp) / str(len(files)), table, options)
            per: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(a.repeat):  # interleaved: every variant once per round
                for v, paths in files.items():
                    t0 = time.perf_counter()
                    for q in paths:
                        read._read_shard(q, names, target)
                    per[v].append((time.perf_counter() - t0) / len(paths) * 1e3)
            sizes = {v: sum(q.stat().st_size for q in paths) / len(paths) / 1e3 for v, paths in files.items()}
        rows = tables[0].num_rows
        result["tables"][table] = {  # type: ignore[index]
            "rows_per_shard": rows, "columns": tables[0].num_columns, "shards": len(tables), "written": used(rows),
            "variants": {v: {"ms_per_shard_median": statistics.median(per[v]), "ms_rounds": per[v],
                             "kb_per_shard": sizes[v]} for v in VARIANTS}}
        print(table, json.dumps(result["tables"][table]["variants"]), flush=True)  # type: ignore[index]
    result["load_end"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Shard read time by write options, {result['date_utc']}", "",
             f"Command: `{result['command']}` (code {result['code']})", "",
             f"Machine: {result['machine']}; pyarrow {pa.__version__}; load average at start {result['load_start']}, "
             f"at end {result['load_end']} (a shared machine: figures are upper bounds)", "",
             "Median over rounds of the mean read per shard (results/read.py `_read_shard`, page checksums "
             "verified); the rounds beside it. **bold**: what store.write_parquet writes.", "",
             "| table | rows per shard | columns | variant | ms per shard | rounds (ms) | kB per shard |",
             "|---|---|---|---|---|---|---|"]
    for table, info in result["tables"].items():  # type: ignore[attr-defined]
        for v, m in info["variants"].items():
            name = f"**{v}**" if v == info["written"] else v
            lines.append(f"| {table} | {info['rows_per_shard']} | {info['columns']} | {name} | "
                         f"{m['ms_per_shard_median']:.3f} | {', '.join(f'{x:.3f}' for x in m['ms_rounds'])} | "
                         f"{m['kb_per_shard']:.1f} |")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
