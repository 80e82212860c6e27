"""`aifbench telemetry RUN_ID`: per-window telemetry summary and a PNG of power, clocks, temperature."""

from __future__ import annotations

import argparse
from pathlib import Path

from aifbench.cli.args import add_results_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("telemetry", help="a run's telemetry: summary table and a plot over time",
                       description="Summarise a run's telemetry per case and plot power, clocks and "
                                   "temperature over time (PNG).")
    p.add_argument("run_id", nargs="?", help="run id or a unique prefix (default: latest)")
    add_results_option(p)
    p.add_argument("-o", "--output", type=Path, default=None, metavar="PLOT.png",
                   help="where to write the plot (default: telemetry-<run_id>.png)")
    p.add_argument("--no-plot", action="store_true", help="only the summary table")
    p.set_defaults(func=cmd_telemetry)


def cmd_telemetry(args: argparse.Namespace) -> int:
    from aifbench.cli.output import console
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
        console.print(f"telemetry: {text}")
    if not len(metrics):
        raise ConfigError(f"run {run_dir.name} has no metrics")
    if not len(telemetry):
        why = "; ".join(sources) or "no telemetry recorded"
        raise ConfigError(f"run {run_dir.name} has no telemetry rows ({why})")
    console.print(_table(report.summary(metrics, telemetry), run_dir.name))
    if not args.no_plot:
        out = args.output or Path(f"telemetry-{run_dir.name}.png")
        report.plot(metrics, telemetry, out, f"aifbench telemetry: {run_dir.name}")
        console.print(f"plot: {out}")
    return 0


def _table(df, run_id: str):
    from rich.table import Table

    from aifbench.cli.output import fmt_value

    cols = [("case", "case_id"), ("benchmark", "benchmark"), ("window", "window"), ("rank", "rank"), ("gpu", "gpu_index"), ("gpus", "gpus"),
            ("samples", "samples"), ("window s", "window_s"), ("energy J", "energy_j"),
            ("power mean W", "power_mean_w"), ("peak W", "power_peak_w"), ("module W", "module_power_mean_w"),
            ("SM MHz", "sm_clock_mean_mhz"), ("max C", "temperature_max_c"), ("throttle %", "throttle_pct"),
            ("CPU %", "process_cpu_util_mean_pct")]
    cols = [(h, c) for h, c in cols if c in df.columns and df[c].notna().any()]
    cols = [(h, c) for h, c in cols if c != "gpus" or (df[c] > 1).any()]  # only when a rank sampled several
    t = Table(title=f"telemetry of {run_id}", title_justify="left", header_style="bold")
    for h, c in cols:
        t.add_column(h, justify="left" if c in ("case_id", "benchmark", "window") else "right")
    t.add_column("energy method")
    t.add_column("flags", style="yellow")
    for _, r in df.iterrows():
        cells = [str(r[c])[:28] if c == "case_id" else (str(r[c]) if c in ("benchmark", "window") else _cell(r[c], fmt_value))
                 for _, c in cols]
        detail = r.get("energy_detail")
        method = " ".join(p for p in str(detail).split() if p.startswith(("method=", "scope="))) if isinstance(detail, str) else "-"
        t.add_row(*cells, method, r["flags"] if isinstance(r["flags"], str) and r["flags"] else "")
    return t


def _cell(value, fmt) -> str:
    import pandas as pd

    if value is None or pd.isna(value):
        return "-"
    return fmt(float(value))
