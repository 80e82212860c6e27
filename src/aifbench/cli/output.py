"""Shared terminal output: consoles, one table emitter for every format, the metrics summary.

Every command that prints a table builds a list of row dicts (ids and full parameters as fields)
and a list of `Col`s, and hands both to `emit()` with the `--format` the user chose:
table (rich), json (the rows, whole), csv (the rows, nested values as JSON text) or markdown.
Off a terminal a table is never truncated: its width comes from COLUMNS or is unlimited, identifier
columns are never wrapped or cut (a line grows instead), and only free-text columns wrap.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

FORMATS = ("table", "json", "csv", "markdown")
UNLIMITED = 100_000  # columns: "no limit" for rich, which needs a number


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`aifbench show | head`: leave the exit code to cli.main (0), not rich's SystemExit(1)."""
        self.quiet = True
        raise BrokenPipeError


def _make_console(stderr: bool) -> _Console:
    """A console whose width, off a terminal, is COLUMNS when set, else unlimited."""
    c = _Console(stderr=stderr)
    if not c.is_terminal and not os.environ.get("COLUMNS"):
        c = _Console(stderr=stderr, width=UNLIMITED)
    return c


console = _make_console(False)
err_console = _make_console(True)


def configure() -> None:
    """Fresh consoles for this invocation (the environment and the streams may have changed)."""
    global console, err_console
    console, err_console = _make_console(False), _make_console(True)


def is_tty() -> bool:
    """stderr is a terminal (live progress bars) rather than a log file or a pipe (plain lines)."""
    return err_console.is_terminal


# the statistics shown in the run summary (all percentiles of ITL, for instance); analysis picks
# one headline per metric from aifbench.analysis.data.HEADLINE_STATS instead
SUMMARY_STATS = ("median", "value", "p50", "p90", "p99")
STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "pass": "green", "fail": "bold red",
                "skip": "yellow", "interrupted": "bold red", "running": "yellow", "incomplete": "bold red"}
DIMENSIONLESS = ("", "1")


def fmt_value(value: float) -> str:
    """A value as analysis tables print it (4 significant digits, 1e-3..1e6 plain), '-' when empty."""
    from aifbench.analysis.compare import fmt

    return fmt(value) or "-"


def with_unit(value: float, unit: str) -> str:
    """'2.267' for a dimensionless unit ('1'), '12.5 TFLOP/s' otherwise."""
    text = fmt_value(value)
    return text if unit in DIMENSIONLESS or text == "-" else f"{text} {unit}"


# --- one emitter for every format -----------------------------------------------------------

@dataclass(frozen=True)
class Col:
    """A column of a printed table: `key` into the row dicts, its header and what it holds.

    kind: "id" (an identifier or short value: never wrapped, never cut), "text" (free text:
    the only kind that wraps), "num" (a number: right-aligned, 4 significant digits).
    """

    key: str
    header: str = ""
    kind: str = "id"
    show: Callable[[dict], str] | None = None
    """the table / markdown cell of a row (default: the formatted value of `key`)"""

    @property
    def title(self) -> str:
        return self.header or self.key

    def cell(self, row: dict) -> str:
        if self.show is not None:
            return self.show(row)
        return cell_text(row.get(self.key))


