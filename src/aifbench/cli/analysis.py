"""`aifbench compare | validate | baseline | report | export | import`: results into one picture."""

from __future__ import annotations

import argparse
from pathlib import Path

from aifbench.cli.args import STORE, add_format_option, add_results_option, add_results_selection, selected_results
from aifbench.errors import ConfigError


def _selection_args(p: argparse.ArgumentParser, reference_default: bool = True) -> None:
    add_results_selection(p)
    if reference_default:
        p.add_argument("--no-reference", dest="reference", action="store_false",
                       help="leave out the reference runs measured on real GPUs (results/reference)")
    else:
        p.add_argument("--with-reference", dest="reference", action="store_true",
                       help="include the reference runs (results/reference)")
    p.add_argument("--reference-dir", type=Path, default=None, metavar="DIR",
                   help="where the reference runs are (default: results/reference)")
    p.add_argument("--include-incomplete", action="store_true",
                   help="pool running, interrupted and incomplete runs too (default: left out, and named)")


def _csv_list(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def register(sub: argparse._SubParsersAction) -> None:
    for add in (_add_compare, _add_validate, _add_baseline, _add_report, _add_exchange):
        add(sub)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="medians with spread per system / partition / GPU / node; vs a baseline",
                       description="Compare results across systems, partitions, GPU models or nodes: medians with "
                                   "spread, per GPU, per node, per watt, % of peak; with --baseline, differences "
                                   "tested on the raw samples (Mann-Whitney U and a bootstrap interval).")
    _selection_args(p)
    p.add_argument("--by", default="system", metavar="GROUPING", help="system | partition | gpu | node (default: system)")
    p.add_argument("--metric", dest="metrics", action="extend", type=_csv_list, default=[], metavar="M1,M2",
                   help="metrics to show (default: every figure of merit)")
    p.add_argument("--baseline", metavar="RUN_ID|NAME", help="run id (or prefix) or saved baseline name to compare against")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the baseline test (default 0.05)")
    add_format_option(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of the terminal")
    p.set_defaults(func=cmd_compare)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="acceptance of a partition: complete, references, outliers, flags (exit 1 unless PASS)",
                       description="Check one run against the references of a system profile, find slow GPUs and "
                                   "nodes (robust z-score), honour telemetry validity flags, check drift against a "
                                   "baseline. PASS (exit 0) only when every case of the run's plan ran on every rank, "
                                   "every reference that applies was judged and no check failed; else FAIL or "
                                   "INCOMPLETE (exit 1); a run whose plan cannot be read exits 2.")
    p.add_argument("run_id", nargs="?", help="run id or a unique prefix (default: the latest run)")
    add_results_option(p)
    p.add_argument("--system", metavar="NAME", help="system profile whose acceptance references apply (default: the run's system)")
    p.add_argument("--references", type=Path, metavar="FILE", help="TOML file of [[reference]] entries (instead of the profile)")
    p.add_argument("--baseline", metavar="NAME|RUN_ID", help="also check drift against this baseline")
    p.add_argument("--flags", default="exclude", metavar="POLICY",
                   help="rows with telemetry validity flags: exclude (default) | fail | ignore")
    p.add_argument("--min-deviation", type=float, default=5.0, metavar="PCT",
                   help="an outlier must also be this many %% from the median (default 5)")
    p.add_argument("--strict", action="store_true",
                   help="a reference that judges nothing in the run fails (default: it is skipped)")
    add_format_option(p, extra=("junit",))
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML to FILE")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of the terminal")
    p.set_defaults(func=cmd_validate)


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="freeze a run as a partition's baseline; list; check drift")
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)
    b = bsub.add_parser("save", help="freeze a run as a baseline")
    b.add_argument("run_id", nargs="?", help="run id or unique prefix (default: latest)")
    b.add_argument("--name", required=True, help="baseline name (letters, digits, '.', '_', '-')")
    b.add_argument("--note", default="", help="free text kept with the baseline")
    b.add_argument("--force", action="store_true", help="replace an existing baseline of that name")
    add_results_option(b)
    b.set_defaults(func=cmd_baseline_save)
    b = bsub.add_parser("list", help="saved baselines")
    add_results_option(b)
    add_format_option(b)
    b.set_defaults(func=cmd_baseline_list)
    b = bsub.add_parser("check", help="drift of a run against a baseline (exit 1 when worse)")
    b.add_argument("run_id", nargs="?", help="run id or unique prefix (default: latest)")
    b.add_argument("--name", required=True, help="baseline name (or a run id)")
    b.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    add_results_option(b)
    add_format_option(b)
    b.set_defaults(func=cmd_baseline_check)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML file with plots and tables")
    _selection_args(p)
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="FILE",
                   help="HTML file to write (default: report.html)")
    p.add_argument("--title", default="aifbench report")
    p.add_argument("--usage", dest="usage_cards", action="append", default=[], metavar="CARD",
                   help="also draw this utilisation card (id in RESULTS/usage or a card file; repeatable): aifbench usage")
    p.set_defaults(func=cmd_report)


