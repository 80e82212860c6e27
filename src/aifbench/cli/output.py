"""Shared terminal output: consoles and the metrics summary table."""

from __future__ import annotations

import json

import pandas as pd
from rich.console import Console
from rich.table import Table


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`aifbench show | head`: leave the exit code to cli.main (0), not rich's SystemExit(1)."""
        self.quiet = True
        raise BrokenPipeError


console = _Console()
err_console = _Console(stderr=True)

# the statistics shown in the run summary (all percentiles of ITL, for instance); analysis picks
# one headline per metric from aifbench.analysis.data.HEADLINE_STATS instead
SUMMARY_STATS = ("median", "value", "p50", "p90", "p99")
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


def fmt_value(value: float) -> str:
    """A value as analysis tables print it (4 significant digits, 1e-3..1e6 plain), '-' when empty."""
    from aifbench.analysis.compare import fmt

    return fmt(value) or "-"


def short_params(params: dict, keys: list[str] | None = None) -> str:
    """'k=v k=v' of the given keys (all when None), without internal knobs."""
    return " ".join(f"{k}={v}" for k, v in params.items()
                    if (keys is None or k in keys) and k != "check_size" and v is not None)


def varying_keys(df: pd.DataFrame) -> dict[str, list[str] | None]:
    """Per benchmark, the parameters that differ between its cases (None: show all)."""
    out: dict[str, list[str] | None] = {}
    for bench, group in df.groupby("benchmark"):
        params = [json.loads(p) for p in group["params"].unique()]
        keys = [k for k in params[0] if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
        out[bench] = keys or None
    return out


def _select(df: pd.DataFrame, all_stats: bool, by_rank: bool) -> pd.DataFrame:
    rows = df if all_stats else df[(df["stat"].isin(SUMMARY_STATS) & (df["metric"] != "time_s")) | (df["status"] != "ok")]
    if not all_stats:  # a case whose only metric is time_s still shows it
        shown = set(rows["case_id"])
        rows = pd.concat([rows, df[~df["case_id"].isin(shown) & (df["stat"] == "median")]]).sort_index()
    if not by_rank and len(rows):
        rows = rows[rows["rank"] == rows["rank"].min()]
    return rows


def print_metrics(df: pd.DataFrame, title: str, all_stats: bool = False, by_rank: bool = False) -> None:
    """A table with one line per case and headline metric, then the numbered reasons below it."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, kw in (("case", {}), ("benchmark", {}), ("params", {"overflow": "fold", "ratio": 2}),
                     ("metric", {}), ("value", {"justify": "right", "no_wrap": True}),
                     ("% peak", {"justify": "right"}), ("status", {})):
        table.add_column(name, **kw)
    notes: dict[str, int] = {}
    keys = varying_keys(df) if len(df) else {}
    for _, r in _select(df, all_stats, by_rank).iterrows():
        status = r["status"]
        note = f"[{STATUS_STYLE.get(status, '')}]{status}[/]"
        if status != "ok":
            note += f" [{notes.setdefault(r['reason'], len(notes) + 1)}]"
        if isinstance(r.get("flags"), str) and r["flags"]:
            note += f" [magenta]{r['flags']}[/]"
        if not pd.isna(r.get("noisy")) and bool(r.get("noisy")):
            note += " noisy"
        pct = r["pct_of_peak"]
        metric = r["metric"] + (f" {r['stat']}" if all_stats or r["stat"] != "median" else "")
        table.add_row(str(r["case_id"])[:4] + (f"/r{r['rank']}" if by_rank else ""), r["benchmark"],
                      short_params(json.loads(r["params"]), None if all_stats else keys.get(r["benchmark"])),
                      metric, f"{fmt_value(r['value'])} {r['unit']}",
                      "-" if pd.isna(pct) else f"{pct:.1f}", note)
    console.print(table)
    for reason, number in notes.items():
        console.print(f"  [{number}] {reason}", highlight=False, soft_wrap=True)


def print_rank_spread(df: pd.DataFrame, ranks: int, worst: int = 3) -> None:
    """Per case and figure of merit, the distribution over ranks (median, p5, min, max) and the
    `worst` ranks by name: one line per case and metric, whatever the number of ranks."""
    from aifbench.analysis.compare import is_merit
    from aifbench.analysis.data import case_label, headline

    h = headline(df)
    h = h[h["metric"].map(is_merit)]
    table = Table(title=f"distribution over {ranks} ranks (headline value of each rank)", title_justify="left",
                  header_style="bold")
    for name in ("case", "metric", "median", "p5", "min", "max", "ranks", f"worst {worst}"):
        table.add_column(name, justify="left" if name in ("case", "metric", f"worst {worst}") else "right",
                         overflow="fold")
    for (case_id, metric), part in h.groupby(["case_id", "metric"], sort=True):
        from aifbench.analysis.outliers import higher_is_better

        x = part["value"].astype(float)
        order = x.sort_values(ascending=higher_is_better(str(metric))).index[:worst]
        names = ", ".join(f"r{part.at[i, 'rank']} {part.at[i, 'node']} {fmt_value(x[i])}" for i in order)
        table.add_row(case_label(part["benchmark"].iloc[0], part["params"].iloc[0], 50), str(metric),
                      fmt_value(x.median()), fmt_value(x.quantile(0.05)), fmt_value(x.min()), fmt_value(x.max()),
                      str(len(part)), names)
    console.print(table)
    console.print("slow GPUs and nodes, by a stated rule: aifbench validate", style="dim")
