"""What `aifbench telemetry RUN_ID` shows: a per-window summary and a time-series plot.

One summary row per (case, rank, window): a case has one window per timed region (main, ref,
prefill, decode, bare; aifbench.telemetry.regions), whose metrics are stored as energy_j ...
for main and ref_energy_j ... for the others. Its flags are the region's (telemetry_window_s's
detail; the case's `flags` for shards written before regions). The plot comes from the
telemetry table. Windows are placed on one time axis, seconds since the run's first case
started: a case's windows are taken to end, one after the other, when the case ended
(teardown is short), i.e. at ended_utc - their lengths + t_s.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aifbench import metrics as metric_dict
from aifbench.atomic import atomic_write
from aifbench.errors import ConfigError

KEYS = ["case_id", "rank"]
WKEYS = KEYS + ["window"]
GAP_S = 0.1  # least space between two windows of one rank on the plot
GIB = 1024.0 ** 3
PANELS = (  # (axis label, fields, divisor from the stored unit to the axis unit)
    ("power (W)", ("power_w", "power_avg_1s_w", "module_power_w", "cpu_power_w"), 1.0),
    ("clock (MHz)", ("sm_clock_mhz", "mem_clock_mhz"), 1.0),
    ("temperature (C)", ("temperature_c",), 1.0),
    ("CPU utilisation (%)", ("process_cpu_pct", "system_cpu_pct"), 1.0),
    ("memory (GiB)", ("process_rss_bytes", "system_memory_used_bytes"), GIB),
)


class NothingToPlot(ConfigError):
    """The telemetry has no series any panel draws (the summary may still be shown)."""


def split_metric(name: str) -> tuple[str, str]:
    """(region, window metric) of a stored metric name: ref_energy_j -> ('ref', 'energy_j');
    ('main', name) for a name that is no window metric (its traits region and base)."""
    d = metric_dict.METRICS.get(name)
    if d is None or d.derivation != "window":
        return metric_dict.MAIN, name
    return d.region, d.base


def with_window(telemetry: pd.DataFrame) -> pd.DataFrame:
    """Telemetry rows with `window` and `segment` set (main / 0 in shards written before regions)."""
    window = telemetry["window"].fillna("main") if "window" in telemetry else "main"
    segment = telemetry["segment"].fillna(0) if "segment" in telemetry else 0
    return telemetry.assign(window=window, segment=segment)


def summary(metrics: pd.DataFrame, telemetry: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, rank, window): benchmark, samples, window length, the rank's own GPU and
    how many GPUs were sampled, window metrics (of the own GPU), flags, energy method."""
    base = metrics.drop_duplicates(KEYS)[KEYS + ["benchmark", "flags", "started_utc"]]
    if len(telemetry):
        # the sampler writes the rank's own GPU's rows first: "first" is the own GPU's index
        t = with_window(telemetry).groupby(WKEYS, sort=False).agg(
            samples=("t_s", "nunique"), window_s=("t_s", "max"), source=("source", "first"),
            gpu_index=("gpu_index", "first"), gpus=("gpu_uuid", "nunique")).reset_index()
        base = base.merge(t, on=KEYS, how="left")
    if "window" not in base:
        base["window"] = "main"
    base["window"] = base["window"].fillna("main")
    split = [split_metric(str(name)) for name in metrics["metric"]]
    wm = metrics.assign(window=[w for w, _ in split], base=[b for _, b in split])
    wm = wm[wm["base"].isin(metric_dict.names(derivation="window", region=metric_dict.MAIN))]
    if len(wm):
        pivot = wm.pivot_table(index=WKEYS, columns="base", values="value", aggfunc="first").reset_index()
        base = base.merge(pivot, on=WKEYS, how="left")
        energy = wm[wm["base"] == "energy_j"][WKEYS + ["detail"]].rename(columns={"detail": "energy_detail"})
        base = base.merge(energy, on=WKEYS, how="left")
        own = wm[wm["base"] == "telemetry_window_s"][WKEYS + ["detail"]].rename(columns={"detail": "window_detail"})
        base = base.merge(own, on=WKEYS, how="left")
        if "telemetry_window_s" in base:
            base["window_s"] = base["telemetry_window_s"].fillna(base.get("window_s"))
        # a plain list: pandas 3's Arrow-backed strings refuse where() between None and text
        base["flags"] = [own if own is not None else old for own, old in
                         zip(base["window_detail"].map(_flags_of).tolist(), base["flags"].tolist())]
    return base.sort_values(["started_utc", "rank"], kind="stable").reset_index(drop=True)


def _flags_of(detail) -> str | None:
    """The region's flags from telemetry_window_s's detail ('...; flags=a,b'), None without one."""
    if not isinstance(detail, str) or "flags=" not in detail:
        return None
    text = detail.rsplit("flags=", 1)[1].split(";")[0].strip()
    return "" if text == "none" else text


