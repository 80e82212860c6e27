"""Shared terminal output: consoles, one table emitter for every format, the metrics summary.

Every command that prints a table builds a list of row dicts (ids and full parameters as fields)
and a list of `Col`s, and hands both to `emit()` with the `--format` the user chose:
table (rich), json (the rows, whole), csv (the rows, nested values as JSON text) or markdown.
On a terminal a table fits its width: free-text columns (parameters, notes) wrap; when the
identifiers, values, units and status alone are wider than the terminal, the rows are grouped under
their leading identifiers, and failing that printed as one block per row; nothing is ever dropped or
cut. Off a terminal (pipes, logs) a table is printed at its natural width whatever COLUMNS says:
nothing wraps and nothing is cut.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.markup import escape
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "json", "csv", "markdown")
UNLIMITED = 100_000  # columns: "no limit" for rich, which needs a number


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`aifbench show | head`: leave the exit code to cli.main (0), not rich's SystemExit(1)."""
        self.quiet = True
        raise BrokenPipeError


def _make_console(stderr: bool) -> _Console:
    """A console as wide as the terminal; off a terminal unlimited (COLUMNS does not cut a log)."""
    c = _Console(stderr=stderr)
    if not c.is_terminal:
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
    the only kind that wraps), "num" (a number: right-aligned, 4 significant digits), "value"
    (a number with its unit, right-aligned, never cut; a trailing "(marker)" may go below it).
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


def to_json(rows: Sequence[dict] | dict) -> str:
    """A list of rows (or one object) as indented JSON, numpy and NaN made plain."""
    body = _plain(rows) if isinstance(rows, dict) else [_plain(r) for r in rows]
    return json.dumps(body, indent=1, default=str)


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


def _widest(texts: Sequence[str]) -> int:
    return max((len(line) for t in texts for line in t.split("\n")), default=0)


def rich_table(rows: Sequence[dict], cols: Sequence[Col], title: str = "",
               row_style: Callable[[dict], str] | None = None, *, box_style: box.Box | None = box.HEAVY_HEAD,
               widths: dict[str, int] | None = None, header: bool = True) -> Table:
    """A rich table whose identifier columns are as wide as their widest value (never cut);
    `widths` fixes columns' widths (so that the tables of a grouped layout align)."""
    t = Table(header_style="bold", box=box_style, show_header=header, show_edge=box_style is not None,
              pad_edge=box_style is not None)
    t.caption_title = title  # printed above the table by print_table: never padded or wrapped
    cells = [[c.cell(r) for c in cols] for r in rows]
    for i, c in enumerate(cols):
        widest = (widths or {}).get(c.key) or _col_width(c, [row[i] for row in cells])
        if c.kind == "text":  # wraps between words; a word (a metric name, a path) is never split
            word = max((len(w) for row in cells for w in row[i].split()), default=0)
            t.add_column(c.title, overflow="fold", ratio=1, min_width=max(min(widest, 12), word))
        elif c.kind == "value":
            t.add_column(c.title, overflow="fold", min_width=widest, justify="right",
                         max_width=widest if widths else None)
        else:
            t.add_column(c.title, no_wrap=True, min_width=widest, justify="right" if c.kind == "num" else "left")
    for r, row in zip(rows, cells):
        t.add_row(*[_styled(c, x) for c, x in zip(cols, row)], style=row_style(r) if row_style else None)
    return t


def _col_width(col: Col, texts: Sequence[str]) -> int:
    """The narrowest a column may get: its widest cell (a value's "(marker)" may go below it)."""
    if col.kind == "value":
        texts = [t.split(" (")[0] for t in texts]
    return max(len(col.title), _widest(texts))


def _styled(col: Col, text: str) -> str:
    if text in STATUS_STYLE and col.key in ("status", "state"):
        return f"[{STATUS_STYLE[text]}]{escape(text)}[/]"
    return escape(text)


def _fits(table: Any, width: int) -> bool:
    """The table's narrowest rendering (free text folded, nothing else) is at most `width`."""
    return console.measure(table, options=console.options.update_width(UNLIMITED)).minimum <= width


def print_table(table: Table) -> None:
    """Print so that nothing is cut: on a terminal at its width (free text wraps), off a terminal
    at the table's natural width (nothing wraps)."""
    title = getattr(table, "caption_title", "")
    if title:
        console.print(title, style="bold", highlight=False, markup=False, soft_wrap=True)
    if console.is_terminal:
        console.print(table)
    else:
        console.print(table, width=console.measure(table).maximum, crop=False)


