"""`aifbench run`: a suite in-process on this machine, or across N local processes."""

from __future__ import annotations

import argparse
import sys

from aifbench.cli.args import add_format_option, add_plan_options, add_results_option, check_store, telemetry_settings
from aifbench.errors import LaunchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a suite on this machine (no scheduler needed)",
                       description="Run a benchmark suite here: in-process, or --nproc N local processes.")
    p.add_argument("suite", help="suite name (see 'aifbench list') or path to a suite TOML")
    add_plan_options(p)
    add_results_option(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="cuda when a GPU is visible (auto), or force one")
    p.add_argument("--nproc", type=int, default=1, metavar="N", help="ranks on this machine (collectives; one per GPU)")
    p.add_argument("--system", default="local", metavar="NAME|PROFILE.toml",
                   help="system profile whose name is recorded with the results (default: local; see 'aifbench systems')")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cases and which of them this device would skip; run nothing")
    add_format_option(p)
    p.set_defaults(func=cmd_run)


def resolve_device(requested: str) -> str:
    """auto | cpu | cuda -> the device kind here (launch.base.local_device)."""
    from aifbench.launch.base import local_device

    return local_device(requested)


def cmd_run(args: argparse.Namespace) -> int:
    from aifbench.config import load_suite, log_level_from_env
    from aifbench.launch import here
    from aifbench.plan import build_plan
    from aifbench.systems import load_system

    log_level_from_env()  # the workers' log level: a bad one is refused before anything starts
    telemetry = telemetry_settings(args)
    suite = load_suite(args.suite, args.overrides, args.only)
    system = load_system(args.system)  # a typo would mislabel the results: unknown names are refused
    device = resolve_device(args.device)
    launcher = here(args.nproc)  # this process for --nproc 1, else N local processes
    req = launcher.resolve(system, {"tasks_per_node": args.nproc}, device=device)
    skips = predicted_skips(suite, device, args.nproc)
    if args.dry_run:
        return _print_cases(suite, skips, device, args.format)
    if all(skips):  # every case would skip: say so, store nothing (no empty run in the store)
        print(f"aifbench: every case of suite {suite.name} ({len(skips)}) would be skipped on device {device}, so "
              f"nothing ran and nothing was stored; first reason: {skips[0]}", file=sys.stderr)
        return 0
    plan = build_plan(suite, device=device, results_root=check_store(args.results), telemetry=telemetry,
                      system=system.name, launcher=launcher.label, world_size=req.world_size)
    from aifbench.worker import Interrupted, stop_on_signals

    try:  # SIGINT/SIGTERM: completed cases stay, the runs rows say interrupted (launch stops the workers)
        with stop_on_signals():
            failed = _run_here(launcher, plan, req)
    except Interrupted as exc:
        print(f"aifbench: interrupted by {exc.signame}; completed cases kept in {plan.run_dir}", file=sys.stderr)
        return exc.exit_code
    return _summarize(plan, failed, args.format)


def predicted_skips(suite, device: str, nproc: int) -> list[str | None]:
    """Per case, why this device would skip it (the benchmark's own skip_reason), else None.

    The context is the run's: `nproc` ranks, torch.distributed across them when nproc > 1. Checks
    that need the ranks to agree are made when the case runs; here each rank is taken to agree."""
    from aifbench.benchmarks.base import Context
    from aifbench.config import build_config
    from aifbench.benchmarks import registry

    name = "cpu"
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(0)
    ctx = Context(device="cuda:0" if device == "cuda" else device, device_name=name, world_size=nproc,
                  distributed=nproc > 1)
    out: list[str | None] = []
    for case in suite.cases:
        try:
            cls = registry.get(case.benchmark)
            reason = cls(build_config(cls.Config, case.params, case.benchmark), ctx).skip_reason()
        except Exception:  # a check that cannot be made ahead of time: the run decides
            reason = None
        out.append(reason)
    return out


def _timing_text(timing) -> str:
    import dataclasses

    return " ".join(f"{f.name}={getattr(timing, f.name)}" for f in dataclasses.fields(timing))


