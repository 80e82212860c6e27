#!/usr/bin/env python3
"""Compaction of two checkouts side by side: node-level compaction, then the merge of the node files.
With --commands, also analysis commands on the loose run and again on the compacted run.

    python scripts/bench/bench_compact_ab.py --loose RUNS_ROOT --tree before=/path/to/old \
        --tree after=. --rounds 3 --work /tmp/ab --out results/reference/scale/compact-ab-<date>.json \
        [--commands validate,compare]

RUNS_ROOT is a results root holding one loose run (e.g. made by scripts/bench/gen_ranks.py). Each
round copies it afresh for every tree, in turn (interleaved: the machine's load falls on both
alike), and times with that tree's code: every node's shards merged into one file per table
(bench_scale.py --merge-nodes: what each node's last task does at the end of a job step, here
--merge-workers nodes at once), then `aifbench compact` of the node files (what `collect`
does). Recorded per tree and round: wall seconds, peak RSS of the compact process (MiB), the
1-minute load at the start, the rows kept and the bytes of the compacted run. The median and
the spread over rounds are in the Markdown table beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import PY, _commit, commands, measure  # noqa: E402  (beside this file)


def _timed(cmd: list[str], tree: Path, cwd: Path) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, stdout) of `cmd` run with `tree`'s code; stops the benchmark when it fails."""
    m = measure(cmd, cwd, timeout=7200, tree=tree)
    if m["rc"] != 0:
        raise SystemExit(f"bench_compact_ab: {' '.join(cmd)} exited {m['rc']}")
    return m["wall_s"], m["peak_rss_mb"], m["stdout"]


def _commands(names: Sequence[str], tree: Path, root: Path, work: Path, state: str) -> dict[str, dict]:
    """{command: {wall_s, peak_rss_mb, rc}} of each analysis command on the run under `root`;
    a verdict (validate's exit 1 on the planted slow ranks) is not a failure, a crash is."""
    out = {}
    for name, cmd in commands(root, work, f"ab-{state}").items():
        if name in names:
            m = measure(cmd, work, timeout=7200, tree=tree)
            if m["rc"] not in (0, 1):
                raise SystemExit(f"bench_compact_ab: {' '.join(cmd)} exited {m['rc']}")
            out[name] = {"wall_s": round(m["wall_s"], 2), "peak_rss_mb": round(m["peak_rss_mb"]), "rc": m["rc"]}
    return out


def one(tree: Path, loose: Path, work: Path, gpn: int, merge_workers: int, names: Sequence[str] = ()) -> dict:
    """One round for one tree: a fresh copy of the loose run, the commands on it, node-level
    compaction, compact, the commands on the compacted run."""
    dst = work / "run"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(loose, dst)
    run_dir = next(d for d in dst.iterdir() if d.is_dir())
    load = os.getloadavg()[0]
    on_loose = _commands(names, tree, dst, work, "loose")
    nodes_s, nodes_rss, _ = _timed([PY, str(tree / "scripts" / "bench" / "bench_scale.py"), "--merge-nodes",
                                    str(run_dir), "--gpus-per-node", str(gpn), "--merge-workers",
                                    str(merge_workers)], tree, work)
    node_files = sum(1 for _ in run_dir.glob("*.compact-*.parquet"))
    compact_s, compact_rss, said = _timed([PY, "-m", "aifbench", "compact", "--results", str(dst)], tree, work)
    out = {"load1_start": round(load, 2), "node_level_s": round(nodes_s, 2), "node_files": node_files,
           "compact_s": round(compact_s, 2), "compact_peak_rss_mb": round(compact_rss), "said": said.strip(),
           "bytes": sum(p.stat().st_size for p in run_dir.glob("*.parquet")),
           "loose_commands": on_loose, "compacted_commands": _commands(names, tree, dst, work, "compacted")}
    shutil.rmtree(dst)
    return out


