"""Scheduler-neutral commands: submit, jobs, cancel, collect, systems. Each goes through the
backend its system profile (or the run's submission record) names (aifbench.launch); none
branches on a scheduler's name. Slurm's own command (cluster) is in cli/slurm.py."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from aifbench.cli.args import add_format_option, add_plan_options, add_results_option, check_store, telemetry_settings
from aifbench.errors import ConfigError, LaunchError


def register(sub: argparse._SubParsersAction) -> None:
    from aifbench.launch.base import STATES

    _register_submit(sub)
    p = sub.add_parser("jobs", help="state of submitted runs (squeue/sacct, bounded)",
                       description="State of submitted runs: states: " + " ".join(STATES))
    p.add_argument("runs", nargs="*", metavar="RUN_ID", help="run ids or unique prefixes (default: the latest runs)")
    p.add_argument("--last", type=int, default=10, metavar="N", help="without RUN_ID: the latest N runs (0: all; default 10)")
    add_results_option(p)
    p.add_argument("--timeout", type=float, default=20.0, metavar="S", help="bound per Slurm command (default 20)")
    add_format_option(p)
    p.set_defaults(func=cmd_jobs)
    p = sub.add_parser("cancel", help="cancel the Slurm jobs of a run")
    p.add_argument("run", metavar="RUN_ID", help="run id or unique prefix")
    add_results_option(p)
    p.set_defaults(func=cmd_cancel)
    p = sub.add_parser("collect", help="check a submitted run; failed tasks become status=failed rows",
                       description="Check every task of a submitted run; cases of ended jobs that left no rows "
                                   "become status=failed rows with the Slurm state and the stderr tail.")
    p.add_argument("run", metavar="RUN_ID", help="run id or unique prefix")
    add_results_option(p)
    add_format_option(p)
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("systems", help="AI-factory system profiles (list, or 'show NAME')")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="system for 'show'")
    add_format_option(p)
    p.set_defaults(func=cmd_systems)


def _register_submit(sub: argparse._SubParsersAction) -> None:
    from aifbench.launch.jobspec import MODES

    p = sub.add_parser("submit", help="run a suite as Slurm jobs on a system (submitit)",
                       description="Submit a suite (or a job file from jobs/) to a system's scheduler. Each option "
                                   "comes from the first that gives it: command line > job file > suite > "
                                   "system profile (--dry-run shows which).")
    p.add_argument("target", metavar="SUITE|JOBFILE", help="suite name/path, or job name/path (jobs/*.toml)")
    p.add_argument("--system", help="system profile (aifbench systems); required unless the job file names one")
    p.add_argument("--partition", help="partition of the profile (default: the profile's)")
    p.add_argument("--nodes", type=int, metavar="N")
    p.add_argument("--tasks-per-node", type=int, metavar="T", help="default: one per GPU")
    p.add_argument("--time", dest="time_min", type=int, metavar="MIN", help="time limit in minutes")
    p.add_argument("--account", help="Slurm account (default: $AIFBENCH_ACCOUNT)")
    p.add_argument("--reservation", help="Slurm reservation (default: $AIFBENCH_RESERVATION)")
    p.add_argument("--qos", help="override the partition's QoS")
    p.add_argument("--mode", choices=sorted(MODES), help="; ".join(f"{k}: {v}" for k, v in MODES.items()))
    p.add_argument("--array-parallelism", type=int, metavar="K", help="array tasks running at once (default 16)")
    p.add_argument("--cases-per-task", type=int, metavar="C", help="array/packed: cases per task (default 1)")
    p.add_argument("--job-name", dest="name", metavar="NAME")
    p.add_argument("--wckey", help="Slurm wckey, for sites that enforce them (default: none)")
    add_plan_options(p)
    add_results_option(p)
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script; submit nothing")
    p.add_argument("--wait", action="store_true", help="block until the jobs end, then collect")
    p.add_argument("--wait-timeout", type=float, default=None, metavar="S", help="give up waiting after S seconds")
    add_format_option(p)  # of the collect table that --wait prints
    p.set_defaults(func=cmd_submit)


# --- submit ---------------------------------------------------------------------------------

def build_submission(args: argparse.Namespace):
    """(plan, request) from the arguments, the job file, the suite and the profile, each option
    from the first of them that gives it (jobspec.OPTION_SOURCES); raises ConfigError on bad input."""
    import dataclasses

    from aifbench.config import load_suite
    from aifbench.launch import backend, jobspec
    from aifbench.plan import build_plan
    from aifbench.systems import list_systems, load_system
    from aifbench.systems.environment import override

    job = jobspec.find_job(args.target) or {}
    suite_name = job.get("suite", args.target)
    system_name = args.system or job.get("system")
    if not system_name:
        raise ConfigError("--system is required; allowed: " + ", ".join(list_systems()))
    system = load_system(system_name)
    if "environment" in job:
        system = dataclasses.replace(system, environment=override(system.environment, job["environment"],
                                                                    args.target))
    suite = load_suite(suite_name, [*job.get("set", []), *args.overrides], args.only or job.get("only"))
    flags = {k: getattr(args, k) for k in ("partition", "nodes", "tasks_per_node", "time_min", "account",
                                           "reservation", "qos", "mode", "array_parallelism", "cases_per_task", "name",
                                           "wckey")}
    options, sources = jobspec.layered(
        ("command line", flags),
        ("job file", {k: v for k, v in job.items() if k not in ("suite", "system", "set", "only", "environment")}),
        ("suite", {"time_min": suite.time_min}))
    if "account" not in options and os.environ.get("AIFBENCH_ACCOUNT"):
        sources["account"] = "environment (AIFBENCH_ACCOUNT)"
    if "reservation" not in options and os.environ.get("AIFBENCH_RESERVATION"):
        sources["reservation"] = "environment (AIFBENCH_RESERVATION)"
    sources.update({f"environment.{k}": "job file" for k in job.get("environment", {})})
    telemetry = telemetry_settings(args)
    launcher = backend(system.scheduler)
    req = dataclasses.replace(launcher.resolve(system, options), sources=sources)
    results = _safe_results(args.results)
    plan = build_plan(suite, device=req.device, results_root=results, telemetry=telemetry, system=system.name,
                      partition=req.queue.partition or req.queue.name, launcher=launcher.label,
                      world_size=1 if req.mode == "packed" else req.world_size)
    return plan, req


def _safe_results(path: Path) -> Path:
    """Absolute results root; refused when it would need quoting inside #SBATCH lines."""
    from aifbench.systems import SAFE_VALUE

    resolved = check_store(path.expanduser()).absolute()
    if not all(SAFE_VALUE.match(part) or part == "/" for part in resolved.parts):
        raise ConfigError(f"--results {str(path)!r} refused: path parts may contain only letters, digits and "
                          "_ . : + @ , = / - (it is written into the sbatch script)")
    return resolved


