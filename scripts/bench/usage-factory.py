#!/usr/bin/env python3
"""Write the accounting output of a large AI factory, as `aifbench usage --from DIR` reads it.

    scripts/bench/usage-factory.py DIR [--jobs 1000000] [--nodes 3000] [--seed 1]

DIR gets what Slurm's commands would print (aifbench.usage.slurm names them): config.txt
(scontrol show config), version.txt, nodes.txt (sinfo -N), sacct.txt (sacct -X --parsable2, one
line per job), events.txt (sacctmgr show event) and reservations.txt, for November 2026
(2026-11-01 to 2026-12-01, UTC). The factory: NODES nodes of 8 GPUs (3000 -> 24,000 GPUs),
partition 'booster' (all but the last 200 nodes) and 'dev' (the last 200); JOBS jobs of 1 to 2048
GPUs (most small), log-normal run times (median 25 min, at most 48 h), waits growing with size,
400 accounts, states as a factory sees them (most COMPLETED; FAILED, CANCELLED, TIMEOUT,
NODE_FAIL, OUT_OF_MEMORY; some cancelled while pending; those running at the end have End
Unknown), ConsumedEnergy at 300-700 W per GPU; 300 node drains and one maintenance reservation.
The figures are synthetic (numpy, fixed seed): a load for benchmarking the card, not a real site.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SINCE = np.datetime64("2026-11-01T00:00:00", "s")
UNTIL = np.datetime64("2026-12-01T00:00:00", "s")
SIZES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048])
SIZE_P = np.array([0.40, 0.12, 0.14, 0.20, 0.06, 0.035, 0.02, 0.01, 0.007, 0.005, 0.002, 0.001])
STATES = np.array(["COMPLETED", "FAILED", "CANCELLED by 1234", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"])
STATE_P = np.array([0.80, 0.08, 0.06, 0.04, 0.01, 0.01])
DEV_NODES = 200


def stamps(seconds: np.ndarray) -> np.ndarray:
    """s since the epoch -> Slurm's 'YYYY-MM-DDTHH:MM:SS' (UTC)."""
    return np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")


def write(out: Path, n_jobs: int, n_nodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    since, until = SINCE.astype(np.int64), UNTIL.astype(np.int64)
    (out / "config.txt").write_text(
        "Configuration data as of 2026-12-01T09:00:00\n"
        "AccountingStorageTRES   = cpu,mem,energy,node,billing,fs/disk,vmem,pages,gres/gpu\n"
        "AccountingStorageType   = accounting_storage/slurmdbd\n"
        "AcctGatherEnergyType    = acct_gather_energy/gpu\n"
        "ClusterName             = factory\n")
    (out / "version.txt").write_text("slurm 23.11.10\n")
    names = [f"g{i:04d}" for i in range(1, n_nodes + 1)]
    with (out / "nodes.txt").open("w") as fh:
        for i, n in enumerate(names):
            fh.write(f"{n}|{'dev' if i >= n_nodes - DEV_NODES else 'booster'}|gpu:h100:8(S:0-1)\n")

    gpus = rng.choice(SIZES, size=n_jobs, p=SIZE_P / SIZE_P.sum())
    partition = np.where((gpus <= 8) & (rng.random(n_jobs) < 0.05), "dev", "booster")
    eligible = rng.integers(since - 2 * 86400, until, n_jobs)
    wait = (rng.exponential(600, n_jobs) * np.sqrt(gpus)).astype(np.int64)
    start = eligible + wait
    run = np.minimum(rng.lognormal(np.log(1500), 1.2, n_jobs), 48 * 3600).astype(np.int64) + 1
    end = start + run
    state = rng.choice(STATES, size=n_jobs, p=STATE_P)
    never_ran = rng.random(n_jobs) < 0.01                # cancelled while pending
    state[never_ran] = "CANCELLED by 1234"
    start[never_ran] = end[never_ran] = np.minimum(eligible[never_ran] + wait[never_ran] // 2, until - 1)
    pending = (start >= until) & ~never_ran
    running = (end >= until) & ~pending & ~never_ran
    state[pending], state[running] = "PENDING", "RUNNING"
    account = rng.integers(1, 401, n_jobs)
    watts = rng.uniform(300, 700, n_jobs)
    energy = (watts * gpus * run).astype(np.int64)
    order = np.argsort(eligible, kind="stable")

    s_el, s_st, s_en = stamps(eligible), stamps(start), stamps(end)
    with (out / "sacct.txt").open("w") as fh:
        for k, i in enumerate(order):
            g = gpus[i]
            alloc = "" if never_ran[i] or pending[i] else f"billing={g},cpu={g * 8},gres/gpu={g},node={max(1, g // 8)}"
            req = f"cpu={g * 8},gres/gpu={g},node={max(1, g // 8)}"
            st = "Unknown" if pending[i] else s_st[i]
            en = "Unknown" if pending[i] or running[i] else s_en[i]
            e = 0 if never_ran[i] or pending[i] or running[i] else energy[i]
            fh.write(f"{1000000 + k}|acct{account[i]:04d}|{partition[i]}|{state[i]}|{s_el[i]}|{st}|{en}|{alloc}|{req}|{e}\n")

    with (out / "events.txt").open("w") as fh:
        for _ in range(300):
            node = names[rng.integers(0, n_nodes)]
            t0 = int(rng.integers(since, until))
            t1 = t0 + int(rng.integers(3600, 24 * 3600))
            fh.write(f"{node}|{stamps(np.array([t0]))[0]}|{stamps(np.array([t1]))[0] if t1 < until else 'Unknown'}|"
                     f"{rng.choice(['DRAIN', 'DOWN', 'DOWN+DRAIN'])}\n")
    first, last = names[0], names[min(63, n_nodes - 1)]
    (out / "reservations.txt").write_text(
        f"maint-nov|{first[0]}[{first[1:]}-{last[1:]}]|2026-11-15T06:00:00|2026-11-15T18:00:00\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--nodes", type=int, default=3000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    t0 = time.monotonic()
    write(a.dir, a.jobs, a.nodes, a.seed)
    print(f"wrote {a.jobs} jobs on {a.nodes * 8} GPUs to {a.dir} in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
