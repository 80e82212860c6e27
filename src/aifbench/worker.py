"""Entry point of one rank: `python -m aifbench.worker PLAN.json`.

Launchers (local processes, Slurm through submitit) start this on every rank; it reads its
rank from the environment, joins the process group when there are several ranks, and runs
the plan. Exit code 0 when every case ended ok or skipped, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aifbench import distributed
from aifbench.errors import AifbenchError
from aifbench.plan import Plan
from aifbench.runner import RunSummary, execute


def run_plan(plan: Plan) -> RunSummary:
    """Run `plan` as the rank the environment names (the function submitit pickles)."""
    info = distributed.rank_info()
    if plan.device == "cpu" and info.world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, info.world_size)))
    info = distributed.init(info, plan.device, plan.dist_timeout_s)
    try:
        return execute(plan, info)
    finally:
        if info.distributed:
            distributed.teardown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aifbench.worker", description=__doc__)
    parser.add_argument("plan", type=Path, help="plan JSON written by the launcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("AIFBENCH_LOG", "WARNING"),
                        format="%(asctime)s pid%(process)d %(name)s: %(message)s")
    try:
        summary = run_plan(Plan.load(args.plan))
    except AifbenchError as exc:
        print(f"aifbench worker: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
