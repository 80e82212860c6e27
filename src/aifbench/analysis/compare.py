"""Cross-system tables: medians with spread, normalised per GPU / node / watt, % of peak,
and differences to a baseline tested on the raw samples.

One output row per (group, case, metric). A case is identified across runs by its benchmark
and parameters (not its case id, which carries a position in the suite).

Columns (units in the names where they differ from the metric's unit):
- median: median over the ranks and runs of the group of each rank's headline value
- q1, q3, spread_pct: quartiles of the pooled raw samples ((q3 - q1) / median * 100)
Rows shown by default are figures of merit (metrics.is_merit); --metric picks any metric present.
- per_gpu: median over rows of value / devices that produced it (job-wide metrics such as
  training tokens_per_s divide by world_size; per-device metrics are already per GPU)
- per_node: per_gpu x devices per node (GPUs visible on the node, at least the ranks there)
- per_w: per_gpu / power_mean_w of the same case and rank (when telemetry recorded power)
- pct_of_peak: median of the stored value / datasheet peak * 100
- benchmark, params (JSON), case_ids, run_ids, suites: what the row pools, whole (the label
  `case` is for reading; scripts key on benchmark + params)
- vs_baseline_pct, ci_low_pct, ci_high_pct, p_value, verdict: median ratio to the baseline's
  pooled samples minus 1, its 95 % bootstrap interval, the Mann-Whitney p-value, and
  better / worse / same (significant at alpha with the interval excluding 0).

Runs that are not complete (aifbench.analysis.runs: running, interrupted, incomplete) are left
out of every pooled figure unless CompareOptions.include_incomplete; `excluded_runs()` names them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aifbench import metrics as metric_dict
from aifbench.analysis import samples as samp
from aifbench.analysis import runs as run_info
from aifbench.analysis.data import Selection, case_label, headline, per_distinct, text_values
from aifbench.analysis.stats import DEFAULT_SEED, compare_samples
from aifbench.errors import ConfigError, one_of
from aifbench.results.store import Results

GROUPINGS = {"system": "system", "partition": "partition", "gpu": "device_name", "node": "node"}
FORMATS = ("table", "csv", "markdown", "json")
COLUMNS = ("group", "case", "metric", "unit", "median", "q1", "q3", "spread_pct", "per_gpu", "per_node",
           "per_w", "pct_of_peak", "n_runs", "n_ranks", "n_samples", "reference",
           "vs_baseline_pct", "ci_low_pct", "ci_high_pct", "p_value", "verdict",
           "benchmark", "params", "case_ids", "run_ids", "suites", "statuses")
ID_LISTS = ("params", "case_ids", "run_ids")
"""columns for scripts (JSON, CSV), left out of tables meant for reading"""


@dataclass(frozen=True, kw_only=True, slots=True)
class CompareOptions:
    by: str = "system"
    metrics: tuple[str, ...] = ()
    """metric names to show; empty: every figure of merit (raw times and telemetry readings hidden)"""
    alpha: float = 0.05
    """significance level of the baseline test"""
    seed: int = DEFAULT_SEED
    include_incomplete: bool = False
    """pool runs that are running, interrupted or incomplete too (default: left out)"""


def check_options(opts: CompareOptions, present: set[str]) -> None:
    """ConfigError (exit 2) naming the allowed choices for a bad grouping or metric."""
    if opts.by not in GROUPINGS:
        raise one_of("grouping", opts.by, GROUPINGS)
    for m in opts.metrics:
        if m not in present:
            known = "defined but not in the selected results" if m in metric_dict.METRICS else "unknown"
            raise ConfigError(f"metric {m!r} {known}; metrics in the selection: {', '.join(sorted(present))}")
    if not 0 < opts.alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {opts.alpha}")


def devices_per_node(runs: pd.DataFrame) -> dict[tuple[str, str], int]:
    """(run_id, node) -> devices on that node: GPUs visible there, at least the ranks that ran there."""
    if not len(runs):
        return {}
    groups = runs.groupby(["run_id", "node"])  # one aggregation, not one Python step per node (10^4 nodes)
    ranks = groups["rank"].nunique()
    gpus = groups["gpu_count"].max().astype("Float64").fillna(0).astype(int)
    return {(str(r), str(n)): max(int(a), int(b)) for (r, n), a, b in zip(ranks.index, ranks.to_numpy(), gpus.to_numpy())}


def _power(h: pd.DataFrame) -> dict[tuple[str, str, int], float]:
    p = h[h["metric"] == metric_dict.POWER]
    return dict(zip(zip(text_values(p["run_id"]), text_values(p["case_id"]), p["rank"].astype(int)),
                    p["value"].astype(float)))


def normalised(h: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Add per_gpu, per_node, per_w and pct columns to headline rows."""
    h = h.copy(deep=False)  # columns added, none changed: the rows are not copied
    dpn = devices_per_node(runs)
    power = _power(h)
    additive = h["metric"].isin(metric_dict.names(additive=True))
    world = h["world_size"].astype(float)
    per_gpu = np.where(h["metric"].isin(metric_dict.names(scope="job")), h["value"] / world, h["value"])
    h["per_gpu"] = np.where(additive, per_gpu, np.nan)
    # devices per node once per distinct (run, node); the power by an index join: never per row in Python
    devs = per_distinct([h["run_id"], h["node"]], lambda k: dpn.get((str(k[0]), str(k[1])), 1.0)) if dpn and len(h) \
        else np.ones(len(h))
    h["per_node"] = h["per_gpu"] * devs.astype(float)
    keys = pd.MultiIndex.from_arrays([text_values(h["run_id"]), text_values(h["case_id"]), h["rank"].astype(int)])
    watts = pd.Series(power, dtype=float).reindex(keys) if power else pd.Series(np.nan, index=keys)
    with np.errstate(divide="ignore", invalid="ignore"):
        h["per_w"] = h["per_gpu"] / watts.to_numpy(dtype=float)
    pct = h["pct_of_peak"].astype(float)
    derived = 100.0 * h["value"] / h["peak"].astype(float)
    h["pct"] = pct.where(pct.notna(), derived)
    return h


