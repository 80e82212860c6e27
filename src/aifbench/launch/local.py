"""Local launcher: N worker processes on this machine (`aifbench run SUITE --nproc N`).

Each process gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free
MASTER_PORT, and runs `python -m aifbench.worker plan.json`; on GPUs rank i uses cuda:i.

Stopping: while the workers run, SIGINT or SIGTERM to the launcher is forwarded to every
worker as SIGINT (each writes its completed cases and status=interrupted), then SIGTERM after
`grace_s` and SIGKILL `KILL_AFTER_S` later for any still alive; once all have exited,
`launch` raises worker.Interrupted (exit code 130 or 143). A second signal skips the grace
period. Workers run in their own session (a terminal's Ctrl-C reaches them only through the
launcher, once) and get SIGTERM from the kernel should the launcher itself die (Linux).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

from aifbench.errors import LaunchError
from aifbench.launch.base import CaseDone, ForegroundLauncher
from aifbench.launch.jobspec import JobRequest, Submission
from aifbench.plan import Plan

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
"""seconds the workers get to stop after the forwarded SIGINT before SIGTERM"""
KILL_AFTER_S = 5.0
"""seconds after that SIGTERM before SIGKILL"""


class LocalProcessesLauncher(ForegroundLauncher):
    """`aifbench run --nproc N`: N worker processes here; submit returns when all have exited."""

    name = "processes"
    label = "local"

    def script(self, plan: Plan, req: JobRequest) -> str:
        return (f"# {req.tasks_per_node} process(es) here, RANK 0..{req.tasks_per_node - 1}, MASTER_ADDR=127.0.0.1: "
                f"{sys.executable} -m aifbench.worker {plan.run_dir / 'plan.json'}\n")

    def submit(self, plan: Plan, req: JobRequest, on_case: CaseDone | None = None) -> Submission:
        """Run the workers to the end; `on_case` sees the cases rank 0 has written."""
        codes = launch(plan, req.tasks_per_node, poll=_rank0_cases(plan, on_case) if on_case else None)
        return self.ended(plan, req, codes, str(os.getpid()))


def _rank0_cases(plan: Plan, on_case: CaseDone):
    """A poll that calls `on_case` once per case rank 0's metrics shard holds."""
    from aifbench.results.store import read_parquet, shard_name

    shard = plan.run_dir / shard_name("metrics", 0, plan.part)
    seen: list[str] = []

    def poll() -> None:
        if not shard.exists():
            return
        try:
            now = list(dict.fromkeys(read_parquet(shard, columns=["case_id"]).column(0).to_pylist()))
        except Exception:  # being replaced right now; next poll
            return
        for case_id in now[len(seen):]:
            seen.append(case_id)
            on_case(case_id, "finished on rank 0")

    return poll


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _StopRequests:
    """Records SIGINT/SIGTERM sent to this process while installed (main thread only; never
    inside a submitit job, whose own handlers drive checkpoint and requeue)."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequests:
        from aifbench.worker import may_handle_stop_signals

        if may_handle_stop_signals():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    def _record(self, signum, frame) -> None:
        self.signals.append(signum)


def _send(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass


def launch(plan: Plan, nproc: int, poll: Callable[[], None] | None = None,
           grace_s: float = STOP_GRACE_S) -> list[int]:
    """Start `nproc` workers for `plan`, wait for all; returns their exit codes by rank.

    `poll` is called about twice a second while waiting (progress display). When one
    worker fails, the others get `plan.dist_timeout_s` to finish before they are killed.
    Raises worker.Interrupted after stopping every worker when this process gets SIGINT or
    SIGTERM; no worker outlives this call, whatever it raises.
    """
    from aifbench.worker import LAUNCHER_PID_ENV, Interrupted

    plan_path = plan.save(plan.run_dir / "plan.json")
    reserve = _reserve(plan.run_dir)
    port = free_port()
    from aifbench.results.node import STEP_ENV

    step = f"local-{os.getpid()}-{port}"  # one launch: the workers' node-level compaction counts its ranks only
    procs: list[subprocess.Popen] = []
    tails: list[collections.deque] = []
    tees: list[threading.Thread] = []
    with _StopRequests() as stops:
        try:
            for rank in range(nproc):
                if stops.signals:
                    break
                env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank),
                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **{LAUNCHER_PID_ENV: str(os.getpid()), STEP_ENV: step})
                log_path = plan.run_dir / f"worker.rank{rank:05d}.log"
                procs.append(subprocess.Popen([sys.executable, "-m", "aifbench.worker", str(plan_path)],
                                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              start_new_session=True))
                tails.append(collections.deque(maxlen=TAIL_LINES))
                tees.append(threading.Thread(target=_tee, args=(procs[-1].stdout, log_path, tails[-1]), daemon=True))
                tees[-1].start()
            _wait(procs, plan, poll, stops, grace_s)
        finally:
            _send(procs, signal.SIGKILL)  # only those still alive: an exception left the wait early
            codes = [p.wait() for p in procs]
            for t in tees:
                t.join(timeout=5)
            if reserve is not None:  # the space to mark a dead rank failed, even on a full disk
                reserve.unlink(missing_ok=True)
    if stops.signals:
        raise Interrupted(stops.signals[0])
    dead = [rank for rank, c in enumerate(codes) if c not in (0, 1)]
    for rank in dead:
        log.error("%s", died(plan, rank, codes[rank], tails[rank]))
    _compact(plan.run_dir)
    if len(dead) == len(codes):
        raise LaunchError(f"all {nproc} workers died (exit codes {codes}): rank 0: {last_error(tails[0])} "
                          f"(full output: {plan.run_dir / 'worker.rank00000.log'})")
    return codes


RESERVE_BYTES = 256 << 10
"""bytes set aside in the run directory while the workers run (RESERVE_NAME), freed when they have
exited: room to rewrite a dead rank's runs row as failed should they have filled the disk"""
RESERVE_NAME = ".reserve"


