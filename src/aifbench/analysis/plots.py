"""The report's plots: each builder takes headline rows and returns a Figure, or None and why.

Builders name no metric: each draws the metrics whose `plots` trait (aifbench.metrics) names
it, a panel (or line) each, with the words of their `label` trait and the unit of their
definition. A plot appears when one of its metrics is in the selection, so a plug-in benchmark
that emits the same metric, or a new metric defined with the trait, shows up too. Every point is
the median over ranks and runs of one (series, case); series are systems (reference runs marked).
Figures are matplotlib `Figure` objects rendered with the Agg canvas: no pyplot global state.
A system keeps its colour in every plot: `h.attrs["palette"]` (set by palette()) maps series
to colours.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from aifbench import metrics as metric_dict
from aifbench.analysis.data import param_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SIZE_KEYS = ("size_bytes", "message_bytes", "bytes", "size")
OP_KEYS = ("op", "collective")
SHAPE_KEYS = ("model", "shape")
BATCH_KEYS = ("batch_size", "batch")
MAX_CATEGORIES = 12
MAX_ENERGY_CASES = 40
HBAR_WRAP = 56

Builder = Callable[[pd.DataFrame], "tuple[Figure | None, str]"]


def palette(series: Iterable[object]) -> dict[str, str]:
    """One colour per series (matplotlib's tab10 / tab20 cycle), stable for a sorted set."""
    values = series if isinstance(series, pd.Series) else pd.Series(list(series), dtype=object)
    names = sorted({str(x) for x in pd.unique(values)})  # once per distinct name, not per row
    cmap = "tab10" if len(names) <= 10 else "tab20"
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    colors = np.asarray(cast(ListedColormap, colormaps[cmap]).colors, dtype=float)  # tab10 / tab20: listed
    return {n: "#%02x%02x%02x" % tuple(int(255 * c) for c in colors[i % len(colors)][:3]) for i, n in enumerate(names)}


def _param(params: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in params:
            return params[k]
    return None


def plotted(plot: str) -> tuple[str, ...]:
    """The metrics whose `plots` trait names this plot, in definition order."""
    return tuple(d.name for d in metric_dict.METRICS.values() if plot in d.plots)


def words(metric: str) -> str:
    """The metric's plain words (its `label` trait; an unknown name with spaces for underscores)."""
    d = metric_dict.METRICS.get(metric)
    return d.label if d is not None else metric.replace("_", " ")


def axis_label(metric: str, qualifier: str = "") -> str:
    """'GEMM energy efficiency (TFLOP/s/W)': readable words (and `qualifier`, e.g. ', best shape')
    and the metric dictionary's unit."""
    unit = metric_dict.METRICS[metric].unit if metric in metric_dict.METRICS else ""
    text = words(metric) + qualifier
    return f"{text} ({unit})" if unit and unit not in ("1", "") else text


def _title(metric: str, tail: str) -> str:
    """'Memory bandwidth vs size': the metric's words, capitalised, and what the panel shows them by."""
    w = words(metric)
    return f"{w[:1].upper()}{w[1:]} {tail}"


def _any(plot: str) -> str:
    """'metric gbps' / 'metrics a, b': what a plot would draw, for its note when nothing is there."""
    ms = plotted(plot)
    return f"metric{'s' if len(ms) > 1 else ''} {', '.join(ms)}"


def _with_param(h: pd.DataFrame, plot: str, column: str, keys: tuple[str, ...]) -> list[tuple[str, pd.DataFrame]]:
    """(metric, its rows with `column` from case parameter `keys`) for each metric plotted in
    `plot` that has rows carrying that parameter, in definition order; ops and shapes added."""
    out = []
    for metric in plotted(plot):
        r = _rows(h, metric)
        r = r.assign(**{column: [_param(p, keys) for p in r["p"]]}, op=[_param(p, OP_KEYS) or "" for p in r["p"]],
                     shape=[_param(p, SHAPE_KEYS) or "" for p in r["p"]])
        r = r[r[column].notna()]
        if len(r):
            out.append((metric, r))
    return out


def _zero_based(ax: Axes) -> None:
    """A linear throughput or bandwidth axis starts at 0: a 1.7 % difference looks like one."""
    if ax.get_yscale() == "linear":
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1e-12))