def cmd_submit(args: argparse.Namespace) -> int:
    from aifbench.cli.output import console, err_console
    from aifbench.launch import backend

    plan, req = build_submission(args)
    _positive("--wait-timeout", args.wait_timeout)
    launcher = backend(req.system.scheduler)
    what = (f"{len(plan.cases)} case(s) of suite {plan.suite} on {req.system.name}/{req.queue.name}: "
            f"{req.mode}, {req.nodes} node(s) x {req.tasks_per_node} task(s)"
            + (f", array of {req.jobs_for(len(plan.cases))}" if req.mode == "array" else ""))
    if args.dry_run:
        err_console.print(f"dry run: {what}; nothing submitted", markup=False, soft_wrap=True)
        for note in launcher.notes(req):
            err_console.print(f"note: {note}", markup=False, soft_wrap=True)
        _print_sources(req)
        print(launcher.script(plan, req), end="")
        return 0
    record = launcher.submit(plan, req)
    console.print(f"submitted run [bold]{record.run_id}[/bold]: {what}; job(s) "
                  + ", ".join(j.job_id for j in record.jobs))
    console.print(f"results: {record.run_dir}   follow: aifbench jobs {record.run_id}")
    if not args.wait:
        return 0
    _wait(record, args.wait_timeout)
    return _print_collect(record, args.format)