def _reserve(run_dir) -> "os.PathLike | None":
    """Write the reserve file; None (nothing set aside) when even that does not fit."""
    path = run_dir / RESERVE_NAME
    try:
        with open(path, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        path.unlink(missing_ok=True)
        return None
    return path


TAIL_LINES = 50
"""lines of each worker's output the launcher keeps in memory (its log may be on the full disk)"""


def _tee(stream, log_path, tail: collections.deque) -> None:
    """Copy a worker's output to its log file, keeping the last lines; a log that cannot be
    written (a full disk) loses lines, never the worker's last error (kept in `tail`)."""
    try:
        log_file = open(log_path, "w", errors="replace")
    except OSError:
        log_file = None
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace")
        tail.append(line)
        if log_file is not None:
            try:
                log_file.write(line)
                log_file.flush()
            except OSError:
                log_file = None
    stream.close()
    if log_file is not None:
        with contextlib.suppress(OSError):
            log_file.close()


def last_error(tail: Sequence[str]) -> str:
    """The last line a worker wrote (worker.main ends with the error that stopped it)."""
    lines = [ln.strip() for ln in tail if ln.strip()]
    return lines[-1][:300] if lines else "(it wrote nothing)"


def died(plan: Plan, rank: int, code: int, tail: Sequence[str] = ()) -> str:
    """One line naming a dead worker, its exit, its last error; its runs row is marked failed."""
    how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
    marked = mark_failed(plan, rank)
    return f"rank {rank} died ({how}): {last_error(tail)}; {marked}"


def mark_failed(plan: Plan, rank: int) -> str:
    """Set the dead rank's runs row to status failed (it may still say running); what happened."""
    from datetime import datetime, timezone

    from aifbench.results.store import ShardWriter

    try:
        writer = ShardWriter(plan.results_root, plan.run_id, rank, plan.part)
        rows = writer.load_existing("runs")
        if not len(rows):
            return "it wrote no runs row"
        if set(rows["status"]) <= {"ok", "failed"}:
            return f"its runs row says {rows['status'].iloc[0]}"
        rows = rows.assign(status="failed", ended_utc=datetime.now(timezone.utc))
        writer.replace("runs", rows.to_dict("records"))
        writer.flush()
        return "its runs row is marked failed"
    except Exception as exc:  # a full disk: the line above still names the rank and its error
        return f"its runs row could not be marked failed ({type(exc).__name__}: {exc})"


def _compact(run_dir) -> None:
    """Every worker has exited: merge the run's shards into one file per table. A failure here
    loses nothing (the shards stay readable as they are): warn and go on."""
    from aifbench.results.compact import compact

    try:
        report = compact(run_dir)
    except Exception as exc:  # compaction is an optimisation; the run's results are complete without it
        log.warning("compacting %s failed, its shards stay as they are: %s", run_dir, exc)
        return
    for path, why in report.bad:
        log.warning("not compacted: %s: %s", path, why)


def _wait(procs: list[subprocess.Popen], plan: Plan, poll: Callable[[], None] | None,
          stops: _StopRequests, grace_s: float) -> None:
    first_failure: float | None = None
    pending: list[tuple[float, int]] = []  # (monotonic deadline, signal) still to send to the workers
    stopping = hurried = False
    while any(p.poll() is None for p in procs):
        now = time.monotonic()
        if stops.signals and not stopping:
            stopping = True
            pending = [(now, signal.SIGINT), (now + grace_s, signal.SIGTERM),
                       (now + grace_s + KILL_AFTER_S, signal.SIGKILL)]
        if len(stops.signals) > 1 and not hurried:  # asked twice: no grace period
            hurried = True
            pending = [(now, signal.SIGTERM), (now + KILL_AFTER_S, signal.SIGKILL)]
        while pending and now >= pending[0][0]:
            _send(procs, pending.pop(0)[1])
        if stopping:
            time.sleep(0.1)
            continue
        if poll:
            poll()
        if first_failure is None and any(p.returncode not in (None, 0, 1) for p in procs):
            first_failure = now
        if first_failure is not None and now - first_failure > plan.dist_timeout_s:
            _send(procs, signal.SIGKILL)
            break
        time.sleep(0.5)