def _rows(h: pd.DataFrame, metric: str) -> pd.DataFrame:
    return h[h["metric"] == metric]


def _figure(ncols: int = 1, nrows: int = 1, width: float = 7.5, height: float = 4.2) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _panels(n: int, width: float, height: float, per_row: int = 3) -> tuple[Figure, Any]:
    """A figure of n panels, up to `per_row` a row; the unused cells of the last row hidden."""
    ncols = min(n, per_row)
    fig, ax = _figure(ncols=ncols, nrows=math.ceil(n / ncols), width=width, height=height)
    for axis in ax.flat[n:]:
        axis.set_visible(False)
    return fig, ax


def _bars(ax: Axes, table: pd.DataFrame, ylabel: str, colors: dict[str, str] | None = None,
          peaks: dict[str, float] | None = None) -> None:
    """Grouped bars: table index = categories (x), columns = series; `peaks` (category -> datasheet
    peak) draws a black line over the category's group, so a bar reads as good or bad."""
    n = max(len(table.columns), 1)
    width = 0.8 / n
    x = np.arange(len(table.index))
    for i, series in enumerate(table.columns):
        ax.bar(x + (i - (n - 1) / 2) * width, table[series].to_numpy(dtype=float), width, label=str(series),
               color=(colors or {}).get(str(series)))
    labelled = False
    for i, c in enumerate(table.index):
        peak = (peaks or {}).get(c)
        if peak is not None and np.isfinite(peak):
            ax.hlines(peak, i - 0.45, i + 0.45, colors="black", linestyles="--", lw=1.2,
                      label=None if labelled else "datasheet peak")  # type: ignore[arg-type]  # None: no legend entry; the stub says str
            labelled = True
    labels = [textwrap.fill(str(c), 28) for c in table.index]
    tilt = len(labels) > 4 or any(len(str(c)) > 14 for c in table.index)
    ax.set_xticks(x, labels, rotation=25 if tilt else 0, ha="right" if tilt else "center", fontsize="small")
    ax.set_ylabel(ylabel)
    values = table.to_numpy(dtype=float)
    finite = values[np.isfinite(values) & (values > 0)]
    if len(finite) and finite.max() / finite.min() > 100:
        ax.set_yscale("log")
    _zero_based(ax)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")


def hbar_label(case: object) -> str:
    """A case's whole label, wrapped to lines of HBAR_WRAP characters (never cut: cases differ late)."""
    return textwrap.fill(str(case), HBAR_WRAP)