def _shown(h: pd.DataFrame, opts: CompareOptions) -> pd.DataFrame:
    if opts.metrics:
        return h[h["metric"].isin(opts.metrics)]
    return h[h["metric"].map(metric_dict.is_merit)]


def _spread(values: np.ndarray | None, median: float) -> tuple[float, float, float]:
    if values is None or len(values) < 2:
        return math.nan, math.nan, math.nan
    q1, q3 = np.percentile(values, [25, 75])
    return float(q1), float(q3), float((q3 - q1) / median * 100.0) if median else math.nan


def _baseline_cols(a: np.ndarray | None, base: np.ndarray | None, metric: str, opts: CompareOptions
                   ) -> dict[str, float | str]:
    empty: dict[str, float | str] = {"vs_baseline_pct": math.nan, "ci_low_pct": math.nan, "ci_high_pct": math.nan,
             "p_value": math.nan, "verdict": ""}
    if base is None:
        return empty
    if a is None or not len(a) or not len(base):
        return dict(empty, verdict="n/a")
    d = compare_samples(a, base, seed=opts.seed)
    higher = metric_dict.METRICS[metric].higher_is_better if metric in metric_dict.METRICS else True
    if not d.significant(opts.alpha):
        verdict = "same"
    else:
        verdict = "better" if (d.ratio > 1) == higher else "worse"
    return {"vs_baseline_pct": (d.ratio - 1) * 100, "ci_low_pct": (d.ci_low - 1) * 100,
            "ci_high_pct": (d.ci_high - 1) * 100, "p_value": d.p_value, "verdict": verdict}