def print_rows(rows: Sequence[dict], cols: Sequence[Col], title: str = "",
               row_style: Callable[[dict], str] | None = None, group: Sequence[str] = ()) -> None:
    """A table that fits the terminal without losing an identifier, value, unit or status:
    flat if it fits; else the rows grouped under their `group` columns (a heading line per group,
    its free text wrapped); else one block per row ("header: value" lines)."""
    flat = rich_table(rows, cols, title, row_style)
    width = console.width
    if not console.is_terminal or not rows or _fits(flat, width):
        return print_table(flat)
    light = rich_table(rows, cols, title, row_style, box_style=box.SIMPLE_HEAD)
    if _fits(light, width):
        return print_table(light)
    if title:
        console.print(title, style="bold", highlight=False, markup=False, soft_wrap=True)
    heads = [c for c in cols if c.key in group]
    rest = [c for c in cols if c.key not in group]
    widths = {c.key: _col_width(c, [c.cell(r) for r in rows]) for c in rest if c.kind != "text"}
    if heads and rest:
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault(tuple(c.cell(r) for c in heads), []).append(r)
        tables = [(key, rich_table(part, rest, "", row_style, box_style=None, widths=widths, header=i == 0))
                  for i, (key, part) in enumerate(groups.items())]
        if all(_fits(Padding(t, (0, 0, 0, 2), expand=False), width) for _, t in tables):
            for key, t in tables:
                _heading([(c, x) for c, x in zip(heads, key)], width)
                console.print(Padding(t, (0, 0, 0, 2), expand=False))
            return None
    for r in rows:  # one block per row: the first column as its heading, then "header: value"
        _heading([(cols[0], cols[0].cell(r))], width)
        for c in cols[1:]:
            text = c.cell(r)
            if text:
                line = Text("  ")
                line.append(f"{c.title}: ", style="bold")
                line.append_text(Text.from_markup(_styled(c, text)))
                console.print(line, overflow="fold" if c.kind == "text" else "ignore", crop=c.kind == "text",
                              no_wrap=c.kind != "text", highlight=False)
    return None


def _heading(parts: Sequence[tuple[Col, str]], width: int) -> None:
    """A group's heading: identifiers whole (bold), free text wrapped to the terminal."""
    line = Text()
    for c, text in parts:
        if text:
            line.append(("  " if line else "") + text, style="bold" if c.kind != "text" else "")
    console.print(line, highlight=False, overflow="fold")


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
         row_style: Callable[[dict], str] | None = None, group: Sequence[str] = ()) -> None:
    """Print (or write to `output`) rows in the chosen format; notes follow a table, never JSON/CSV.
    `group`: the leading identifier columns a narrow terminal shows as a heading above their rows."""
    if fmt == "json":
        return write_text(to_json(rows), output)
    if fmt == "csv":
        return write_text(to_csv(rows) if rows else ",".join(c.key for c in cols) + "\n", output)
    if fmt == "markdown" or output is not None:
        return write_text(to_markdown(rows, cols, title) + "".join(f"\n\n{n}" for n in notes), output)
    if len(rows) > PLAIN_TABLE_ROWS:
        print_plain(rows, cols, title)
    else:
        print_rows(rows, cols, title, row_style, group)
    for note in notes:
        console.print(note, highlight=False, markup=False, soft_wrap=not console.is_terminal)


def write_text(text: str, output: Path | None) -> None:
    """stdout, or `output` written atomically (with a 'wrote' line on stderr)."""
    from aifbench.atomic import atomic_write_text

    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    atomic_write_text(output, text if text.endswith("\n") else text + "\n")
    err_console.print(f"wrote {output}", highlight=False, markup=False, soft_wrap=True)


# --- the metrics summary of `run` and `show` -------------------------------------------------

def short_params(benchmark: str, params: dict) -> str:
    """A case's parameters as every table names them (aifbench.analysis.data.param_text)."""
    from aifbench.analysis.data import param_text

    return param_text(benchmark, params)


def _select(df: pd.DataFrame, all_stats: bool, by_rank: bool) -> pd.DataFrame:
    """--all: every row. Default: the figures of merit (metrics.is_merit) at their summary
    statistics, every row that did not end ok, and for a case without a figure of merit its
    first summary row (a case whose only metric is time_s still shows it)."""
    from aifbench.metrics import is_merit

    if all_stats:
        rows = df
    else:
        summary = df["stat"].isin(SUMMARY_STATS)
        merit = df["metric"].astype(str).map(is_merit).astype(bool)
        rows = df[(summary & merit) | (df["status"] != "ok")]
        shown = set(rows["case_id"])
        rest = df[~df["case_id"].isin(shown) & summary & (df["metric"] != "telemetry_window_s")]
        rows = pd.concat([rows, rest.drop_duplicates(["case_id", "rank"])]).sort_index()
    if not by_rank and len(rows):
        rows = rows[rows["rank"] == rows["rank"].min()]
    return rows