def cell_text(value: Any) -> str:
    """A value as a table cell: numbers to 4 significant digits, lists comma-joined, None empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple, set)):
        return ", ".join(cell_text(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    if isinstance(value, float):
        return fmt_value(value)
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN to None, timestamps to ISO text."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if value is pd.NaT:
        return None
    return value


def to_json(rows: Sequence[dict]) -> str:
    return json.dumps([_plain(r) for r in rows], indent=1, default=str)


def to_csv(rows: Sequence[dict]) -> str:
    flat = [{k: json.dumps(_plain(v), default=str) if isinstance(v, (dict, list, tuple)) else _plain(v)
             for k, v in r.items()} for r in rows]
    return pd.DataFrame(flat).to_csv(index=False)


def to_markdown(rows: Sequence[dict], cols: Sequence[Col], title: str = "") -> str:
    lines = [f"{title}", ""] if title else []
    lines += ["| " + " | ".join(c.title for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(c.cell(r).replace("|", "\\|").replace("\n", " ") for c in cols) + " |")
    return "\n".join(lines)


def rich_table(rows: Sequence[dict], cols: Sequence[Col], title: str = "",
               row_style: Callable[[dict], str] | None = None) -> Table:
    """A rich table whose identifier columns are as wide as their widest value (never cut)."""
    t = Table(header_style="bold")
    t.caption_title = title  # printed above the table by print_table: never padded or wrapped
    cells = [[c.cell(r) for c in cols] for r in rows]
    for i, c in enumerate(cols):
        widest = max([len(c.title)] + [max((len(x) for x in row[i].split("\n")), default=0) for row in cells])
        if c.kind == "text":
            t.add_column(c.title, overflow="fold", ratio=1, min_width=min(widest, 12))
        else:
            t.add_column(c.title, no_wrap=True, min_width=widest, justify="right" if c.kind == "num" else "left")
    for r, row in zip(rows, cells):
        styled = [f"[{STATUS_STYLE[x]}]{escape(x)}[/]" if x in STATUS_STYLE and c.key in ("status", "state")
                  else escape(x) for c, x in zip(cols, row)]
        t.add_row(*styled, style=row_style(r) if row_style else None)
    return t


def print_table(table: Table) -> None:
    """Print so that no identifier is cut: off a terminal, widen past COLUMNS when needed."""
    width = console.width
    if not console.is_terminal:
        width = max(width, console.measure(table).minimum)
    title = getattr(table, "caption_title", "")
    if title:
        console.print(title, style="bold", highlight=False, markup=False, soft_wrap=True)
    console.print(table, width=width)


PLAIN_TABLE_ROWS = 2000
"""above this many rows a table is printed as aligned plain text: rich measures every cell of
every row several times (tens of seconds for 10,000 rows), and no one reads that many in colour"""


def print_plain(rows: Sequence[dict], cols: Sequence[Col], title: str = "") -> None:
    """The rows as a plain text table: columns as wide as their widest value, nothing cut."""
    cells = [[c.cell(r).replace("\n", " ") for c in cols] for r in rows]
    widths = [max([len(c.title)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if c.kind == "num" else v.ljust(w)
                         for c, v, w in zip(cols, values, widths)).rstrip()

    out = ([title] if title else []) + [line([c.title for c in cols]), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    console.file.write("\n".join(out) + "\n")
    console.file.flush()


def emit(rows: Sequence[dict], cols: Sequence[Col], fmt: str, title: str = "", *,
         notes: Sequence[str] = (), output: Path | None = None,
         row_style: Callable[[dict], str] | None = None) -> None:
    """Print (or write to `output`) rows in the chosen format; notes follow a table, never JSON/CSV."""
    if fmt == "json":
        return write_text(to_json(rows), output)
    if fmt == "csv":
        return write_text(to_csv(rows) if rows else ",".join(c.key for c in cols) + "\n", output)
    if fmt == "markdown" or output is not None:
        return write_text(to_markdown(rows, cols, title) + "".join(f"\n\n{n}" for n in notes), output)
    if len(rows) > PLAIN_TABLE_ROWS:
        print_plain(rows, cols, title)
    else:
        print_table(rich_table(rows, cols, title, row_style))
    for note in notes:
        console.print(note, highlight=False, markup=False, soft_wrap=True)


def write_text(text: str, output: Path | None) -> None:
    """stdout, or `output` written atomically (with a 'wrote' line on stderr)."""
    from aifbench.atomic import atomic_write_text

    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    atomic_write_text(output, text if text.endswith("\n") else text + "\n")
    err_console.print(f"wrote {output}", highlight=False, markup=False, soft_wrap=True)


# --- the metrics summary of `run` and `show` -------------------------------------------------

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


def _flag(value: Any) -> bool:
    return value is not None and not pd.isna(value) and bool(value)


def metric_rows(df: pd.DataFrame, all_stats: bool = False, by_rank: bool = False) -> list[dict]:
    """The summary's rows: ids, full parameters and the figure, one per case, rank and metric."""
    out = []
    for _, r in _select(df, all_stats, by_rank).iterrows():
        pct = r.get("pct_of_peak")
        out.append({"run_id": r["run_id"], "case_id": r["case_id"], "rank": int(r["rank"]),
                    "benchmark": r["benchmark"], "params": json.loads(r["params"]), "metric": r["metric"],
                    "stat": r["stat"], "value": None if pd.isna(r["value"]) else float(r["value"]),
                    "unit": r["unit"], "pct_of_peak": None if pct is None or pd.isna(pct) else float(pct),
                    "status": r["status"], "reason": r["reason"] or "",
                    "flags": r["flags"] if isinstance(r.get("flags"), str) else "",
                    "noisy": _flag(r.get("noisy"))})
    return out


def print_metrics(df: pd.DataFrame, title: str, all_stats: bool = False, by_rank: bool = False,
                  fmt: str = "table") -> None:
    """One line per case and headline metric (noisy figures marked beside the value), then the
    numbered reasons below the table; json/csv/markdown print the same rows with full fields."""
    rows = metric_rows(df, all_stats, by_rank)
    keys = varying_keys(df) if len(df) else {}
    notes: dict[str, int] = {}
    for r in rows:
        r["_number"] = notes.setdefault(r["reason"], len(notes) + 1) if r["status"] != "ok" else None

    def figure(r: dict) -> str:
        text = with_unit(r["value"], r["unit"]) if r["value"] is not None else "-"
        return text + (" (noisy)" if r["noisy"] else "")

    def note(r: dict) -> str:
        return " ".join(x for x in (f"[{r['_number']}]" if r["_number"] else "", r["flags"]) if x)

    cols = [Col("case_id", "case"), *([Col("rank")] if by_rank else []), Col("benchmark"),
            Col("params", kind="text", show=lambda r: short_params(r["params"], None if all_stats else keys.get(r["benchmark"]))),
            Col("metric", show=lambda r: r["metric"] + (f" {r['stat']}" if all_stats or r["stat"] != "median" else "")),
            Col("value", kind="num", show=figure),
            Col("pct_of_peak", "% peak", kind="num", show=lambda r: "-" if r["pct_of_peak"] is None else f"{r['pct_of_peak']:.1f}"),
            Col("status"), Col("note", show=note)]
    reasons = [f"  [{n}] {reason}" for reason, n in notes.items()]
    if fmt in ("json", "csv"):  # the reason is a field of every row; no note numbers
        rows = [{k: v for k, v in r.items() if k != "_number"} for r in rows]
    emit(rows, cols, fmt, title, notes=reasons)


def print_rank_spread(df: pd.DataFrame, ranks: int, worst: int = 3) -> None:
    """Per case and figure of merit, the distribution over ranks (median, p5, min, max) and the
    `worst` ranks by name: one line per case and metric, whatever the number of ranks."""
    from aifbench.analysis.data import case_label, headline
    from aifbench.metrics import is_merit

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