def _hbars(ax: Axes, table: pd.DataFrame, xlabel: str, colors: dict[str, str] | None = None) -> None:
    """Grouped horizontal bars for many cases: one label a row (never overlapping: the figure grows
    with the rows), cases top to bottom, the value axis from 0."""
    n = max(len(table.columns), 1)
    height = 0.8 / n
    y = np.arange(len(table.index))
    for i, series in enumerate(table.columns):
        ax.barh(y + (i - (n - 1) / 2) * height, table[series].to_numpy(dtype=float), height, label=str(series),
                color=(colors or {}).get(str(series)))
    ax.set_yticks(y, [hbar_label(c) for c in table.index], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small")


def _lines(ax: Axes, df: pd.DataFrame, x: str, series: list[str], ylabel: str, xlabel: str,
           colors: dict[str, str] | None = None, peaks: dict[str, float] | None = None) -> None:
    """One line per `series` key; lines of one system share its colour, told apart by marker and style."""
    seen: dict[str, int] = {}
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-"), ("P", "--")]
    for key, part in df.groupby(series, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        med = part.groupby(x)["value"].median().sort_index()
        k = seen[str(key[0])] = seen.get(str(key[0]), -1) + 1
        marker, style = styles[k % len(styles)]
        ax.plot(med.index.to_numpy(dtype=float), med.to_numpy(dtype=float), marker=marker, linestyle=style,
                color=(colors or {}).get(str(key[0])), label=" ".join(str(k) for k in key))
    ax.set_xscale("log", base=2)
    values = df["value"].to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() / values.min() > 100:
        ax.set_yscale("log")
    if peaks:
        for name, peak in sorted(peaks.items()):
            ax.axhline(peak, color=(colors or {}).get(name, "black"), linestyle="--", lw=1.0,
                       label=f"{name}: datasheet peak {peak:.4g}")
    _zero_based(ax)
    if peaks and ax.get_yscale() == "linear":  # room above the peak line for the legend
        ax.set_ylim(top=max(ax.get_ylim()[1], 1.3 * max(peaks.values())))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def gemm(h: pd.DataFrame) -> tuple[Figure | None, str]:
    """A panel per metric plotted in "gemm": bars of the best shape per dtype and system."""
    parts = [(m, r.assign(dtype=[p.get("dtype", "?") for p in r["p"]]))
             for m in plotted("gemm") if len(r := _rows(h, m))]
    if not parts:
        return None, f"no GEMM results ({_any('gemm')}) in the selection"
    fig, ax = _panels(len(parts), width=7.5, height=4.2, per_row=2)
    for axis, (metric, r) in zip(ax.flat, parts):
        per_case = r.groupby(["series", "dtype", "case_key"])["value"].median()
        best = per_case.groupby(["dtype", "series"]).max().unstack("series")
        _bars(axis, best, axis_label(metric, ", best shape"), h.attrs.get("palette"), peaks=_peaks(r, "dtype"))
        if axis.get_yscale() == "linear":  # room above the highest peak line for the legend
            axis.set_ylim(top=axis.get_ylim()[1] * 1.15)
        axis.set_title(_title(metric, "by dtype"))
    return fig, ("bars: the best matrix shape per dtype and system (median over repeats, ranks and runs); "
                 "dashed: the datasheet dense peak from the hardware catalog")


def _peaks(rows: pd.DataFrame, by: str) -> dict[str, float]:
    """`by` value -> the datasheet peak stored with its rows (the catalog's, per GPU model)."""
    if "peak" not in rows.columns:
        return {}
    known = rows[rows["peak"].notna()]
    return {k: float(v) for k, v in known.groupby(by)["peak"].max().items()}


def membw(h: pd.DataFrame) -> tuple[Figure | None, str]:
    """A panel per metric plotted in "bandwidth": lines over the array size, datasheet peaks dashed."""
    parts = _with_param(h, "bandwidth", "size", SIZE_KEYS)
    if not parts:
        return None, f"no memory bandwidth results ({_any('bandwidth')} with a size parameter) in the selection"
    fig, ax = _panels(len(parts), width=7.5, height=4.2, per_row=2)
    for axis, (metric, r) in zip(ax.flat, parts):
        _lines(axis, r, "size", ["series", "benchmark", "op"], axis_label(metric), "array size (bytes)",
               h.attrs.get("palette"), peaks=_peaks(r, "series"))
        axis.set_title(_title(metric, "vs size"))
    return fig, ("median per array size; one line per system, benchmark and operation; dashed: the "
                 "datasheet peak")


def busbw(h: pd.DataFrame) -> tuple[Figure | None, str]:
    """A panel per metric plotted in "busbw": lines over the message size per system, op and world size."""
    parts = _with_param(h, "busbw", "size", SIZE_KEYS)
    if not parts:
        return None, f"no collective results ({_any('busbw')} with a message size) in the selection"
    fig, ax = _panels(len(parts), width=7.5, height=4.2, per_row=2)
    for axis, (metric, r) in zip(ax.flat, parts):
        _lines(axis, r.assign(n=[f"n={w}" for w in r["world_size"]]), "size", ["series", "op", "n"],
               axis_label(metric), "message size (bytes)", h.attrs.get("palette"))
        axis.set_title(f"Collectives: {words(metric)} vs message size")
    return fig, "; ".join(f"{m}: {metric_dict.get(m).definition}" for m, _ in parts)


def per_gpu_first(metrics: list[str]) -> list[str]:
    """`metrics` without a job-wide one (scope job) whose unit a per-device one of the list has
    (a per-GPU figure compares systems of different sizes); scores (a % of a peak) first."""
    device_units = {metric_dict.get(m).unit for m in metrics if metric_dict.get(m).scope == "device"}
    kept = [m for m in metrics if metric_dict.get(m).scope == "device" or metric_dict.get(m).unit not in device_units]
    return sorted(kept, key=lambda m: metric_dict.get(m).role != "score")


def training(h: pd.DataFrame) -> tuple[Figure | None, str]:
    """A panel per metric plotted in "training" (per_gpu_first): bars of the best configuration per model shape."""
    have = [m for m in plotted("training") if len(_rows(h, m))]
    if not have:
        return None, f"no training results ({_any('training')}) in the selection"
    shown = per_gpu_first(have)
    fig, ax = _panels(len(shown), width=6, height=4.2)
    for axis, metric in zip(ax.flat, shown):
        rows = _rows(h, metric)
        rows = rows.assign(shape=[_param(p, SHAPE_KEYS) or "?" for p in rows["p"]])
        best = rows.groupby(["series", "shape", "case_key"])["value"].median().groupby(["shape", "series"]).max()
        _bars(axis, best.unstack("series"), axis_label(metric), h.attrs.get("palette"))
        axis.set_title(_title(metric, "by model shape"))
    missing = [m for m in plotted("training") if m not in have]
    return fig, ("best configuration (micro-batch, sequence length, ...) per model shape and system"
                 + (f"; not measured: {', '.join(missing)}" if missing else ""))


def decode(h: pd.DataFrame) -> tuple[Figure | None, str]:
    """A panel per metric plotted in "decode": lines over the batch size per system and model shape."""
    parts = _with_param(h, "decode", "batch", BATCH_KEYS)
    if not parts:
        return None, f"no inference results ({_any('decode')} with a batch size) in the selection"
    fig, ax = _panels(len(parts), width=7.5, height=4.2, per_row=2)
    for axis, (metric, r) in zip(ax.flat, parts):
        _lines(axis, r, "batch", ["series", "shape"], axis_label(metric), "batch size", h.attrs.get("palette"))
        axis.set_title(_title(metric, "vs batch"))
    return fig, "; ".join(f"{m}: {metric_dict.get(m).definition}" for m, _ in parts) + \
        "; one line per system and model shape"


def efficiency_rows(h: pd.DataFrame) -> pd.DataFrame:
    """Stored per-watt figures (metrics plotted in "energy"), plus value / power_mean_w where only
    power was recorded (each one's PerPower.recomputed_from)."""
    stored = h[h["metric"].isin(plotted("energy"))]
    power = h[h["metric"] == metric_dict.POWER].set_index(["run_id", "case_id", "rank"])["value"]
    derived = []
    recomputed = {d.per_power.recomputed_from: d.name for d in map(metric_dict.get, plotted("energy"))
                  if d.per_power and d.per_power.recomputed_from}
    for metric, eff in recomputed.items():
        rows = h[h["metric"] == metric]
        have = set(zip(stored["run_id"], stored["case_id"], stored["rank"], stored["metric"]))
        for r in rows.itertuples(index=False):
            w = power.get((r.run_id, r.case_id, r.rank))
            if w is not None and w > 0 and (r.run_id, r.case_id, r.rank, eff) not in have:
                derived.append(r._replace(metric=eff, value=r.value / float(w)))
    extra = pd.DataFrame(derived, columns=h.columns) if derived else h.iloc[0:0]
    return pd.concat([stored, extra], ignore_index=True)


def energy(h: pd.DataFrame) -> tuple[Figure | None, str]:
    r = efficiency_rows(h)
    if not len(r):
        return None, "no energy data: telemetry recorded no power for the selected runs (NVML on GPUs)"
    metrics = [m for m in plotted("energy") if m in set(r["metric"])]
    tables = []
    for metric in metrics:
        part = r[r["metric"] == metric]
        part = part.assign(case=[f"{b} {param_text(str(b), p)}" for b, p in zip(part["benchmark"], part["p"])])
        table = part.groupby(["case", "series"])["value"].median().unstack("series")  # whole labels
        tables.append(table.loc[table.count(axis=1).sort_values(ascending=False).index[:MAX_ENERGY_CASES]])
    # one panel a row, each as tall as its bars and wrapped labels need: no two labels overlap
    rows = max(sum(max(len(t.columns), hbar_label(c).count("\n") + 1) for c in t.index) for t in tables)
    fig, ax = _figure(nrows=len(metrics), width=11, height=1.4 + 0.3 * rows)
    for axis, metric, table in zip(ax[:, 0], metrics, tables):
        _hbars(axis, table, axis_label(metric), h.attrs.get("palette"))
        axis.set_title(f"Energy efficiency: {words(metric)} ({metric})")
    return fig, f"median per case and system (at most {MAX_ENERGY_CASES} cases per panel)"


def gemm_dims(p: dict[str, Any]) -> tuple[int, int, int] | None:
    """(M, N, K) a stored gemm case multiplied, by the benchmark's own rule (GemmConfig resolves
    them from the shape, also for rows stored before m, n, k held the real dimensions and before
    unused tokens/hidden/ffn_hidden were stored empty); None if it cannot be told."""
    import dataclasses

    from aifbench.benchmarks._gemm_shape import GemmConfig, dims  # torch-free

    known = {f.name for f in dataclasses.fields(GemmConfig)}
    try:
        return dims(GemmConfig(**{k: v for k, v in p.items() if k in known}))
    except (TypeError, KeyError, ValueError):
        return None


def roofline_metrics() -> tuple[list[str], list[str]]:
    """The metrics plotted in "roofline": (compute ones in TFLOP/s: the points, bandwidths in GB/s: the slope)."""
    units = {m: metric_dict.get(m).unit for m in plotted("roofline")}
    return [m for m, u in units.items() if u == "TFLOP/s"], [m for m, u in units.items() if u == "GB/s"]


def _roof_inputs(part: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[float, str]], tuple[float, str] | None]:
    from aifbench.benchmarks._gemm_shape import bytes_moved
    from aifbench.units import DTYPE_BYTES

    compute, memory = roofline_metrics()
    g = part[(part["benchmark"] == "gemm") & part["metric"].isin(compute)]  # M, N, K by the gemm benchmark's rule
    pts = []
    for r in g.itertuples(index=False):
        p = r.p
        mnk = gemm_dims(p) if p.get("dtype") in DTYPE_BYTES else None
        if mnk:
            m, n, k = mnk
            pts.append((p["dtype"], 2.0 * m * n * k / bytes_moved(m, n, k, p["dtype"]), r.value, r.peak))
    pts = pd.DataFrame(pts, columns=["dtype", "ai", "rate", "peak"])
    roofs = {}
    for dtype, d in pts.groupby("dtype"):
        peak = d["peak"].dropna()
        roofs[dtype] = (float(peak.iloc[0]), "datasheet") if len(peak) else (float(d["rate"].max()), "measured best")
    bw = part[part["metric"].isin(memory)]
    bw_roof = None
    if len(bw):
        peak = bw["peak"].dropna()
        bw_roof = (float(peak.iloc[0]), "datasheet") if len(peak) else (float(bw["value"].max()), "measured best")
    return pts, roofs, bw_roof


def roofline(h: pd.DataFrame) -> tuple[Figure | None, str]:
    inputs = {s: _roof_inputs(h[h["series"] == s]) for s in sorted(h["series"].unique())}
    systems = [s for s, (pts, _, _) in inputs.items() if len(pts)]
    if not systems:
        return None, "no roofline: needs GEMM results with their shape and dtype (memory bandwidth adds the slope)"
    fig, ax = _panels(len(systems), width=5.5, height=4.2)
    for axis, system in zip(ax.flat, systems):
        pts, roofs, bw = inputs[system]
        ridges = [peak * 1000.0 / bw[0] for peak, _ in roofs.values()] if bw else []  # FLOP/byte at the knee
        lo, hi = min([pts["ai"].min()] + ridges) / 4, max([pts["ai"].max()] + ridges) * 4
        ai = np.logspace(math.log10(max(lo, 1e-2)), math.log10(hi), 200)
        for dtype, (peak, how) in sorted(roofs.items()):
            ceiling = np.minimum(peak, ai * bw[0] / 1000.0) if bw else np.full_like(ai, peak)
            line = axis.plot(ai, ceiling, linestyle="--" if how != "datasheet" else "-",
                             label=f"{dtype} roof {peak:.4g} ({how})")
            d = pts[pts["dtype"] == dtype]
            axis.scatter(d["ai"], d["rate"], color=line[0].get_color(), zorder=3)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("arithmetic intensity (FLOP/byte)")
        axis.set_ylabel("TFLOP/s")
        slope = f"; memory {bw[0]:.4g} GB/s ({bw[1]})" if bw else "; no memory bandwidth measured"
        axis.set_title(f"{system}{slope}", fontsize="small")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize="x-small")
    return fig, ("GEMM points at intensity 2MNK / (bytes of A, B, C); roofs from datasheet peaks, "
                 "else the best measured value (dashed)")