def baseline_samples(baseline: Results) -> dict[tuple[str, str], np.ndarray]:
    """(case_key, metric) -> the baseline's pooled samples in the metric's unit."""
    h = headline(baseline.tables["metrics"])
    idx = samp.index(baseline.tables["samples"])
    maxes = samp.max_index(baseline.tables["metrics"])
    out = {}
    for key, rows in h.groupby(["case_key", "metric"]):
        s = samp.pooled(idx, maxes, rows)
        if s is not None:
            out[(str(key[0]), str(key[1]))] = s
    return out


def excluded_runs(sel: Selection, opts: CompareOptions) -> dict[str, str]:
    """run_id -> status of the selected runs left out of pooled figures (not complete)."""
    return {} if opts.include_incomplete else run_info.incomplete(sel.results)


def complete_rows(h: pd.DataFrame, sel: Selection, opts: CompareOptions) -> pd.DataFrame:
    """Headline rows without the runs excluded_runs() names; ConfigError when none is left."""
    left_out = excluded_runs(sel, opts)
    kept = h[~h["run_id"].isin(left_out)]
    if len(h) and not len(kept):
        names = ", ".join(f"{r} ({s})" for r, s in sorted(left_out.items()))
        raise ConfigError(f"every selected run is incomplete: {names}; pool them anyway with --include-incomplete")
    return kept