def _add_exchange(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="all tables of the selected runs in one Parquet bundle")
    _selection_args(p, reference_default=False)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="BUNDLE.parquet")
    p.add_argument("--force", action="store_true", help="replace BUNDLE.parquet when it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="add a bundle's runs, or other tools' outputs (--from), to a results store (idempotent)",
                       description="aifbench import BUNDLE.parquet: an 'aifbench export' bundle. aifbench import --from "
                                   "TOOL FILE...: outputs of nccl-tests, rccl-tests, nvbandwidth, stream, babelstream, "
                                   "dcgm-diag or mlperf (auto: recognised from the content), one run per file "
                                   "(docs/importing.md).")
    p.add_argument("bundle", type=Path, nargs="+", metavar="FILE", help="BUNDLE.parquet, or with --from the tool's output files")
    p.add_argument("--from", dest="tool", default=None, metavar="TOOL",
                   help="the tool whose output FILE is: nccl-tests, rccl-tests, nvbandwidth, stream, babelstream, "
                        "dcgm-diag, mlperf, or auto")
    p.add_argument("--system", default=None, metavar="NAME",
                   help="system name stored with imported runs (default: the file's name without its extension)")
    p.add_argument("--partition", default="", metavar="P", help="partition stored with imported runs")
    add_results_option(p)
    p.set_defaults(func=cmd_import)


# --- helpers --------------------------------------------------------------------------------

def _select(args: argparse.Namespace, full: bool = False):
    """The lean read (data.load_analysis) unless `full`: what compare and report use."""
    from aifbench.analysis.data import select

    return select(args.paths, include_reference=args.reference, reference_dir=args.reference_dir, full=full,
                  metrics=tuple(getattr(args, "metrics", ()) or ()))


def _emit(text: str, output: Path | None) -> None:
    from aifbench.cli.output import write_text

    write_text(text, output)


def _comparison_out(df, fmt_name: str, title: str, output: Path | None, left_out: dict[str, str]) -> None:
    from aifbench.analysis.compare import display_frame, drop_empty, fmt, records
    from aifbench.cli.output import Col, emit

    notes = []
    if left_out:
        notes.append("left out (not complete; --include-incomplete pools them): "
                     + ", ".join(f"{r} ({s})" for r, s in sorted(left_out.items())))
        if fmt_name in ("json", "csv"):
            import sys

            print(f"aifbench: {notes[-1]}", file=sys.stderr)
    if fmt_name == "table" and output is None:
        shown = display_frame(df)
        cols = [Col(str(c), kind="text" if c == "case" else "num" if c not in ("metric", "group", "verdict", "suite", "run status") else "id")
                for c in shown.columns]
        style = {"worse": "bold red", "better": "green"}
        emit(shown.to_dict("records"), cols, "table", title,
             notes=["n = runs/ranks/samples; ±IQR = (q3 - q1) / median of the raw samples", *notes],
             row_style=lambda r: style.get(r.get("verdict", ""), ""))
        return
    if fmt_name in ("table", "markdown"):
        shown = drop_empty(df)
        cols = [Col(str(c), show=lambda r, c=c: fmt(r[c])) for c in shown.columns]
        emit(shown.to_dict("records"), cols, "markdown", title, notes=notes, output=output)
    else:
        emit(records(df), [Col(c) for c in df.columns], fmt_name, title, output=output)


