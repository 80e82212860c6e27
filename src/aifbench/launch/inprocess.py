"""`aifbench run SUITE` (--nproc 1): the plan runs in this process, rank 0 of 1.

SIGINT/SIGTERM handling is the caller's (cli/run.py wraps the run in worker.stop_on_signals):
the runner's `finally` writes the completed cases and status=interrupted.
"""

from __future__ import annotations

import os

from aifbench.launch.base import CaseDone, ForegroundLauncher
from aifbench.launch.jobspec import JobRequest, Submission
from aifbench.plan import Plan


class InProcessLauncher(ForegroundLauncher):
    name = "inprocess"
    label = "inprocess"

    def script(self, plan: Plan, req: JobRequest) -> str:
        return f"# in this process (pid {os.getpid()}): {len(plan.cases)} case(s) of suite {plan.suite} on {req.device}\n"

    def submit(self, plan: Plan, req: JobRequest, on_case: CaseDone | None = None) -> Submission:
        """Run every case here; returns when the run has ended (exit code 1 when a case failed)."""
        from aifbench.distributed import RankInfo
        from aifbench.worker import run_plan

        def each(case, status: str, reason: str) -> None:
            if on_case:
                on_case(case.case_id, status)

        summary = run_plan(plan, RankInfo(), each)
        return self.ended(plan, req, [1 if summary.failed else 0], str(os.getpid()))