def _print_sources(req) -> None:
    """Each option's value and where it came from (stderr; the script carries them as comments)."""
    from aifbench.cli.output import err_console
    from aifbench.launch.jobspec import OPTION_SOURCES, option_rows

    rows = option_rows(req)
    width = max(len(k) for k, _, _ in rows)
    err_console.print(f"option sources ({' > '.join(OPTION_SOURCES)}):", markup=False)
    for key, value, source in rows:
        err_console.print(f"  {key:<{width}}  {value}  <- {source}", markup=False, soft_wrap=True, highlight=False)


def _wait(record, timeout_s: float | None, poll_s: float = 2.0) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from aifbench.cli.output import err_console, is_tty
    from aifbench.cli.run import ProgressLines
    from aifbench.launch import backend

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    launcher = backend(record.scheduler)
    total = sum(len(cases) for *_, cases in record.expected())
    ended: set[str] = set()
    lines: ProgressLines | None = None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=not is_tty()) as progress:
        bar = progress.add_task("submitted", total=total)
        while True:
            current = launcher.states([record])[record.run_id]
            lines = lines or ProgressLines(len(current), "task")
            for job_id, info in sorted(current.items()):  # off a TTY: one line per Slurm task that ended
                if info.final and job_id not in ended:
                    ended.add(job_id)
                    lines(len(ended), f"Slurm task {job_id} {info.state}")
            counts = _count(s.state for s in current.values())
            progress.update(bar, completed=_cases_done(record.run_dir), description=counts)
            if all(s.final for s in current.values()):
                return
            if deadline is not None and time.monotonic() > deadline:
                raise LaunchError(f"--wait gave up after {timeout_s:g} s ({counts}); "
                                  f"check later with: aifbench jobs {record.run_id}")
            time.sleep(poll_s)


def _count(states) -> str:
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def _cases_done(run_dir: Path) -> int:
    """(case, rank) pairs with rows in the tasks' own metrics shards (not those collect wrote)."""
    from aifbench.launch.jobspec import is_collected_part
    from aifbench.results.store import SHARD_RE, read_parquet

    done = 0
    for shard in run_dir.iterdir():
        m = SHARD_RE.match(shard.name)
        if not m or m["table"] != "metrics" or is_collected_part(m["part"]):
            continue
        try:
            done += len(set(read_parquet(shard, columns=["case_id"]).column(0).to_pylist()))
        except Exception:  # being replaced right now
            pass
    return done


# --- jobs, cancel, collect ------------------------------------------------------------------

def submitted_runs(root: Path, wanted: list[str]) -> list[Path]:
    """Run directories with a submission record: `wanted` ids (or unique prefixes), else all, oldest first."""
    from aifbench.launch.jobspec import SUBMISSION_FILE
    from aifbench.results.store import match_run

    dirs = sorted(p.parent for p in Path(root).glob(f"*/{SUBMISSION_FILE}"))
    if not wanted:
        return dirs
    return [match_run(dirs, run_id, root, what="submitted run") for run_id in wanted]