def _print_cases(suite, skips: list[str | None], device: str, fmt: str) -> int:
    from aifbench.cli.output import Col, emit

    rows = [{"case_id": c.case_id, "benchmark": c.benchmark, "params": c.params,
             "would_skip": reason is not None, "skip_reason": reason or ""} for c, reason in zip(suite.cases, skips)]
    runs = sum(r is None for r in skips)
    title = (f"suite {suite.name}: {len(rows)} cases, {runs} would run and {len(rows) - runs} would be skipped "
             f"on device {device} (timing: {_timing_text(suite.timing)}); dry run, nothing ran")
    cols = [Col("case_id", "case"), Col("benchmark"),
            Col("params", kind="text", show=lambda r: " ".join(f"{k}={v}" for k, v in r["params"].items())),
            Col("skip_reason", "would skip because", kind="text")]
    emit(rows, cols, fmt, title)
    return 0


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aifbench.cli.output import err_console, is_tty

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=not is_tty())


class ProgressLines:
    """Off a terminal (batch logs, pipes): one short stderr line per finished item, with the
    elapsed time and what is left. On a terminal it prints nothing (the live bar shows it)."""

    def __init__(self, total: int, what: str = "case"):
        import time

        from aifbench.cli.output import is_tty

        self.total, self.what, self.done = total, what, 0
        self.t0 = time.monotonic()
        self.enabled = not is_tty()

    def line(self, done: int, text: str) -> str:
        import time

        self.done = done
        left = self.total - done
        return (f"aifbench: [{done}/{self.total}] {text}  {time.monotonic() - self.t0:.1f} s elapsed, "
                f"{left} {self.what}{'s' if left != 1 else ''} left")

    def __call__(self, done: int, text: str) -> None:
        self.done = done
        if self.enabled:
            print(self.line(done, text), file=sys.stderr, flush=True)


def _run_here(launcher, plan, req) -> bool:
    """Run `plan` through a foreground launcher with a progress bar; True when a rank failed."""
    lines = ProgressLines(len(plan.cases))
    where = plan.device if req.tasks_per_node == 1 else f"{req.tasks_per_node}x {plan.device}"
    order = [c.case_id for c in plan.cases]
    with _progress() as progress:  # the bar names the case now running, not the one that just ended
        task = progress.add_task(_running(plan, order, 0, where), total=len(plan.cases))

        def on_case(case_id: str, what: str) -> None:
            lines(lines.done + 1, f"{case_id} {what}")
            progress.update(task, advance=1, description=_running(plan, order, lines.done, where))

        record = launcher.submit(plan, req, on_case=on_case)
    return any(info.state != "COMPLETED" for info in launcher.states([record])[record.run_id].values())


def _running(plan, order: list[str], done: int, where: str) -> str:
    """The progress bar's text while case `done` (0-based, plan order) runs."""
    if done >= len(order):
        return f"{plan.suite} on {where}: done"
    case = plan.cases[done]
    return f"{plan.suite} on {where}: running {case.benchmark} ({order[done]})"


def _summarize(plan, failed: bool, fmt: str = "table") -> int:
    from aifbench.cli.output import console, print_metrics
    from aifbench.results.store import load

    results = load([plan.run_dir])
    df = results.metrics
    if not len(df):
        logs = sorted(plan.run_dir.glob("worker.rank*.log"))
        tail = logs[0].read_text()[-1500:] if logs else ""
        raise LaunchError(f"no measurements were written under {plan.run_dir}" + (f"; {logs[0].name}:\n{tail}" if tail else ""))
    print_metrics(df, f"run {plan.run_id}", by_rank=df["rank"].nunique() > 1, fmt=fmt)
    counts = df.drop_duplicates(["case_id", "rank"])["status"].value_counts().to_dict()
    summary = f"results: {plan.run_dir}  " + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    if fmt == "table":
        console.print(summary, soft_wrap=not console.is_terminal, highlight=False)
    else:  # stdout is data: the summary line goes to stderr
        print(f"aifbench: {summary}", file=sys.stderr)
    return 1 if failed or counts.get("failed") else 0