def _find_baseline(name: str, roots: list[Path]):
    from aifbench.analysis import baseline

    errors = []
    for root in roots:
        try:
            return baseline.load(root, name)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0])


# --- handlers -------------------------------------------------------------------------------

def cmd_compare(args: argparse.Namespace) -> int:
    from aifbench.analysis.compare import CompareOptions, compare, excluded_runs

    args.paths = selected_results(args)
    sel = _select(args)
    base, title = None, f"compare by {args.by}"
    if args.baseline:
        roots = [p for p in args.paths if p.is_dir()] or [STORE]
        describe, base = _find_baseline(args.baseline, roots)
        title += f" vs {describe}"
    opts = CompareOptions(by=args.by, metrics=tuple(args.metrics), alpha=args.alpha,
                          include_incomplete=args.include_incomplete)
    table = compare(sel, opts, baseline=base)
    _comparison_out(table, args.format, title, args.output, excluded_runs(sel, opts))
    extra = _outliers_text(sel) if args.format in ("table", "markdown") else ""
    if extra and args.output is not None:
        _emit(args.output.read_text() + "\n" + extra, args.output)
    elif extra:
        print("\n" + extra, end="")
    return 0


def _outliers_text(sel) -> str:
    """Slow GPUs and nodes of every run of >= 3 ranks (outliers.py), as Markdown; '' when none."""
    from aifbench.analysis import outliers

    summary, found = outliers.for_selection(sel.metrics, sel.results.tables["runs"])
    return outliers.to_text(summary, found)


def cmd_validate(args: argparse.Namespace) -> int:
    from aifbench.analysis import intervals, legacy, references, validate
    from aifbench.analysis.data import ANALYSIS_STATS, Selection, load_runs
    from aifbench.atomic import atomic_write_text
    from aifbench.cli.output import err_console
    from aifbench.results.store import resolve_run

    run_dir = resolve_run(args.results, args.run_id)
    system = args.system or _run_system(run_dir)
    if args.references:
        refs, gpu = references.load_file(args.references), None
    else:
        from aifbench.systems import load_system

        try:
            profile = load_system(system)  # parsed once, for the references and the GPU model
            refs, gpu = references.for_system(profile), references.profile_gpu(profile)
        except ConfigError as exc:
            hint = "" if args.system else f" (the run's system is {system!r}: give --system NAME or --references FILE)"
            raise ConfigError(f"{exc}{hint}") from None
    stats = ANALYSIS_STATS + tuple(r.stat for r in refs) + intervals.CI_STATS  # an A/B metric is judged on its interval
    run = load_runs([run_dir], stats=stats, full=False,  # the throttle details in the same pass
                    metrics=tuple(r.metric for r in refs), side=legacy.side_view())
    # no metrics row yet (stopped before its first case ended): INCOMPLETE when the plan is readable
    base = _find_baseline(args.baseline, [args.results]) if args.baseline else None
    opts = validate.ValidateOptions(flags=args.flags, min_deviation_pct=args.min_deviation, strict=args.strict)
    reasons = legacy.reasons_seen(run.side["metrics"]) if legacy.has_legacy_flags(run.tables["metrics"]) else None
    report = validate.validate(Selection(run), refs, opts, baseline=base, expected_gpu=gpu, system=system,
                               plan_file=run_dir / "plan.json", throttle_reasons=reasons)
    junit = validate.to_junit(report) if args.junit or args.format == "junit" else ""
    if args.junit:
        atomic_write_text(args.junit, junit)
    if args.format == "junit":
        _emit(junit, args.output)
    elif args.format in ("json", "csv"):
        _validate_rows(report, args.format, args.output)
    elif args.format == "markdown" or args.output is not None:
        _emit(validate.to_markdown(report), args.output)
    else:
        _validate_rows(report, "table", None)
    colour = {"FAIL": "bold red", "INCOMPLETE": "bold yellow", "INCONCLUSIVE": "bold yellow",
              "PASS": "bold green"}[report.verdict]
    verdict = f"[{colour}]{report.verdict}[/]"
    err_console.print(f"validate {report.run_id} on {system}: {verdict} ({report.summary()})", highlight=False)
    return report.exit_code