def timeline(metrics: pd.DataFrame, telemetry: pd.DataFrame) -> pd.DataFrame:
    """Telemetry rows with x_s: seconds since the run's first case started."""
    if not len(telemetry):
        return telemetry.assign(x_s=pd.Series(dtype="float64"))
    telemetry = with_window(telemetry)
    cases = metrics.groupby(KEYS).agg(started=("started_utc", "min"), ended=("ended_utc", "max")).reset_index()
    t0 = cases["started"].min()
    blocks = telemetry.groupby(WKEYS, sort=False)["t_s"].max().rename("length").reset_index()
    blocks["order"] = range(len(blocks))  # a case's windows in the order they were sampled
    blocks = blocks.merge(cases, on=KEYS, how="left")
    total = blocks.groupby(KEYS)["length"].transform("sum")
    blocks["offset_s"] = ((blocks["ended"] - t0).dt.total_seconds() - total).clip(lower=0.0)
    blocks = blocks.sort_values(["rank", "started", "order"])
    for _, idx in blocks.groupby("rank").groups.items():  # windows of one rank never overlap (replays)
        free = 0.0
        for i in idx:
            blocks.loc[i, "offset_s"] = max(blocks.loc[i, "offset_s"], free)
            free = blocks.loc[i, "offset_s"] + blocks.loc[i, "length"] + GAP_S
    out = telemetry.merge(blocks[WKEYS + ["offset_s"]], on=WKEYS, how="left")
    out["x_s"] = out["offset_s"].fillna(0) + out["t_s"]
    return out.sort_values("x_s", kind="stable")  # stable: the own GPU's rows stay first


def plot(metrics: pd.DataFrame, telemetry: pd.DataFrame, path: Path, title: str) -> Path:
    """PNG of power, clocks, temperature (and CPU utilisation) over time; returns the path."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry

    data = timeline(metrics, telemetry).dropna(subset=["value"])
    panels = [(label, [f for f in names if (data["field"] == f).any()], scale) for label, names, scale in PANELS]
    panels = [(label, names, scale) for label, names, scale in panels if names]
    if not panels:
        drawn = ", ".join(f for _, names, _ in PANELS for f in names)
        recorded = ", ".join(sorted(set(data["field"].astype(str)))) or "no sampled values"
        raise NothingToPlot(f"no plot: the run's telemetry has none of the series a plot draws ({drawn}); "
                            f"it recorded: {recorded}")
    fig = Figure(figsize=(10, 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)
    spans = data.groupby("case_id")["x_s"].agg(["min", "max"]).sort_values("min")
    for ax, (label, names, scale) in zip(axes[:, 0], panels):
        for i, (case_id, span) in enumerate(spans.iterrows()):  # shade every other case window
            ax.axvspan(span["min"], span["max"], color="0.92" if i % 2 else "0.97", zorder=0)
        part = data[data["field"].isin(names)]
        _plot_series(ax, part.assign(value=part["value"] / scale))
        _dedupe_legend(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since the run's first case started")
    axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    _label_windows(fig, axes[0, 0], spans)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


LABEL_ROWS = 4


def _label_windows(fig, ax, spans: pd.DataFrame) -> None:
    """Number each case window at its start, in the lowest of LABEL_ROWS rows where it does not
    touch the label before it (a window with no free row goes unnumbered); the key below the
    plot names the case of every number."""
    renderer = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else None
    if renderer is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
    right_edge = [-float("inf")] * LABEL_ROWS
    key = []
    for n, (case_id, span) in enumerate(spans.iterrows(), start=1):
        key.append(f"{n} {case_id}")
        x_px = ax.transData.transform((span["min"], 0))[0]
        for row in range(LABEL_ROWS):
            if x_px > right_edge[row]:
                text = ax.annotate(str(n), (span["min"], 1.0 - 0.09 * row), xycoords=("data", "axes fraction"),
                                   fontsize=6, va="top", color="0.3")
                right_edge[row] = text.get_window_extent(renderer).x1 + 2
                break
    fig.text(0.01, 0.0, "windows: " + "   ".join(key), fontsize=5, color="0.3", va="bottom", wrap=True)
    fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.06 + 0.012 * (len(key) // 8)))


def _plot_series(ax, data: pd.DataFrame) -> None:
    """One colour per (field, rank, GPU) line, each case window drawn as its own segment; the
    rank's own GPU (its rows come first) drawn thicker when a rank sampled several."""
    gpu = data["gpu_index"].fillna(-1).astype(int)
    own = data.assign(g=gpu).groupby("rank", sort=False)["g"].first().to_dict()
    several = data.assign(g=gpu).groupby("rank")["g"].nunique().gt(1).to_dict()
    for k, ((name, rank, g), part) in enumerate(data.groupby(["field", "rank", gpu], sort=True)):
        mine = several.get(rank) and g == own.get(rank)
        who = f"rank {rank}" + (f" gpu {g}" if g >= 0 else "") + (", own" if mine else "")
        for _, w in part.groupby(["case_id", "window", "segment"]):
            ax.plot(w["x_s"], w["value"], marker=".", markersize=2, linewidth=2.2 if mine else 1,
                    label=f"{name} ({who})", color=f"C{k % 10}")


def _dedupe_legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, object] = {}
    for h, label in zip(handles, labels):
        seen.setdefault(label, h)
    if seen:
        ax.legend(list(seen.values()), list(seen), fontsize=7, loc="best")

