#!/usr/bin/env python3
"""Soak the results store: random kills and concurrent compactions against live multi-rank runs.

For `--minutes` minutes: start a run (`aifbench run SUITE --nproc 2`), and while it is live
kill -9 a worker, the launcher or all of them at random moments, run two `aifbench compact` at
once and read the store (`store.load`) over and over; then resume the run (the same plan, as a
Slurm requeue does) until every rank has ended, kill again, and so on. Every reader snapshot
is checked (no file skipped, no exception) and its committed ok rows are remembered.

At the end every disturbed run is compared row for row with one undisturbed run of the same
suite made first: the same keys in metrics, samples and runs, the same telemetry windows and
segments per case, rank and field (telemetry sample counts follow the clock); and every ok
metrics row a reader saw committed, of a case every rank had committed, is in the final store
with the value it had (a row a resume re-measured is allowed to change only when some rank had
not committed its case). Exit 0 when all of that holds; a JSON summary goes to --out.

    python scripts/bench/soak_store.py --minutes 4 --out results/reference/soak/summary.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from aifbench.results import store  # noqa: E402

SUITE = REPO / "tests" / "data" / "faults" / "tiny.toml"
KEYS = {"metrics": ["case_id", "rank", "metric", "stat"], "samples": ["case_id", "rank", "metric", "sample_index"],
        "runs": ["rank", "task"], "telemetry": ["case_id", "rank", "source", "scope", "window", "segment", "field"]}
RESUME = ("import dataclasses, sys; from pathlib import Path; from aifbench.plan import Plan; "
          "from aifbench.launch.local import launch; "
          "plan = dataclasses.replace(Plan.load(Path(sys.argv[1])), dist_timeout_s=15.0); launch(plan, 2)")


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), CUDA_VISIBLE_DEVICES="")


def keys(run_dir: Path) -> dict[str, set]:
    """Per table the set of row keys (telemetry: its windows and segments, not its sample times)."""
    res = store.load([run_dir])
    out = {}
    for name, key in KEYS.items():
        df = res.tables[name]
        out[name] = set(map(tuple, df[key].astype(str).drop_duplicates().itertuples(index=False)))
    return out


class Soak:
    def __init__(self, root: Path, seed: int):
        self.root, self.rng = root, random.Random(seed)
        self.log: list[str] = []
        self.counts = {"runs": 0, "launches": 0, "kills": 0, "compactions": 0, "compaction_failures": 0,
                       "reads": 0, "read_failures": 0}
        self.seen: dict[str, dict[tuple, float]] = {}
        """run id -> (case, rank, metric, stat) -> value of ok rows a reader saw, of cases every rank had"""

    def say(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.log.append(line)
        print(line, flush=True)

    def start(self) -> tuple[subprocess.Popen, Path]:
        before = {p.name for p in self.root.iterdir()} if self.root.exists() else set()
        p = subprocess.Popen([sys.executable, "-m", "aifbench", "run", str(SUITE), "--nproc", "2", "--results",
                              str(self.root), "--device", "cpu"], env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        while True:
            new = [d for d in self.root.iterdir() if d.name not in before] if self.root.exists() else []
            if new and (new[0] / "plan.json").exists():
                return p, new[0]
            if p.poll() is not None:
                raise SystemExit(f"aifbench run ended before it made a run directory (exit {p.returncode})")
            time.sleep(0.2)

    def resume(self, run_dir: Path) -> subprocess.Popen:
        self.counts["launches"] += 1
        return subprocess.Popen([sys.executable, "-c", RESUME, str(run_dir / "plan.json")], env=env(),
                                cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def kill(self, launcher: subprocess.Popen) -> None:
        """kill -9 one worker, the launcher, or the whole process group (a node that lost power)."""
        import psutil

        try:
            workers = psutil.Process(launcher.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        what = self.rng.choice(["worker", "launcher", "all"])
        self.counts["kills"] += 1
        if what == "worker" and workers:
            victim = self.rng.choice(workers)
            self.say(f"kill -9 worker {victim.pid}")
            victim.kill()
            time.sleep(self.rng.uniform(0, 3))
            self.say(f"SIGTERM launcher {launcher.pid} (its other worker stops)")
            launcher.send_signal(signal.SIGTERM)
        elif what == "launcher":
            self.say(f"kill -9 launcher {launcher.pid} (its workers get SIGTERM from the kernel)")
            launcher.kill()
        else:
            self.say(f"kill -9 launcher {launcher.pid} and its {len(workers)} worker(s)")
            for w in workers:
                try:
                    w.kill()
                except psutil.NoSuchProcess:
                    pass
            launcher.kill()
        launcher.wait()
        for w in workers:
            try:
                w.wait(30)
            except psutil.TimeoutExpired:
                w.kill()
            except psutil.NoSuchProcess:
                pass

    def compact_twice(self, run_dir: Path) -> list[subprocess.Popen]:
        self.counts["compactions"] += 2
        return [subprocess.Popen([sys.executable, "-m", "aifbench", "compact", run_dir.name, "--results",
                                  str(self.root)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]

    def check_compactions(self, procs: list[subprocess.Popen]) -> None:
        for p in procs:
            out, err = p.communicate(timeout=300)
            if p.returncode != 0 or "left in place" in err:
                self.counts["compaction_failures"] += 1
                self.say(f"COMPACTION FAILED (exit {p.returncode}): {err.strip()[-500:]}")

    def read(self, run_dir: Path) -> None:
        """One reader snapshot: nothing skipped, and remember committed ok rows of complete cases."""
        self.counts["reads"] += 1
        try:
            res = store.load([run_dir])
        except Exception as exc:
            self.counts["read_failures"] += 1
            self.say(f"READ FAILED: {type(exc).__name__}: {exc}")
            return
        if res.skipped:
            self.counts["read_failures"] += 1
            self.say(f"READ SKIPPED FILES: {res.skipped[:3]}")
        m = res.metrics
        if not len(m):
            return
        world = int(m["world_size"].max())
        ok = m[m["status"] == "ok"]
        complete = ok.groupby("case_id")["rank"].nunique()
        everywhere = set(complete[complete == world].index)
        seen = self.seen.setdefault(run_dir.name, {})
        for r in ok[ok["case_id"].isin(everywhere)].itertuples(index=False):
            seen[(r.case_id, int(r.rank), r.metric, r.stat)] = float(r.value)

    def finished(self, run_dir: Path) -> bool:
        runs = store.load([run_dir], tables=["runs"]).runs
        return len(runs) == 2 and set(runs["status"]) <= {"ok", "failed"}

    def disturbed_run(self, deadline: float) -> Path:
        """One run, killed at random moments and resumed until it ends, compacted and read throughout."""
        launcher, run_dir = self.start()
        self.counts["runs"] += 1
        self.counts["launches"] += 1
        self.say(f"run {run_dir.name} started")
        while True:
            kill_at = time.monotonic() + self.rng.uniform(1.0, 20.0)
            compactions: list[subprocess.Popen] = []
            while launcher.poll() is None and time.monotonic() < kill_at:
                if not compactions and self.rng.random() < 0.3 and any(run_dir.glob("*.parquet")):
                    compactions = self.compact_twice(run_dir)
                self.read(run_dir)
                if compactions and all(p.poll() is not None for p in compactions):
                    self.check_compactions(compactions)
                    compactions = []
                time.sleep(self.rng.uniform(0.1, 1.0))
            if launcher.poll() is None and time.monotonic() < deadline:
                self.kill(launcher)
            launcher.wait()
            self.check_compactions(compactions)
            self.read(run_dir)
            if self.finished(run_dir):
                break
            self.say(f"resume {run_dir.name}")
            launcher = self.resume(run_dir)
        self.check_compactions(self.compact_twice(run_dir))
        self.say(f"run {run_dir.name} ended")
        return run_dir


def compare(reference: dict[str, set], run_dir: Path, seen: dict[tuple, float]) -> list[str]:
    """What differs between a disturbed run and the undisturbed one, and committed rows lost or changed."""
    problems = []
    got = keys(run_dir)
    for name in KEYS:  # case ids come from the suite: the same in every run of it
        ref, mine = reference[name], got[name]
        if ref != mine:
            problems.append(f"{run_dir.name} {name}: {len(ref - mine)} key(s) missing, {len(mine - ref)} extra; "
                            f"e.g. missing {sorted(ref - mine)[:2]}, extra {sorted(mine - ref)[:2]}")
    final = store.load([run_dir]).metrics
    now = {(r.case_id, int(r.rank), r.metric, r.stat): float(r.value) for r in final.itertuples(index=False)
           if r.status == "ok"}
    lost = [k for k in seen if k not in now]
    changed = [k for k in seen if k in now and now[k] != seen[k]]
    if lost:
        problems.append(f"{run_dir.name}: {len(lost)} committed ok row(s) lost, e.g. {lost[:2]}")
    if changed:
        problems.append(f"{run_dir.name}: {len(changed)} committed ok row(s) changed value, e.g. {changed[:2]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=4.0, help="how long to keep disturbing runs (default 4)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the kill and compaction schedule")
    ap.add_argument("--results", type=Path, default=None, help="store to use (default: a temporary directory)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    args = ap.parse_args(argv)
    root = args.results or Path(tempfile.mkdtemp(prefix="aifbench-soak-")) / "res"
    root.mkdir(parents=True, exist_ok=True)
    soak = Soak(root, args.seed)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "aifbench", "run", str(SUITE), "--nproc", "2", "--results",
                        str(root / "undisturbed"), "--device", "cpu"], env=env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"the undisturbed run failed: {p.stderr[-2000:]}")
    (ref_dir,) = [d for d in (root / "undisturbed").iterdir() if d.is_dir()]
    reference = keys(ref_dir)
    soak.say(f"undisturbed run {ref_dir.name}: " + ", ".join(f"{n} {len(k)} keys" for n, k in reference.items()))
    deadline = time.monotonic() + args.minutes * 60
    runs = []
    while time.monotonic() < deadline:
        runs.append(soak.disturbed_run(deadline))
    problems = []
    for run_dir in runs:
        problems += compare(reference, run_dir, soak.seen.get(run_dir.name, {}))
    if soak.counts["read_failures"] or soak.counts["compaction_failures"]:
        problems.append(f"{soak.counts['read_failures']} read failure(s), "
                        f"{soak.counts['compaction_failures']} compaction failure(s)")
    summary = {"command": " ".join([Path(sys.executable).name, "scripts/bench/soak_store.py", *(argv or sys.argv[1:])]),
               "minutes": args.minutes, "seed": args.seed, "elapsed_s": round(time.monotonic() - t0, 1),
               "counts": soak.counts, "runs": [d.name for d in runs],
               "committed_ok_rows_checked": sum(len(v) for v in soak.seen.values()),
               "reference_keys": {n: len(k) for n, k in reference.items()},
               "problems": problems, "verdict": "PASS" if not problems else "FAIL", "log": soak.log}
    text = json.dumps(summary, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}, indent=1))
    if args.results is None:
        shutil.rmtree(root.parent, ignore_errors=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