def _run_system(run_dir: Path) -> str:
    """The system a run was measured on, from its provenance (runs) or metrics rows."""
    from aifbench.results import layout, read
    from aifbench.results.store import load

    for table in ("runs", "metrics"):  # one file's rows say it (every rank runs on one system) ...
        first = sorted(run_dir.glob(f"{table}.*.parquet"))[:1]
        try:
            with read.snapshot(run_dir):
                t = read.read_table(layout.scan(run_dir, first), table, ["system"], bad=[]) if first else None
        except (OSError, ConfigError):
            t = None
        if t is not None and t.num_rows and t["system"][0].is_valid:
            return str(t["system"][0])
    for table in ("runs", "metrics"):  # ... else every file is read, and what is wrong with them named
        df = load([run_dir], tables=(table,), columns={table: ["system"]}).tables[table]
        if len(df):
            return str(df["system"].iloc[0])
    raise ConfigError(f"run {run_dir.name} has no metrics")


def _validate_rows(report, fmt: str, output: Path | None) -> None:
    """The checks as rows whose keys are the table's headers (check, status, detail, ...). JSON is
    one object: the verdict, its exit code and summary, and the checks; CSV the checks, each with
    the verdict; the table prints the verdict line below the checks."""
    from aifbench.cli.output import Col, emit, to_json, write_text

    rows = [{"run_id": report.run_id, "system": report.system, "kind": c.kind, "check": c.name,
             "status": c.status, "detail": c.message, "value": c.value, "unit": c.unit} for c in report.checks]
    verdict = {"run_id": report.run_id, "system": report.system, "verdict": report.verdict,
               "exit_code": report.exit_code, "summary": report.summary()}
    if fmt == "json":
        return write_text(to_json({**verdict, "checks": rows}), output)
    if fmt == "csv":
        rows = [{**r, "verdict": report.verdict} for r in rows]
    cols = [Col("status"), Col("check", kind="text"), Col("detail", kind="text")]
    emit(rows, cols, fmt, f"validate {report.run_id} ({report.system})", output=output)
    return None


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from aifbench.analysis import baseline
    from aifbench.cli.output import console

    info = baseline.save(args.results, args.run_id, args.name, note=args.note, force=args.force)
    console.print(f"baseline [bold]{info.name}[/] = run {info.run_id} ({info.system}, {info.device_name}, "
                  f"{info.ranks} rank(s)) saved under {baseline.root(args.results) / info.name}", highlight=False, soft_wrap=True)
    return 0


def cmd_baseline_list(args: argparse.Namespace) -> int:
    import dataclasses

    from aifbench.analysis import baseline
    from aifbench.cli.output import Col, console, emit

    items = baseline.list_baselines(args.results)
    if not items and args.format == "table":
        console.print(f"no baselines under {baseline.root(args.results)}; save one with "
                      "'aifbench baseline save RUN_ID --name NAME'", soft_wrap=True)
        return 0
    rows = [dataclasses.asdict(b) for b in items]
    cols = [Col("name"), Col("run_id", "run"), Col("system"), Col("partition"), Col("device_name", "device"),
            Col("ranks", kind="num"), Col("saved_utc", "saved (UTC)", show=lambda r: r["saved_utc"][:19]),
            Col("note", kind="text")]
    emit(rows, cols, args.format, "baselines")
    return 0


