"""One self-contained static HTML report: plots as embedded base64 PNG, tables, provenance.

No external file, script, font or stylesheet: the file can be mailed, archived or opened
offline. Each plot of plots.PLOTS appears when its data exists; otherwise a note says which
metric would fill it. The Runs table shows every selected run with its suite and status; runs
that are not complete (running, interrupted, incomplete) are marked there and left out of the
plots and the comparison unless include_incomplete.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Sequence

import pandas as pd

from aifbench import __version__
from aifbench.analysis import runs as run_info
from aifbench.analysis.compare import CompareOptions, compare, complete_rows, drop_empty, excluded_runs, fmt
from aifbench.analysis.data import Selection, headline, per_distinct
from aifbench.analysis.plots import PLOTS, palette
from aifbench.atomic import atomic_write_text
from aifbench.errors import AifbenchError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

MAX_TABLE_ROWS = 300
REPORT_COLUMNS = ("group", "case", "metric", "median", "unit", "spread_pct", "pct_of_peak", "per_w", "verdict",
                  "n_runs", "n_ranks")
"""the figures-of-merit table's columns in the report: what fits a laptop screen"""
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 5px;text-align:left}
td{max-width:24em;overflow-wrap:anywhere}.wide{max-width:100%;overflow-x:auto}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #eee}.note{color:#666;font-size:.9em}.warn{color:#a40}
"""


def png_data_uri(fig: Figure) -> str:
    """Render a matplotlib Figure to a data: URI (PNG, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_frame(sel: Selection, opts: CompareOptions = CompareOptions()) -> pd.DataFrame:
    """Headline rows of the complete runs (all with opts.include_incomplete) with parsed params
    and the series name (system; reference runs marked)."""
    h = complete_rows(headline(sel.metrics), sel, opts)
    h["p"] = per_distinct(h["params"], json.loads)  # once per case, not per rank
    h["series"] = series_names(h, sel.reference_runs)
    h.attrs["palette"] = palette(h["series"])
    return h


def series_names(h: pd.DataFrame, reference_runs: set[str]) -> pd.Series:
    """A plot's legend names what ran: 'system · GPU model' ('local · NVIDIA H200', 'local · AMD EPYC
    ...' for a CPU run), '(reference)' for the committed reference runs."""
    device = h["device_name"] if "device_name" in h.columns else pd.Series("", index=h.index)
    ref = h["run_id"].isin(reference_runs).to_numpy(dtype=bool)
    def name(k: tuple[object, object, bool]) -> str:  # once per distinct (system, device, reference)
        s, d = str(k[0]), "" if pd.isna(k[1]) or str(k[1]) in ("nan", "None", "<NA>") else str(k[1])
        return (f"{s} · {d}" if d else s) + (" (reference)" if k[2] else "")
    return pd.Series(per_distinct([h["system"], device, pd.Series(ref, index=h.index)], name), index=h.index)


def _table(df: pd.DataFrame, numeric: AbstractSet[str] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for row in df.head(MAX_TABLE_ROWS).itertuples(index=False):
        cells = "".join(f'<td class="n">{html.escape(fmt(v))}</td>' if c in numeric
                        else f"<td>{html.escape(fmt(v))}</td>" for c, v in zip(df.columns, row))
        body.append(f"<tr>{cells}</tr>")
    more = (f'<p class="note">{len(df) - MAX_TABLE_ROWS} more rows not shown; use aifbench compare --format csv</p>'
            if len(df) > MAX_TABLE_ROWS else "")
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


def runs_table(sel: Selection, left_out: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per selected run: suite, status (and whether it is in the pooled figures)."""
    runs = sel.results.tables["runs"]
    m = sel.metrics
    src = runs if len(runs) else m
    info = run_info.summary(sel.results)
    status = dict(zip(info["run_id"], info["status"]))
    left_out = left_out or {}
    rows = []
    for run_id, part in src.groupby("run_id", sort=True):
        first = part.sort_values("rank").iloc[0]
        cases = m[m["run_id"] == run_id]
        state = status.get(run_id, "unknown (no runs row)")
        rows.append({"run": run_id, "suite": first.get("suite", ""), "status": state,
                     "pooled": "no: not complete" if run_id in left_out else "yes",
                     "system": first["system"], "partition": first.get("partition") or "",
                     "device": first["device_name"], "ranks": part["rank"].nunique(),
                     "nodes": part["node"].nunique(), "cases": cases["case_id"].nunique(),
                     "failed": cases[cases["status"] == "failed"]["case_id"].nunique(),
                     "started (UTC)": str(first["started_utc"])[:19],
                     "reference": run_id in sel.reference_runs})
    return pd.DataFrame(rows)


def rank_medians(h: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, case, metric), value and pct_of_peak the median over its ranks: what the
    bar, line and roofline plots show anyway, at a cost that does not grow with ranks."""
    keys = ["run_id", "case_id", "metric"]
    if not len(h) or h.groupby("run_id")["rank"].nunique().max() <= 1:
        return h
    first = h.drop_duplicates(keys).set_index(keys)
    med = h.groupby(keys)[["value", "pct_of_peak"]].median()
    first[["value", "pct_of_peak"]] = med.reindex(first.index)
    out = first.reset_index()
    out.attrs = h.attrs
    return out


def _plot_sections(h: pd.DataFrame) -> tuple[list[str], int]:
    out, images = [], 0
    per_case = rank_medians(h)
    for key, title, build in PLOTS:
        try:
            fig, note = build(h if key == "distribution" else per_case)
        except Exception as exc:  # a plot that cannot be drawn must not lose the rest of the report
            log.warning("plot %s failed: %s", key, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            fig, note = None, f"this plot could not be drawn: {type(exc).__name__}: {exc}"
        out.append(f'<h2 id="{key}">{html.escape(title)}</h2>')
        if fig is None:
            out.append(f'<p class="note">Not shown: {html.escape(note)}.</p>')
            continue
        out.append(f'<img src="{png_data_uri(fig)}" alt="{html.escape(title)}">')
        out.append(f'<p class="note">{html.escape(note)}</p>')
        images += 1
    return out, images


def render(sel: Selection, title: str = "aifbench report", include_incomplete: bool = False,
           extra: Sequence[str] = ()) -> tuple[str, int]:
    """(HTML text, number of plots drawn); `extra` are HTML sections appended at the end (usage cards)."""
    opts = CompareOptions(by="system", include_incomplete=include_incomplete)
    left_out = excluded_runs(sel, opts)
    try:
        h = plot_frame(sel, opts)
    except AifbenchError:  # every run incomplete: the Runs table still says so
        h = plot_frame(sel, CompareOptions(include_incomplete=True)).iloc[0:0]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">Generated {now} by aifbench {html.escape(__version__)} from '
             f"{len(sel.results.run_ids)} run(s). Values are medians of timed repeats; "
             "definitions: <code>aifbench schema --metrics</code>.</p>"]
    if sel.skipped:
        items = "".join(f"<li>{html.escape(str(p))}: {html.escape(why)}</li>" for p, why in sel.skipped)
        parts.append(f'<p class="warn">Skipped invalid shards:</p><ul class="warn">{items}</ul>')
    parts += ["<h2>Runs</h2>", _table(runs_table(sel, left_out), {"ranks", "nodes", "cases", "failed"})]
    if left_out:
        names = ", ".join(f"{r} ({s})" for r, s in sorted(left_out.items()))
        parts.append(f'<p class="warn">Not complete, left out of the plots and tables below: {html.escape(names)} '
                     "(aifbench report --include-incomplete pools them).</p>")
    sections, images = _plot_sections(h)
    parts += sections
    try:
        full = drop_empty(compare(sel, opts, rows=h))
        table = full[[c for c in REPORT_COLUMNS if c in full.columns]]
        numeric = {c for c in table.columns if c not in ("group", "case", "metric", "unit", "verdict")}
        parts += ["<h2>Figures of merit by system</h2>", _table(table, numeric),
                  f'<p class="note">{len(table.columns)} of {len(full.columns)} columns (the quartiles, per-GPU '
                  "and per-node figures, suites and statuses: <code>aifbench compare --format csv</code>).</p>"]
    except AifbenchError as exc:
        parts.append(f'<p class="note">No comparison table: {html.escape(str(exc))}</p>')
    parts += list(extra)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n", images


def write(sel: Selection, path: Path, title: str = "aifbench report", include_incomplete: bool = False,
          extra: Sequence[str] = ()) -> int:
    """Write the report atomically; returns the number of plots drawn."""
    text, images = render(sel, title, include_incomplete, extra)
    atomic_write_text(path, text)
    return images
