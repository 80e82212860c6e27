"""`aifbench telemetry RUN_ID`: per-window telemetry summary and a PNG of power, clocks, temperature."""

from __future__ import annotations

import argparse
from pathlib import Path

from aifbench.cli.args import add_format_option, add_results_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("telemetry", help="a run's telemetry: summary table and a plot over time",
                       description="Summarise a run's telemetry per case and plot power, clocks, "
                                   "temperature, CPU utilisation and memory over time (PNG). A run "
                                   "with none of these series gets the summary and a note; with -o, "
                                   "exit 2.")
    p.add_argument("run_id", nargs="?", help="run id or a unique prefix (default: latest)")
    add_results_option(p)
    p.add_argument("-o", "--output", type=Path, default=None, metavar="PLOT.png",
                   help="where to write the plot (default: telemetry.png in the run's directory)")
    p.add_argument("--no-plot", action="store_true", help="only the summary table")
    add_format_option(p)
    p.set_defaults(func=cmd_telemetry)


def cmd_telemetry(args: argparse.Namespace) -> int:
    from aifbench.cli.output import err_console
    from aifbench.errors import ConfigError
    from aifbench.results.store import load, resolve_run
    from aifbench.telemetry import report

    if args.output is not None and args.output.suffix.lower() != ".png":
        raise ConfigError(f"-o {args.output}: the plot is a PNG; give a path ending in .png")
    run_dir = resolve_run(args.results, args.run_id)
    results = load([run_dir])
    metrics, telemetry, runs = results.metrics, results.telemetry, results.runs
    sources = sorted(set(runs["telemetry"].dropna())) if len(runs) else []
    for text in sources:
        err_console.print(f"telemetry: {text}", markup=False, highlight=False, soft_wrap=not err_console.is_terminal)
    if not len(metrics):
        raise ConfigError(f"run {run_dir.name} has no metrics")
    if not len(telemetry):
        why = "; ".join(sources) or "no telemetry recorded"
        raise ConfigError(f"run {run_dir.name} has no telemetry rows ({why})")
    _table(report.summary(metrics, telemetry), run_dir.name, args.format)
    if not args.no_plot:
        out = args.output or run_dir / "telemetry.png"  # beside the run's shards, never the working directory
        try:
            report.plot(metrics, telemetry, out, f"aifbench telemetry: {run_dir.name}")
        except report.NothingToPlot as exc:
            if args.output is not None:  # a plot was asked for by name: it cannot be made
                raise
            err_console.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            return 0
        err_console.print(f"plot: {out}", markup=False, highlight=False, soft_wrap=True)
    return 0


def _table(df, run_id: str, fmt: str) -> None:
    import math

    from aifbench.cli.output import Col, emit, fmt_value, split_flags

    cols = [("case", "case_id"), ("benchmark", "benchmark"), ("window", "window"), ("rank", "rank"),
            ("gpu", "gpu_index"), ("gpus", "gpus"),
            ("samples", "samples"), ("window s", "window_s"), ("energy J", "energy_j"),
            ("power mean W", "power_mean_w"), ("peak W", "power_peak_w"), ("module W", "module_power_mean_w"),
            ("SM MHz", "sm_clock_mean_mhz"), ("max C", "temperature_max_c"), ("throttle %", "throttle_pct"),
            ("capped %", "power_capped_pct"), ("limit W", "power_limit_w"), ("CPU %", "process_cpu_util_mean_pct")]
    cols = [(h, c) for h, c in cols if c in df.columns and df[c].notna().any()]
    cols = [(h, c) for h, c in cols if c != "gpus" or (df[c] > 1).any()]  # only when a rank sampled several
    rows = []
    for _, r in df.iterrows():
        detail = r.get("energy_detail")
        method = " ".join(p for p in str(detail).split() if p.startswith(("method=", "scope="))) if isinstance(detail, str) else ""
        flags, notes = split_flags(r["flags"])  # notes (telemetry_insufficient) never as flags
        row = {"run_id": run_id, **{c: r[c] for _, c in cols}, "energy_method": method,
               "flags": ",".join(flags), "notes": ",".join(notes)}
        rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    ids = ("case_id", "benchmark", "window")
    shown = [Col(c, kind="id" if c in ids else "num",  # headers are the JSON field names
                 show=None if c in ids else (lambda r, c=c: _cell(r[c], fmt_value)))
             for _, c in cols]
    emit(rows, [*shown, Col("energy_method"), Col("flags", kind="text"), Col("notes", kind="text")], fmt,
         f"telemetry of {run_id}", group=("case_id", "benchmark"))


def _cell(value, fmt) -> str:
    import pandas as pd

    if value is None or pd.isna(value):
        return "-"
    return fmt(float(value))
