"""`aifbench list`, `aifbench show`, `aifbench runs`, `aifbench schema`: what exists and what was measured."""

from __future__ import annotations

import argparse

from aifbench.cli.args import add_format_option, add_results_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="benchmarks and suites", description="List benchmarks and suites.")
    p.add_argument("benchmark", nargs="?", help="show one benchmark's parameters")
    add_format_option(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a run's metrics (the latest by default)")
    p.add_argument("run_id", nargs="?", help="run id or a unique prefix (default: latest)")
    add_results_option(p)
    p.add_argument("--all", action="store_true", help="every statistic (iqr, p5, p95, min, ...) and every rank")
    add_format_option(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("runs", help="the runs of a results store, newest first",
                       description="List a store's runs: id, suite, system, status (ok, failed, interrupted, "
                                   "incomplete, running), ranks, cases ok/failed/skipped, start, duration.")
    add_results_option(p)
    add_format_option(p)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("schema", help="results schema column reference and metric dictionary (Markdown)")
    p.add_argument("--metrics", action="store_true", help="only the metric dictionary")
    p.set_defaults(func=cmd_schema)


def cmd_list(args: argparse.Namespace) -> int:
    from aifbench import registry
    from aifbench.benchmarks.base import describe
    from aifbench.cli.output import Col, emit
    from aifbench.config import load_suite, suite_names

    if args.benchmark:
        cls = registry.get(args.benchmark)
        rows = [{"benchmark": cls.name, "parameter": p["name"], "default": p["default"],
                 "choices": list(p["choices"]) if p["choices"] else None, "min": p["min"], "max": p["max"],
                 "meaning": p["doc"]} for p in describe(cls)]
        cols = [Col("parameter"), Col("default"),
                Col("allowed", show=lambda r: ", ".join(map(str, r["choices"])) if r["choices"] else _range(r["min"], r["max"])),
                Col("meaning", kind="text")]
        emit(rows, cols, args.format, f"{cls.name}: {cls.description}")
        return 0
    rows = [{"kind": "benchmark", "name": name, "metrics": list(registry.get(name).emits), "cases": None,
             "description": registry.get(name).description} for name in registry.names()]
    rows += [{"kind": "benchmark", "name": name, "metrics": [], "cases": None, "description": f"cannot load: {why}"}
             for name, why in sorted(registry.BROKEN.items())]
    for name in suite_names():
        try:
            s = load_suite(name)
            rows.append({"kind": "suite", "name": name, "metrics": None, "cases": len(s.cases), "description": s.description})
        except Exception as exc:  # a broken suite file is listed, not fatal
            rows.append({"kind": "suite", "name": name, "metrics": None, "cases": None, "description": f"invalid: {exc}"})
    if args.format != "table":
        emit(rows, [Col("kind"), Col("name"), Col("metrics", kind="text"), Col("cases", kind="num"),
                    Col("description", kind="text")], args.format)
        return 0
    emit([r for r in rows if r["kind"] == "benchmark"],
         [Col("name"), Col("metrics", kind="text"), Col("description", kind="text")], "table", "benchmarks")
    emit([r for r in rows if r["kind"] == "suite"],
         [Col("name"), Col("cases", kind="num"), Col("description", kind="text")], "table", "suites")
    return 0


def _range(lo, hi) -> str:
    if lo is None and hi is None:
        return ""
    return f"{'' if lo is None else lo}..{'' if hi is None else hi}"


def cmd_show(args: argparse.Namespace) -> int:
    from aifbench.cli.output import console, print_metrics
    from aifbench.errors import ConfigError
    from aifbench.results.store import load, resolve_run

    run_dir = resolve_run(args.results, args.run_id)
    results = load([run_dir])
    runs = results.runs
    if not len(results.metrics):
        states = ", ".join(sorted(set(runs["status"].astype(str)))) if len(runs) else "no runs row either"
        raise ConfigError(f"run {run_dir.name} has no metrics: no case finished (run status: {states})")
    if len(runs) and args.format == "table":
        from aifbench.analysis.runs import summary

        r = runs.sort_values("rank").iloc[0]
        status = summary(results)["status"].iloc[0]
        console.print(f"[bold]{r['run_id']}[/]  suite {r['suite']}  system {r['system']}  node {r['node']}  "
                      f"device {r['device_name']}  ranks {r['world_size']}  started {r['started_utc']:%Y-%m-%d %H:%M:%S} UTC  "
                      f"status {status}  config {r['config_hash']}  telemetry {r['telemetry']}", soft_wrap=True)
    print_metrics(results.metrics, f"metrics of {run_dir.name}", all_stats=args.all, by_rank=args.all, fmt=args.format)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from aifbench.analysis.runs import load_store, summary
    from aifbench.cli.output import Col, console, emit

    table = summary(load_store(args.results))
    rows = table.to_dict("records")
    if not rows and args.format == "table":
        console.print(f"no runs under {args.results}; start one with 'aifbench run smoke'", soft_wrap=True)
        return 0
    cols = [Col("run_id", "run"), Col("suite"), Col("system"), Col("status"), Col("ranks", kind="num"),
            Col("cases", kind="num"), Col("ok", kind="num"), Col("failed", kind="num"), Col("skipped", kind="num"),
            Col("started_utc", "started (UTC)", show=lambda r: f"{r['started_utc']:%Y-%m-%d %H:%M:%S}"),
            Col("duration_s", "duration s", kind="num")]
    emit(rows, cols, args.format, f"runs under {args.results} (newest first)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from aifbench import metrics
    from aifbench.results import schema

    lines = [] if args.metrics else [schema.reference_markdown()]
    lines += ["## metric dictionary", "", "| metric | unit | better | definition |", "|---|---|---|---|"]
    for m in sorted(metrics.METRICS.values(), key=lambda m: m.name):
        lines.append(f"| {m.name} | {m.unit} | {'higher' if m.higher_is_better else 'lower'} | {m.definition} |")
    print("\n".join(lines))
    return 0