def cmd_baseline_check(args: argparse.Namespace) -> int:
    from aifbench.analysis.compare import CompareOptions, compare
    from aifbench.analysis.data import Selection, load_runs
    from aifbench.results.store import resolve_run

    describe, base = _find_baseline(args.name, [args.results])
    run_dir = resolve_run(args.results, args.run_id)
    run = load_runs([run_dir])
    if not len(run.tables["metrics"]):
        raise ConfigError(f"run {run_dir.name} has no metrics")
    opts = CompareOptions(by="system", alpha=args.alpha, include_incomplete=True)  # the run named, whatever its state
    table = compare(Selection(run), opts, baseline=base)
    _comparison_out(table, args.format, f"drift of {run_dir.name} vs {describe}", None, {})
    return 1 if (table["verdict"] == "worse").any() else 0


def cmd_report(args: argparse.Namespace) -> int:
    from aifbench.analysis import report
    from aifbench.cli.output import console

    args.paths = selected_results(args)
    extra = []
    if args.usage_cards:  # read before the runs: a wrong card id is refused before any work
        from aifbench.usage import card, render

        store = args.results_opt[0] if args.results_opt else STORE
        extra = [render.html_section(card.load(name, store)) for name in args.usage_cards]
    try:
        sel = _select(args)
    except ConfigError as exc:
        if not extra or not str(exc).startswith("no results found"):
            raise
        from aifbench.atomic import atomic_write_text
        from aifbench.usage import render

        atomic_write_text(args.output, render.html_document(extra, args.title))
        console.print(f"wrote {args.output} ({len(extra)} utilisation card(s); no benchmark runs: {exc})",
                      highlight=False, soft_wrap=True)
        return 0
    images = report.write(sel, args.output, title=args.title, include_incomplete=args.include_incomplete, extra=extra)
    console.print(f"wrote {args.output} ({images} plot(s), {len(sel.results.run_ids)} run(s))", highlight=False, soft_wrap=True)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from aifbench.analysis import exchange
    from aifbench.cli.output import console

    args.paths = selected_results(args)
    if args.output.exists() and not args.force:  # checked before any work; nothing is written
        what = "a directory" if args.output.is_dir() else "a file"
        raise ConfigError(f"-o {args.output}: {what} of that name exists; give a new name, or --force to replace a file")
    if args.output.is_dir():
        raise ConfigError(f"-o {args.output}: is a directory; give a file name (BUNDLE.parquet)")
    import logging

    from aifbench.analysis.data import selected_shards

    shards, ref_shards = selected_shards(args.paths, args.reference, args.reference_dir)
    if not shards and not ref_shards:
        raise ConfigError(f"no results found under {', '.join(map(str, args.paths or ['results']))}; "
                          "run 'aifbench run smoke' first")
    rows, runs, skipped = exchange.export_shards(sorted(set(shards) | set(ref_shards)), args.output)
    for path, why in skipped:
        logging.getLogger("aifbench.results.store").warning("skipping invalid shard %s: %s", path, why)
    counts = ", ".join(f"{n} {t}" for t, n in rows.items())
    console.print(f"wrote {args.output}: {len(runs)} run(s), {counts} rows", highlight=False, soft_wrap=True)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from aifbench.analysis import exchange
    from aifbench.cli.output import console

    if args.tool is not None:
        from aifbench.cli.importing import import_files

        return import_files(args.tool, args.bundle, args.results, args.system, args.partition)
    if args.system is not None or args.partition:
        raise ConfigError("--system and --partition apply to imported tool outputs: add --from TOOL (or --from auto)")
    if len(args.bundle) != 1:
        raise ConfigError(f"a bundle import takes one BUNDLE.parquet, got {len(args.bundle)} files; "
                          "for tool outputs add --from TOOL (or --from auto)")
    args.bundle = args.bundle[0]
    if not args.bundle.is_file():
        raise ConfigError(f"no such bundle: {args.bundle}")
    added = exchange.import_bundle(args.bundle, args.results)
    total = sum(added.values())
    counts = ", ".join(f"{n} {t}" for t, n in added.items())
    msg = f"imported {args.bundle} into {args.results}: {counts} new rows" if total else \
        f"{args.bundle}: nothing new (every row is already in {args.results})"
    console.print(msg, highlight=False, soft_wrap=True)
    return 0