DIST_PANELS = 6


def distribution(h: pd.DataFrame) -> tuple[Figure | None, str]:
    """Per-GPU distribution of the run with the most ranks (>= 3): for the (case, metric) pairs
    with the widest relative spread, a histogram of each GPU's value as % of the partition
    median, with the outlier floor (outliers.Rule) marked."""
    from aifbench.analysis.outliers import Rule

    merit = h[h["metric"].map(metric_dict.is_merit)]
    per_gpu = merit.groupby(["run_id", "case_id", "metric"])["value"].nunique().groupby("run_id").max() > 1
    ranks = h[h["run_id"].isin(per_gpu[per_gpu].index)].groupby("run_id")["rank"].nunique()
    if not len(ranks) or ranks.max() < 3:  # a run whose ranks all hold one job-wide figure (an imported
        # nccl-tests log) has no per-GPU values to show
        return None, "no distribution: needs a run with at least 3 ranks that measured each GPU on its own"
    run = ranks.idxmax()
    r = h[(h["run_id"] == run) & h["metric"].map(metric_dict.is_merit)]
    rel = 100.0 * r["value"] / r.groupby(["case_id", "metric"])["value"].transform("median")
    r = r.assign(rel=rel)
    spread = r.groupby(["case_id", "metric"])["rel"].agg(lambda x: float(x.quantile(0.95) - x.min()))
    pairs = list(spread.sort_values(ascending=False).index[:DIST_PANELS])
    if not pairs:
        return None, "no distribution: the run has no figures of merit"
    fig, ax = _panels(len(pairs), width=5.0, height=3.4)
    floor = 100.0 - Rule().min_deviation_pct
    for axis, (case_id, metric) in zip(ax.flat, pairs):
        part = r[(r["case_id"] == case_id) & (r["metric"] == metric)]
        axis.hist(part["rel"].to_numpy(dtype=float), bins=60, color="#4c72b0", log=True)
        axis.axvline(100.0, color="black", lw=0.8)
        axis.axvline(floor, color="#c44e52", ls="--", lw=0.8)
        slow = int((part["rel"] < floor).sum())
        axis.set_title(f"{str(part['label'].iloc[0])[:48]}\n{metric}: {len(part)} GPUs, {slow} below {floor:g} %",
                       fontsize="x-small")
        axis.set_xlabel("% of partition median", fontsize="small")
    return fig, (f"run {run}: each GPU's headline value as % of its case's median over {int(ranks.max())} ranks "
                 f"(log counts); dashed: {floor:g} %; slow GPUs and nodes are named by aifbench validate / compare")


PLOTS: tuple[tuple[str, str, Builder], ...] = (
    ("distribution", "Per-GPU distribution of the largest run", distribution),
    ("gemm", "GEMM TFLOP/s by dtype per system", gemm),
    ("bandwidth", "Memory bandwidth vs size", membw),
    ("busbw", "Collective bus bandwidth vs message size", busbw),
    ("training", "Training MFU and tokens/s by model shape", training),
    ("decode", "Decode tokens/s vs batch", decode),
    ("energy", "Energy efficiency", energy),
    ("roofline", "Roofline per system", roofline),
)
