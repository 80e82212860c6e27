"""`aifbench list`, `aifbench show`, `aifbench runs`, `aifbench schema`: what exists and what was measured."""

from __future__ import annotations

import argparse

from aifbench.cli.args import STORE, add_format_option, add_results_option
from aifbench.errors import ConfigError, no_results


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

    p = sub.add_parser("compact", help="merge a run's shards into one file per table (atomic, idempotent)",
                       description="Compact a run: its per-rank shards become one file per table, written atomically; "
                                   "a crash loses nothing, a second compaction changes nothing, two at once are safe. "
                                   "collect and the local launcher do this when a run has ended.")
    p.add_argument("run_id", nargs="?", help="run id or a unique prefix (default: latest)")
    add_results_option(p)
    p.set_defaults(func=cmd_compact)

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
    from aifbench.benchmarks import registry
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


SHOW_RUNS_COLUMNS = ["run_id", "rank", "suite", "system", "node", "device_name", "world_size", "started_utc",
                     "ended_utc", "status", "config", "config_hash", "telemetry", "task"]
BY_RANK_MAX = 16
"""--all lists every rank up to this many; larger runs get the per-rank distribution instead"""


def cmd_show(args: argparse.Namespace) -> int:
    import pyarrow.dataset as ds

    from aifbench.cli.output import SUMMARY_STATS, console, print_metrics, print_rank_spread
    from aifbench.results.store import Results, load, resolve_run

    from aifbench.analysis.data import analysis_metrics

    run_dir = resolve_run(args.results, args.run_id)
    provenance = load([run_dir], tables=("runs",), columns={"runs": SHOW_RUNS_COLUMNS}, categorical=True)
    first = provenance.runs["rank"]  # each table's files are read once
    # every row of the first rank; of the others only what the distribution table shows
    mine = ds.field("rank") == int(first.min()) if len(first) else ds.scalar(True)
    keep = None if args.all else (ds.field("stat").isin(list(SUMMARY_STATS)) & (
        mine | ds.field("metric").isin(analysis_metrics())) | (ds.field("status") != "ok"))
    cols = [c for c in ("case_id", "rank", "benchmark", "params", "metric", "value", "unit", "stat", "noisy",
                        "n_samples", "pct_of_peak", "peak", "peak_source", "status", "reason", "detail", "flags",
                        "node", "device", "world_size")]
    measured = load([run_dir], tables=("metrics",), columns={"metrics": cols},
                    filters={"metrics": keep} if keep is not None else None, categorical=True)
    results = Results({**measured.tables, "runs": provenance.runs}, provenance.skipped + measured.skipped)
    runs, metrics = results.runs, results.metrics
    if not len(metrics):
        states = ", ".join(sorted(set(runs["status"].astype(str)))) if len(runs) else "no runs row either"
        raise ConfigError(f"run {run_dir.name} has no metrics: no case finished (run status: {states})")
    if len(runs) and args.format == "table":
        from aifbench.analysis.runs import summary

        r = runs.sort_values("rank").iloc[0]
        status = summary(results)["status"].iloc[0]
        console.print(f"[bold]{r['run_id']}[/]  suite {r['suite']}  system {r['system']}  node {r['node']}  "
                      f"device {r['device_name']}  ranks {r['world_size']}  started {r['started_utc']:%Y-%m-%d %H:%M:%S} UTC  "
                      f"status {status}  config {r['config_hash']}  telemetry {r['telemetry']}", soft_wrap=not console.is_terminal)
    ranks = metrics["rank"].nunique()
    title = f"metrics of {run_dir.name}" + (f" (rank {metrics['rank'].min()} of {ranks})" if ranks > 1 else "")
    print_metrics(metrics, title, all_stats=args.all, by_rank=args.all and ranks <= BY_RANK_MAX, fmt=args.format)
    if ranks > 1 and args.format == "table":
        print_rank_spread(metrics, ranks)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from aifbench.analysis.runs import load_store, summary
    from aifbench.cli.output import Col, console, emit

    if args.results != STORE and not args.results.is_dir():  # a typo in a path named by hand
        raise no_results(args.results)
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


def cmd_compact(args: argparse.Namespace) -> int:
    import time

    from aifbench.cli.output import console, err_console
    from aifbench.results.compact import compact
    from aifbench.results.store import resolve_run

    run_dir = resolve_run(args.results, args.run_id)
    t0 = time.monotonic()
    report = compact(run_dir)
    for note in report.notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    aside = {q.name.removeprefix(".").removesuffix(".damaged"): q for q in report.quarantined}
    for path, why in report.bad:
        where = (f"quarantined as {aside[path.name].name} (its rows are no longer read)" if path.name in aside
                 else "left in place")
        err_console.print(f"not compacted ({where}): {path}: {why}", highlight=False, soft_wrap=True)
    what = (f"{len(report.written)} file(s) written, {report.removed} merged file(s) removed" if report.changed
            else "already compacted, nothing changed")
    console.print(f"compact {run_dir.name}: {what}; {report.summary()} in {time.monotonic() - t0:.1f} s",
                  highlight=False, soft_wrap=True)
    return 2 if report.bad else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from aifbench import metrics
    from aifbench.results import schema

    from aifbench.telemetry.validity import validity_markdown

    lines = [] if args.metrics else [schema.reference_markdown()]
    lines += ["## metric dictionary", "", TRAITS_KEY, "",
              "| metric | unit | better | role | scope | additive | derivation | plots | definition |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in sorted(metrics.METRICS.values(), key=lambda m: m.name):
        cells = [m.name, m.unit, "higher" if m.higher_is_better else "lower", m.role, m.scope,
                 "yes" if m.additive else "no", derivation_text(m), ", ".join(m.plots), m.definition]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    lines += [] if args.metrics else ["", validity_markdown()]
    print("\n".join(lines))
    return 0


def md_cell(text: str) -> str:
    """A Markdown table cell: a '|' in the text escaped, newlines as spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


TRAITS_KEY = ("Traits (aifbench.metrics): role merit = throughput, score, latency, efficiency (shown by default); "
              "scope job = covers every rank (divided by world_size per GPU); additive = per GPU / node / W "
              "figures mean something; derivation from time = work / median time, window = from a timed "
              "region's telemetry window, X / power = an efficiency; plots = the report plots that draw it.")


def derivation_text(m) -> str:
    """One metric's derivation in words, for the schema table."""
    from aifbench import metrics

    if m.per_power is not None:
        power = metrics.POWER if m.region == metrics.MAIN else f"{m.region}_{metrics.POWER}"
        return f"{', else '.join(m.per_power.of)} / {power}"
    if m.derivation == "window":
        merge = {"sum": ", segments summed", "lowest": ", lowest of segments"}.get(m.over_segments, "")
        return f"window of region {m.region}{merge}"
    return m.derivation.replace("_", " ")