def cmd_jobs(args: argparse.Namespace) -> int:
    from aifbench.cli.output import console
    from aifbench.launch import states
    from aifbench.launch.jobspec import Submission

    _positive("--timeout", args.timeout)
    if args.last < 0:
        raise ConfigError(f"--last must be >= 0 (0: all runs), got {args.last}")
    every = submitted_runs(args.results, [])
    runs = submitted_runs(args.results, args.runs) if args.runs else every[-args.last:] if args.last else every
    if not runs:
        if args.format == "table":
            console.print(f"no submitted runs under {args.results}", soft_wrap=True)
        else:
            from aifbench.cli.output import emit

            emit([], [], args.format)
        return 0
    records = [Submission.load(d) for d in runs]
    current = states(records, timeout_s=args.timeout)
    rows = []
    for record in records:
        for job in record.jobs:
            info = current[record.run_id][job.job_id]
            rows.append({"run_id": record.run_id, "system": record.system, "partition": record.partition,
                         "mode": record.mode, "job_id": job.job_id, "state": info.state, "reason": info.reason,
                         "exit_code": info.exit_code, "nodes": info.nodes, "elapsed": info.elapsed, "source": info.source})
    from aifbench.cli.output import Col

    cols = [Col("run_id", "run"), Col("system/partition", show=lambda r: f"{r['system']}/{r['partition']}"),
            Col("mode"), Col("job_id", "job"), Col("state"),
            Col("reason / exit", kind="text", show=lambda r: r["reason"] or (r["exit_code"] if r["exit_code"] not in ("", "0:0") else "")),
            Col("nodes", kind="text"), Col("elapsed"), Col("source")]
    from aifbench.cli.output import emit

    notes = [f"showing the latest {len(runs)} of {len(every)} submitted runs (--last N, or name run ids)"] \
        if not args.runs and len(every) > len(runs) else []
    emit(rows, cols, args.format, f"submitted runs under {args.results}", notes=notes)
    return 0