def markdown(res: dict) -> str:
    lines = [f"# Compaction, side by side, {res['date_utc']}", "", f"Command: `{res['command']}`", "",
             f"Machine: {res['machine']}; loose run: {res['loose']} ({res['rounds']} rounds, trees interleaved)", "",
             "| tree | code | node-level, all nodes here (s) | compact of the node files (s) | its peak RSS (MiB) "
             "| compacted bytes | load at starts |", "|---|---|---|---|---|---|---|"]
    for name, tree in res["trees"].items():
        rs = tree["rounds"]

        def cell(key: str) -> str:
            xs = [r[key] for r in rs]
            return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"
        lines.append(f"| {name} | {tree['code']} | {cell('node_level_s')} | {cell('compact_s')} | "
                     f"{statistics.median(r['compact_peak_rss_mb'] for r in rs):.0f} | {rs[0]['bytes']} | "
                     f"{', '.join(str(r['load1_start']) for r in rs)} |")
    names = list(next(iter(res["trees"].values()))["rounds"][0].get("loose_commands", {}))
    if names:
        lines += ["", "| tree | command | on the loose run: s | MiB | on the compacted run: s | MiB |",
                  "|---|---|---|---|---|---|"]
        for tname, tree in res["trees"].items():
            for name in names:
                cells = []
                for state in ("loose_commands", "compacted_commands"):
                    xs = [r[state][name]["wall_s"] for r in tree["rounds"]]
                    mb = [r[state][name]["peak_rss_mb"] for r in tree["rounds"]]
                    cells += [f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})",
                              f"{statistics.median(mb):.0f} ({min(mb):.0f}–{max(mb):.0f})"]
                lines.append(f"| {tname} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "Median (min–max) over rounds. What each compact said:", ""]
    lines += [f"- {name}: {tree['rounds'][0]['said']}" for name, tree in res["trees"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loose", type=Path, required=True, help="a results root holding one loose run")
    p.add_argument("--tree", action="append", required=True, help="NAME=PATH of a checkout (two or more)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gpus-per-node", dest="gpn", type=int, default=4)
    p.add_argument("--merge-workers", type=int, default=2)
    p.add_argument("--work", type=Path, required=True, help="scratch directory (a copy of the run per round)")
    p.add_argument("--out", type=Path, required=True, help="JSON file (a .md table is written beside it)")
    p.add_argument("--commands", default="", help="analysis commands to time on the loose and the compacted run "
                   "(comma-separated, of: show, runs, validate, compare, report; default none)")
    a = p.parse_args(argv)
    names = [c for c in a.commands.split(",") if c]
    known = [c for c in commands(Path("."), Path("."), "") if c not in ("export", "import", "reimport")]
    if any(c not in known for c in names):
        p.error(f"--commands {a.commands!r}: allowed are {', '.join(known)}")
    trees = {}
    for spec in a.tree:
        name, sep, path = spec.partition("=")
        if not sep or not (Path(path) / "src" / "aifbench").is_dir():
            p.error(f"--tree {spec!r}: give NAME=PATH of an aifbench checkout")
        trees[name] = Path(path).resolve()
    if not any(d.is_dir() for d in a.loose.iterdir()):
        p.error(f"--loose {a.loose}: no run directory in it")
    a.work.mkdir(parents=True, exist_ok=True)
    res = {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": "python " + " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
           "machine": f"{os.cpu_count()} CPUs, {platform.platform()}", "loose": str(a.loose), "rounds": a.rounds,
           "trees": {n: {"path": str(t), "code": _commit(t), "rounds": []} for n, t in trees.items()}}
    for r in range(a.rounds):
        for name, tree in trees.items():
            t = time.monotonic()
            res["trees"][name]["rounds"].append(one(tree, a.loose, a.work, a.gpn, a.merge_workers, names))
            print(f"round {r + 1} {name}: {res['trees'][name]['rounds'][-1]} ({time.monotonic() - t:.0f} s)", flush=True)
            a.out.write_text(json.dumps(res, indent=1))
    a.out.write_text(json.dumps(res, indent=1))
    a.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
