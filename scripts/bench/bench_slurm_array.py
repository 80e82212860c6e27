#!/usr/bin/env python3
"""A many-task Slurm job array on a real cluster: submit, wait, collect, with collect time per task.

    scripts/ci/local-slurm.sh start      # or any cluster whose profile aifbench has
    python scripts/bench/bench_slurm_array.py --tasks 128 --work /tmp/array --out results/reference/scale/array-128.json

One suite of `--tasks` tiny STREAM copy cases (one case per array task, `--parallelism` at
once, telemetry off) is submitted with `aifbench submit --mode array`, waited for in Slurm's
queue (squeue, so the shards stay loose); then `aifbench collect` runs on the finished run (it reads every task's shards and compacts them) and once more
on the compacted run. Each command's wall time (monotonic clock) and exit code are recorded,
and collect's time divided by the number of tasks. bench_scale.py --slurm-array N calls this.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

PY = sys.executable


def suite_text(tasks: int) -> str:
    """`tasks` STREAM copy cases of 4 KiB x 1..tasks (fp32), 2 repeats: each a second of work at most."""
    sizes = ", ".join(str(4096 * (i + 1)) for i in range(tasks))
    return (f'[suite]\nname = "array{tasks}"\n[timing]\nwarmup = 1\nrepeats = 2\n[[case]]\nbenchmark = "membw"\n'
            f'params = {{ op = "copy", dtype = "fp32" }}\nsweep = {{ size_bytes = [{sizes}] }}\n')


def timed(cmd: list[str], cwd: Path, timeout: float) -> dict:
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return {"command": " ".join(shlex.quote(c) for c in cmd), "rc": proc.returncode,
            "wall_s": round(time.monotonic() - t, 3), "stderr_tail": proc.stderr[-600:]}


def _queued(name: str) -> bool:
    """Whether Slurm still lists a job (or array task) named `name`."""
    proc = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def bench(tasks: int, work: Path, parallelism: int, system: str, timeout: float) -> dict:
    """Submit, wait and collect one array of `tasks` tasks; the figures as a dict."""
    work.mkdir(parents=True, exist_ok=True)
    suite = work / f"array{tasks}.toml"
    suite.write_text(suite_text(tasks))
    results = work / "results"
    aif = [PY, "-m", "aifbench"]
    name = f"aifbench-array{tasks}-{os.getpid()}"
    t = time.monotonic()
    submit = timed([*aif, "submit", str(suite), "--system", system, "--mode", "array", "--array-parallelism",
                    str(parallelism), "--telemetry-hz", "0", "--results", str(results), "--job-name", name,
                    "--time", "10"], work, 300)
    while submit["rc"] == 0 and _queued(name) and time.monotonic() - t < timeout:
        time.sleep(1.0)  # Slurm's own queue: the tasks' shards stay loose until collect
    submit["wall_s"] = round(time.monotonic() - t, 3)
    runs = sorted(p for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
    out = {"tasks": tasks, "parallelism": parallelism, "system": system, "submit_wait": submit,
           "loose_files_before_collect": len(list(runs[-1].glob("*.parquet"))) if runs else 0}
    if not runs:
        return out
    run_id = runs[-1].name
    first = timed([*aif, "collect", run_id, "--results", str(results), "--format", "json"], work, 600)
    again = timed([*aif, "collect", run_id, "--results", str(results), "--format", "json"], work, 600)
    shards = sorted(p.name for p in runs[-1].glob("*.parquet"))
    out.update(run_id=run_id, collect=first, collect_compacted=again,
               collect_s_per_task=round(first["wall_s"] / tasks, 4),
               collect_compacted_s_per_task=round(again["wall_s"] / tasks, 4), files_after=len(shards))
    return out


def markdown(r: dict) -> str:
    lines = [f"# Slurm job array of {r['tasks']} tasks, {r['date_utc']}", "", f"Command: `{r['command']}`", "",
             f"Shard files in the run folder before collect: {r.get('loose_files_before_collect')}", "",
             f"Machine: {r['machine']}; load average at start {r['load_start']}", "",
             "| step | wall s | per task s | exit |", "|---|---|---|---|",
             f"| submit + wait ({r['parallelism']} at once) | {r['submit_wait']['wall_s']:.1f} | | {r['submit_wait']['rc']} |"]
    if "collect" in r:
        lines += [f"| collect (reads every task's shards, compacts) | {r['collect']['wall_s']:.2f} | "
                  f"{r['collect_s_per_task']:.4f} | {r['collect']['rc']} |",
                  f"| collect again (compacted) | {r['collect_compacted']['wall_s']:.2f} | "
                  f"{r['collect_compacted_s_per_task']:.4f} | {r['collect_compacted']['rc']} |",
                  "", f"Files in the run folder after collect: {r['files_after']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=128)
    p.add_argument("--parallelism", type=int, default=8, help="array tasks running at once")
    p.add_argument("--system", default="local-slurm", help="aifbench system profile of the cluster")
    p.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the array")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="JSON results file (a .md table is written beside it)")
    a = p.parse_args(argv)
    if a.tasks < 1 or a.parallelism < 1:
        p.error("--tasks and --parallelism must be >= 1")
    result = {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(shlex.quote(x) for x in ["python", *sys.argv]),
              "machine": f"{os.uname().nodename} {os.cpu_count()} CPUs", "load_start": os.getloadavg()}
    result.update(bench(a.tasks, a.work, a.parallelism, a.system, a.timeout))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    ok = result["submit_wait"]["rc"] == 0 and result.get("collect", {}).get("rc") == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
