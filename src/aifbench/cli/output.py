"""Shared terminal output: consoles and the metrics summary table."""

from __future__ import annotations

import json
import math

import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

HEADLINE_STATS = ("median", "value", "p50", "p90", "p99", "total", "last")
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


def fmt_value(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    a = abs(value)
    if a != 0 and (a < 1e-3 or a >= 1e6):
        return f"{value:.3e}"
    return f"{value:.4g}"


def short_params(params_json: str, limit: int = 60) -> str:
    params = json.loads(params_json)
    text = " ".join(f"{k}={v}" for k, v in params.items() if k not in ("check_size",))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def metrics_table(df: pd.DataFrame, title: str, all_stats: bool = False, by_rank: bool = False) -> Table:
    """One line per case and headline metric (median of throughputs; time_s only with all_stats)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("case")
    table.add_column("benchmark")
    table.add_column("params", overflow="fold", ratio=2)
    table.add_column("metric" + (" / stat" if all_stats else ""))
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("% peak", justify="right")
    table.add_column("status", overflow="fold", ratio=1)
    rows = df if all_stats else df[(df["stat"].isin(HEADLINE_STATS) & (df["metric"] != "time_s")) | (df["status"] != "ok")]
    if not all_stats:  # a case whose only metric is time_s still shows it
        shown = set(rows["case_id"])
        rows = pd.concat([rows, df[~df["case_id"].isin(shown) & (df["stat"] == "median")]]).sort_index()
    if not by_rank and len(rows):
        rows = rows[rows["rank"] == rows["rank"].min()]
    for _, r in rows.iterrows():
        status = r["status"]
        note = status if status == "ok" else f"{status}: {r['reason']}"
        if isinstance(r.get("flags"), str) and r["flags"]:
            note += f" [{r['flags']}]"
        if r.get("noisy") is True or (not pd.isna(r.get("noisy")) and bool(r.get("noisy"))):
            note += " (noisy)"
        pct = r["pct_of_peak"]
        metric = r["metric"] + (f" {r['stat']}" if all_stats or r["stat"] != "median" else "")
        table.add_row(str(r["case_id"])[:4] + (f"/r{r['rank']}" if by_rank else ""), r["benchmark"],
                      short_params(r["params"]), metric, f"{fmt_value(r['value'])} {r['unit']}",
                      "-" if pd.isna(pct) else f"{pct:.1f}", f"[{STATUS_STYLE.get(status, '')}]{note}[/]")
    return table