def _positive(flag: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{flag} must be > 0 seconds, got {value:g}")


def cmd_cancel(args: argparse.Namespace) -> int:
    from aifbench.cli.output import console
    from aifbench.launch import backend
    from aifbench.launch.jobspec import Submission

    record = Submission.load(submitted_runs(args.results, [args.run])[0])
    cancelled = backend(record.scheduler).cancel(record)
    console.print(f"run {record.run_id}: " + (f"cancelled {', '.join(cancelled)}" if cancelled
                                               else "nothing to cancel (every job has ended)"))
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from aifbench.launch.jobspec import Submission

    record = Submission.load(submitted_runs(args.results, [args.run])[0])
    return _print_collect(record, args.format)


TASKS_LISTED = 32


def _print_collect(record, fmt: str = "table") -> int:
    from collections import Counter

    from aifbench.cli.output import Col, emit, err_console
    from aifbench.launch import backend

    report = backend(record.scheduler).collect(record)
    rows = [{"run_id": record.run_id, "job_id": t.job_id, "part": t.part, "rank": t.rank, "state": t.state,
             "reported": t.reported, "failed": t.failed_reported, "missing": t.missing, "reason": t.reason}
            for t in report.tasks]
    cols = [Col("job_id", "job"), Col("part"), Col("rank", kind="num"), Col("state"), Col("reported", kind="num"),
            Col("failed", kind="num"), Col("missing", kind="num"), Col("reason", kind="text")]
    notes = [f"{len(report.pending)} task(s) not finished yet: collect again later (the run is compacted once "
             "every task has ended)"] if report.pending else []
    if fmt == "table" and len(rows) > TASKS_LISTED:  # thousands of tasks: counts, and the tasks with news
        states = ", ".join(f"{k} {v}" for k, v in sorted(Counter(t.state for t in report.tasks).items()))
        rows = [r for r in rows if r["missing"] or r["failed"] or r["state"] != "COMPLETED"]
        notes.append(f"{len(report.tasks)} tasks: {states}; listed: tasks with failed or missing cases or not "
                     f"COMPLETED (first {TASKS_LISTED} of {len(rows)})")
        rows = rows[:TASKS_LISTED]
    notes += [f"wrote {path}" for path in report.written[:TASKS_LISTED]]
    if report.compaction is not None:
        c = report.compaction
        notes.append(f"compacted: {len(c.written)} file(s) written, {c.removed} merged file(s) removed"
                     if c.changed else "compacted already: nothing changed")
        notes += [f"not compacted (left in place): {path}: {why}" for path, why in c.bad]
    notes.append(f"results: {record.run_dir}")
    if fmt == "table":
        emit(rows, cols, fmt, f"run {record.run_id}", notes=notes)
    else:  # stdout is data; the notes go to stderr
        emit(rows, cols, fmt)
        for note in notes:
            err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    return 1 if report.failed else 0


# --- systems --------------------------------------------------------------------------------

def cmd_systems(args: argparse.Namespace) -> int:
    from aifbench.cli.output import Col, console, emit
    from aifbench.systems import list_systems, load_system

    if args.action == "show" or args.name:
        if not args.name:
            raise ConfigError("systems show NAME: allowed: " + ", ".join(list_systems()))
        console.print(_describe(load_system(args.name)), soft_wrap=True)
        return 0
    rows = []
    for name in list_systems():
        s = load_system(name)
        rows.append({"name": name, "site": s.site, "gpu_sku": s.node.gpu_sku, "gpus_per_node": s.node.gpus,
                     "arch": s.node.arch, "partitions": list(s.queue_names), "scheduler": s.scheduler})
    cols = [Col("name"), Col("site", kind="text"), Col("gpu_sku", "GPU"), Col("gpus_per_node", "per node", kind="num"),
            Col("arch"), Col("partitions", show=lambda r: ", ".join(r["partitions"]) or "-"), Col("scheduler")]
    emit(rows, cols, args.format, "system profiles (aifbench systems show NAME)")
    return 0


def _describe(s) -> str:
    from rich.markup import escape

    lines = [f"[bold]{s.name}[/bold] — {escape(s.site)}", escape(s.description), "",
             f"node: {s.node.gpus}x {s.node.gpu_sku} (torch device {s.node.device}), {escape(s.node.cpu)}, "
             f"{s.node.cpu_cores} CPU cores, {s.node.memory_gb} GB host memory, {escape(s.node.network)}; "
             f"{s.node.count} nodes"]
    if s.table:
        sl = s.table
        lines.append(f"{s.scheduler}: {sl.summary()}")
        for q in sl.queues:
            mark = " (default)" if q.name == sl.default_queue else ""
            lines.append(f"  partition {q.name}{mark}: --partition={q.partition or '-'} qos={q.qos or '-'} "
                         f"max_nodes={q.max_nodes or '?'} max_time={q.max_time_min or '?'} min {escape(q.note)}")
    lines += _describe_environment(s)
    lines += ["sources:"] + [f"  {u}" for u in s.sources]
    lines += ["unconfirmed:"] + [f"  - {escape(u)}" for u in s.unconfirmed] if s.unconfirmed else []
    refs = s.acceptance.get("reference", []) if isinstance(s.acceptance, dict) else []
    lines.append(f"acceptance references: {len(refs)} (aifbench validate)")
    lines.append(f"account: --account or AIFBENCH_ACCOUNT ({'set' if os.environ.get('AIFBENCH_ACCOUNT') else 'unset'})")
    return "\n".join(lines)


def _describe_environment(s) -> list[str]:
    """The software environment: what each key asks for, the script lines and srun options it becomes."""
    from rich.markup import escape

    envt = s.environment
    lines = [escape("environment (a job file's [environment] replaces any of these):")]
    for key, value in envt.describe().items():
        if key != "vars":
            lines.append(f"  {key}: {escape(' '.join(value) if isinstance(value, list) else str(value))}")
    lines.append(f"  --export: {envt.export or 'the site default (Slurm: ALL)'}")
    lines += [f"  script: {escape(line)}" for line in envt.script_lines()]
    if envt.srun_args():
        lines.append(f"  srun: {escape(' '.join(envt.srun_args()))}")
    lines.append(f"  runs: {escape(s.interpreter())} -m submitit.core._submit ...")
    return lines