def _flag(value: Any) -> bool:
    return value is not None and not pd.isna(value) and bool(value)


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def split_flags(flags: Any) -> tuple[list[str], list[str]]:
    """A stored flags cell -> (invalidating flags, notes): notes (telemetry.fields.NOTE_FLAGS,
    e.g. telemetry_insufficient) never judge a figure, so they are never reported as flags."""
    from aifbench.telemetry.fields import NOTE_FLAGS

    names = [f for f in _text(flags).split(",") if f]
    return [f for f in names if f not in NOTE_FLAGS], [f for f in names if f in NOTE_FLAGS]


def metric_rows(df: pd.DataFrame, all_stats: bool = False, by_rank: bool = False) -> list[dict]:
    """The summary's rows: ids, full parameters and the figure, one per case, rank and metric;
    their keys are the table's headers (json/csv carry every field, the table shows the headline)."""
    from aifbench.metrics import current_units

    out = []
    for _, r in current_units(_select(df, all_stats, by_rank)).iterrows():
        flags, notes = split_flags(r.get("flags"))
        row = {"run_id": r["run_id"], "case_id": r["case_id"], "rank": int(r["rank"]),
               "benchmark": r["benchmark"], "params": json.loads(r["params"]), "metric": r["metric"],
               "stat": r["stat"], "value": _num(r["value"]), "unit": r["unit"],
               "pct_of_peak": _num(r.get("pct_of_peak")), "status": r["status"], "reason": _text(r["reason"]),
               "flags": flags, "notes": notes, "noisy": _flag(r.get("noisy"))}
        for extra, conv in (("n_samples", _num), ("peak", _num), ("peak_source", _text), ("detail", _text),
                            ("node", _text), ("device", _text)):
            if extra in r.index:
                row[extra] = conv(r[extra])
        if row.get("n_samples") is not None:
            row["n_samples"] = int(row["n_samples"])
        out.append(row)
    return out


def print_metrics(df: pd.DataFrame, title: str, all_stats: bool = False, by_rank: bool = False,
                  fmt: str = "table") -> None:
    """One line per case and figure of merit (noisy figures marked beside the value), then the
    numbered reasons below the table; --all adds every statistic, the diagnostics and the notes.
    json/csv/markdown print the same rows with full fields."""
    rows = metric_rows(df, all_stats, by_rank)
    reasons: dict[str, int] = {}
    numbers = [reasons.setdefault(r["reason"], len(reasons) + 1) if r["status"] != "ok" and r["reason"] else None
               for r in rows]

    def figure(r: dict) -> str:
        text = with_unit(r["value"], r["unit"]) if r["value"] is not None else "-"
        return text + (" (noisy)" if r["noisy"] else "")

    number = {id(r): n for r, n in zip(rows, numbers)}
    cols = [Col("case_id"), *([Col("rank", kind="num")] if by_rank else []), Col("benchmark"),
            Col("params", kind="text", show=lambda r: short_params(r["benchmark"], r["params"])),
            Col("metric", show=lambda r: r["metric"] + ("" if r["stat"] in ("median", "value") else f" {r['stat']}")),
            Col("value", kind="value", show=figure),
            Col("pct_of_peak", kind="num", show=lambda r: "-" if r["pct_of_peak"] is None else f"{r['pct_of_peak']:.1f}"),
            Col("status"), Col("reason", show=lambda r: f"[{number[id(r)]}]" if number[id(r)] else ""),
            Col("flags", show=lambda r: ",".join(r["flags"])),
            *([Col("notes", kind="text", show=lambda r: ",".join(r["notes"]))] if all_stats else [])]
    if not any(r["flags"] for r in rows):
        cols = [c for c in cols if c.key != "flags"]
    if not any(number.values()):
        cols = [c for c in cols if c.key != "reason"]
    notes = [f"  [{n}] {reason}" for reason, n in reasons.items()]
    hidden = "" if all_stats else _hidden(df, rows)
    emit(rows, cols, fmt, title, notes=notes + ([hidden] if hidden else []),
         group=("case_id", "rank", "benchmark", "params"))


def _hidden(df: pd.DataFrame, rows: list[dict]) -> str:
    """What the default summary leaves out, and how to see it."""
    shown = {(r["case_id"], r["rank"], r["metric"], r["stat"]) for r in rows}
    n = sum(1 for k in zip(df["case_id"], df["rank"], df["metric"], df["stat"]) if k not in shown
            and k[3] in SUMMARY_STATS)
    return f"{n} diagnostic figure(s) and notes not shown: --all shows every statistic, diagnostic and note" if n else ""


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
