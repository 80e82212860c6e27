"""Entry point of one rank: `python -m aifbench.worker PLAN.json`.

Launchers (local processes, Slurm through submitit) start this on every rank; every launcher,
this module's main included, reaches the runner through `run_plan` and nowhere else. It reads its
rank from the environment, joins the process group when there are several ranks, and runs
the plan. Exit code 0 when every case ended ok or skipped, 1 otherwise, 128 + the signal
number (130 SIGINT, 143 SIGTERM) when it was stopped.

Stopping: SIGINT or SIGTERM raises `Interrupted` (a KeyboardInterrupt) in the main thread, so
the runner's `finally` writes the completed cases and status=interrupted; repeats in the next
REPEAT_GRACE_S are ignored, a later SIGTERM stops the process at once. Under
submitit (Slurm jobs) nothing is changed: submitit's own SIGTERM/SIGUSR2 handlers drive
checkpoint and requeue. A worker of the local launcher also asks the kernel for SIGTERM
when its launcher dies (Linux), so it never outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from aifbench import distributed
from aifbench.errors import AifbenchError
from aifbench.plan import Plan
from aifbench.distributed import RankInfo
from aifbench.runner import CaseCallback, RunSummary, execute

LAUNCHER_PID_ENV = "AIFBENCH_LAUNCHER_PID"
"""set by the local launcher: the pid whose death must stop this worker"""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_GRACE_S = 2.0
"""seconds after a first stop signal during which repeats are ignored (see stop_on_signals)"""


class Interrupted(KeyboardInterrupt):
    """A stop request (SIGINT or SIGTERM) as an exception; `exit_code` is 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name


def under_submitit() -> bool:
    """True inside a submitit job, whose signal handlers (checkpoint, requeue) must stay."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def may_handle_stop_signals() -> bool:
    """Whether aifbench may install SIGINT/SIGTERM handlers here: the main thread (Python's
    rule), never inside a submitit job."""
    return threading.current_thread() is threading.main_thread() and not under_submitit()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM raises `Interrupted`. Repeats within
    REPEAT_GRACE_S are ignored, so cleanup (writing the completed cases) is not cut short: a
    multi-threaded launcher's death delivers the parent-death SIGTERM once per exiting thread,
    and a Ctrl-C is often pressed twice. A SIGTERM after that grace stops the process at once
    (exit 143); SIGKILL always does. No-op under submitit or off the main thread; the previous
    handlers come back on exit."""
    if not may_handle_stop_signals():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    first: list[float] = []

    def handler(signum, frame):
        if not first:
            first.append(time.monotonic())
            raise Interrupted(signum)
        if signum == signal.SIGTERM and time.monotonic() - first[0] > REPEAT_GRACE_S:
            os._exit(128 + signal.SIGTERM)  # asked again, well after the first: stop now

    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _die_with_launcher() -> bool:
    """Ask for SIGTERM when the launcher named in the environment dies; False if it is gone."""
    pid = os.environ.get(LAUNCHER_PID_ENV)
    if not pid:
        return True
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return os.getppid() == int(pid)  # checked after prctl: no window where its death goes unseen


def run_plan(plan: Plan, info: RankInfo | None = None, on_case: CaseCallback | None = None) -> RunSummary:
    """The one way from a launcher into the runner: run `plan` as rank `info`, or (None) as
    the rank the environment names, joining the process group when there are several ranks.
    `on_case(case, status, reason)` is called as each case ends."""
    info = distributed.rank_info() if info is None else info
    if plan.device == "cpu" and info.world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, info.world_size)))
    info = distributed.init(info, plan.device, plan.dist_timeout_s)
    try:
        return execute(plan, info, on_case)
    finally:
        if info.distributed:
            distributed.teardown()


DIED = 3
"""exit code of a worker stopped by an error that is not a case's (a full disk, a bug): its last
line of output names it (launch.local.last_error)"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aifbench.worker", description=__doc__)
    parser.add_argument("plan", type=Path, help="plan JSON written by the launcher")
    args = parser.parse_args(argv)
    from aifbench.config import log_level_from_env

    try:
        level = log_level_from_env()
    except AifbenchError as exc:  # the launcher checks it first; a worker started by hand says so once
        print(f"aifbench worker: {exc}; logging at WARNING", file=sys.stderr)
        level = "WARNING"
    logging.basicConfig(level=level, format="%(asctime)s pid%(process)d %(name)s: %(message)s")
    try:
        with stop_on_signals():
            if not _die_with_launcher():
                print("aifbench worker: its launcher is gone; not starting", file=sys.stderr)
                return 128 + signal.SIGTERM
            plan = Plan.load(args.plan)
            summary = run_plan(plan)
            from aifbench.results.node import merge_after_task

            merge_after_task(plan.run_dir, distributed.rank_info().rank, plan.part)  # this node's last rank merges
    except Interrupted as exc:
        print(f"aifbench worker: interrupted by {exc.signame}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a SIGINT after the handlers were restored
        return 128 + signal.SIGINT
    except AifbenchError as exc:
        print(f"aifbench worker: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a full disk, a bug: the traceback for the log, then the one line the launcher shows
        import traceback

        traceback.print_exc()
        print(f"aifbench worker: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return DIED
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