def compare(sel: Selection, opts: CompareOptions, baseline: Results | None = None,
            rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The comparison table (columns COLUMNS), sorted by case, metric and group. `rows`:
    headline(sel.metrics) where the caller has it already (read, never changed)."""
    h = headline(sel.metrics) if rows is None else rows
    check_options(opts, set(pd.unique(h["metric"])) | set(pd.unique(sel.metrics["metric"])))  # per distinct, not per row
    h = complete_rows(h, sel, opts)
    if baseline is not None:
        base_runs = set(pd.unique(baseline.tables["metrics"]["run_id"]))
        ran = set(pd.unique(h["run_id"]))
        if ran and ran <= base_runs:
            raise ConfigError(f"the selection is the baseline run itself ({', '.join(sorted(base_runs))}): "
                              "nothing to compare with it; select a later run")
        h = h[~h["run_id"].isin(base_runs)]
    h = _shown(normalised(h, sel.results.tables["runs"]), opts)
    if not len(h):
        raise ConfigError("nothing to compare: no ok rows of the selected metrics"
                          + (" outside the baseline run" if baseline is not None else ""))
    idx = samp.index(sel.results.tables["samples"])
    maxes = samp.max_index(sel.metrics) if len(sel.results.tables["samples"]) else {}
    base = baseline_samples(baseline) if baseline is not None else None
    col = GROUPINGS[opts.by]
    info = run_info.summary(sel.results)
    suite_of, status_of = dict(zip(info["run_id"], info["suite"])), dict(zip(info["run_id"], info["status"]))
    rows = []
    for (group, case_key, metric), part in h.groupby([h[col].fillna("").astype(str), "case_key", "metric"]):
        values = samp.pooled(idx, maxes, part)
        median = float(part["value"].median())
        q1, q3, spread = _spread(values, median)
        b = None if base is None else base.get((case_key, metric), np.array([]))
        rows.append({
            "group": group or "(none)", "metric": metric,
            "case": case_label(part["benchmark"].iloc[0], part["params"].iloc[0], limit=None),
            "unit": part["unit"].iloc[0], "median": median, "q1": q1, "q3": q3, "spread_pct": spread,
            "per_gpu": part["per_gpu"].median(), "per_node": part["per_node"].median(),
            "per_w": part["per_w"].median(), "pct_of_peak": part["pct"].median(),
            "n_runs": part["run_id"].nunique(), "n_ranks": len(part),
            "n_samples": 0 if values is None else len(values),
            "reference": bool(part["run_id"].isin(sel.reference_runs).all()),
            **_baseline_cols(values, b, metric, opts),
            "benchmark": part["benchmark"].iloc[0], "params": part["params"].iloc[0],
            "case_ids": sorted(set(part["case_id"])), "run_ids": sorted(set(part["run_id"])),
            "suites": sorted({str(suite_of[r]) for r in part["run_id"] if r in suite_of}),
            "statuses": sorted({str(status_of[r]) for r in part["run_id"] if r in status_of})})
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    return out.sort_values(["case", "metric", "group"], kind="stable").reset_index(drop=True)


# --- output ---------------------------------------------------------------------------------

def fmt(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        a = abs(value)
        return f"{value:.3e}" if a and (a < 1e-3 or a >= 1e6) else f"{value:.{digits}g}"
    return str(value)


def fmt_pct(value: float | None) -> str:
    """A percentage for reading: '12 %', '3.4 %', '0.52 %', '250 %'; never exponent notation."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    a = abs(value)
    return f"{value:.0f} %" if a >= 10 else f"{value:.1f} %" if a >= 1 else f"{value:.2f} %"


def drop_empty(df: pd.DataFrame) -> pd.DataFrame:
    """For reading: leave out columns with no value in any row (no baseline, no power, no peaks)
    and the id lists (ID_LISTS); suites and statuses become comma-joined text."""
    df = df.drop(columns=[c for c in ID_LISTS if c in df.columns])
    df = df.assign(**{c: df[c].map(lambda x: ", ".join(x) if isinstance(x, list) else x)
                      for c in ("suites", "statuses") if c in df.columns})
    keep = [c for c in df.columns if df[c].map(lambda v: fmt(v) != "").any() or c in ("group", "case", "metric")]
    return df[keep]


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for JSON: params parsed into an object, NaN as None."""
    out = []
    for row in df.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        params = rec.get("params")
        if isinstance(params, str):
            rec["params"] = json.loads(params)
        out.append(rec)
    return out


def to_json(df: pd.DataFrame) -> str:
    return json.dumps(records(df), indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Condensed text columns for a terminal: value with unit and spread, normalisations, test."""
    out = pd.DataFrame({
        "case": df["case"].where(df["case"].ne(df["case"].shift()), ""),
        "metric": df["metric"], "group": df["group"] + df["reference"].map({True: " (ref)", False: ""}),
        "median": [fmt(v) if u in ("", "1") else f"{fmt(v)} {u}" for v, u in zip(df["median"], df["unit"])],
        "±IQR": [fmt_pct(v) for v in df["spread_pct"]],
    })
    if (df["per_gpu"].notna() & (df["per_gpu"] != df["median"])).any():
        out["per GPU"] = df["per_gpu"].map(fmt)
    if (df["per_node"].notna() & (df["per_node"] != df["per_gpu"])).any():
        out["per node"] = df["per_node"].map(fmt)
    if df["per_w"].notna().any():
        out["per W"] = df["per_w"].map(fmt)
    if df["pct_of_peak"].notna().any():
        out["% peak"] = df["pct_of_peak"].map(lambda v: fmt(v, 3))
    out["suite"] = [", ".join(x) for x in df["suites"]]
    if df["statuses"].map(lambda x: bool(set(x) - {"ok", "failed"})).any():
        out["run status"] = [", ".join(x) for x in df["statuses"]]
    out["n"] = [f"{a}/{b}/{c}" for a, b, c in zip(df["n_runs"], df["n_ranks"], df["n_samples"])]
    if (df["verdict"] != "").any():
        out["vs baseline (95 % CI)"] = [
            "" if not fmt(d) else f"{d:+.1f} % [{lo:+.1f}, {hi:+.1f}]"
            for d, lo, hi in zip(df["vs_baseline_pct"], df["ci_low_pct"], df["ci_high_pct"])]
        out["p"] = df["p_value"].map(lambda v: fmt(v, 2))
        out["verdict"] = df["verdict"]
    return out
