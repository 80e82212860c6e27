"""Local launcher: N worker processes on this machine (`aifbench run SUITE --nproc N`).

Each process gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free
MASTER_PORT, and runs `python -m aifbench.worker plan.json`; on GPUs rank i uses cuda:i.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Callable

from aifbench.errors import LaunchError
from aifbench.plan import Plan


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(plan: Plan, nproc: int, poll: Callable[[], None] | None = None) -> list[int]:
    """Start `nproc` workers for `plan`, wait for all; returns their exit codes by rank.

    `poll` is called about twice a second while waiting (progress display). When one
    worker fails, the others get `plan.dist_timeout_s` to finish before they are killed.
    """
    plan_path = plan.save(plan.run_dir / "plan.json")
    port = free_port()
    procs = []
    for rank in range(nproc):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        log_path = plan.run_dir / f"worker.rank{rank:05d}.log"
        with open(log_path, "w") as log_file:
            procs.append(subprocess.Popen([sys.executable, "-m", "aifbench.worker", str(plan_path)],
                                          env=env, stdout=log_file, stderr=subprocess.STDOUT))
    first_failure: float | None = None
    while any(p.poll() is None for p in procs):
        if poll:
            poll()
        now = time.monotonic()
        if first_failure is None and any(p.returncode not in (None, 0, 1) for p in procs):
            first_failure = now
        if first_failure is not None and now - first_failure > plan.dist_timeout_s:
            for p in procs:
                p.kill()
            break
        time.sleep(0.5)
    codes = [p.wait() for p in procs]
    if all(c not in (0, 1) for c in codes):
        tail = (plan.run_dir / "worker.rank00000.log").read_text()[-2000:]
        raise LaunchError(f"all {nproc} workers died (exit codes {codes}); rank 0 log:\n{tail}")
    return codes
