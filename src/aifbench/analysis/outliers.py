"""Slow GPUs and slow nodes of a many-rank run, named, per throughput metric and case.

Rule (Iglewicz & Hoaglin 1993 modified z-score, stats.robust_z): for one case and metric,
over the partition's GPUs (one headline value per rank),
    z_i = 0.6745 (x_i - median) / MAD,
and a GPU is an outlier when z_i < -Z (Z = 3.5; > +Z for lower-is-better metrics such as
latencies) AND it is at least `min_deviation_pct` (default 5 %) from the median in the bad
direction: the robust z alone flags tiny deviations when a partition is very uniform.
Per node: the median of its GPUs' values, judged by the same rule against the other nodes'
medians (needs >= 3 nodes); a node is named as the node when it is such an outlier AND more
than half of its GPUs are slow GPUs (4 slow of 4, 3 of 4, 2 of 2), with how many; its GPUs are
not listed again. A slow GPU on a node that is not slow is named as the
GPU: node, GPU index, UUID, value and its deviation from the partition median.
Cost: vectorised over the rows of each (case, metric) group: linear in ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aifbench import metrics as metric_dict
from aifbench.analysis.stats import OUTLIER_Z, robust_z

RULE = ("slow = robust z 0.6745 (x - median) / MAD below -{z:g} and at least {pct:g} % below the partition "
        "median (above, for latencies); a node is slow when the median of its GPUs is such an outlier among "
        "the nodes and more than half of its GPUs are slow")
WORST = 10
"""outliers listed by name per check; the rest are counted"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    z: float = OUTLIER_Z
    min_deviation_pct: float = 5.0

    def text(self) -> str:
        return RULE.format(z=self.z, pct=self.min_deviation_pct)


def higher_is_better(metric: str) -> bool:
    d = metric_dict.METRICS.get(metric)
    return True if d is None else d.higher_is_better


def gpu_index(device: pd.Series) -> pd.Series:
    """'cuda:3' -> 3 (the device index the rank used); <NA> for other devices. Parsed once per
    distinct text (10^5 ranks name a few devices)."""
    cats = device if isinstance(device.dtype, pd.CategoricalDtype) else device.astype(str).astype("category")
    parsed = pd.to_numeric(pd.Series(cats.cat.categories.astype(str), dtype=object).str.extract(r"cuda:(\d+)$")[0],
                           errors="coerce").astype("Int64")
    codes = cats.cat.codes.to_numpy()
    return pd.Series(parsed.take(codes).to_numpy() if len(parsed) else pd.array([pd.NA] * len(device), "Int64"),
                     index=device.index, dtype="Int64")


def _flag(x: np.ndarray, higher: bool, rule: Rule) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(outlier mask, robust z, deviation % from the median, median)."""
    med = float(np.median(x)) if len(x) else math.nan
    z = robust_z(x) if len(x) else x
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = (x - med) / med * 100.0 if med else np.full(len(x), np.nan)
    bad = (z < -rule.z) & (dev <= -rule.min_deviation_pct) if higher else \
        (z > rule.z) & (dev >= rule.min_deviation_pct)
    return bad, z, dev, med


def partition(rows: pd.DataFrame, uuids: dict[tuple[int, str], str], rule: Rule = Rule()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, outliers) for headline rows of one run (columns case_id, label, metric, unit,
    rank, node, device, value).

    summary: one row per (case, metric): n_gpus, n_nodes, median, mad, p5, p95, min, max,
    slow_gpus, slow_nodes. outliers: kind (node | gpu), case, metric, unit, node, rank,
    device, gpu_index, gpu_uuid, value, median, dev_pct, z, slow_gpus_on_node, gpus_on_node."""
    summaries, found = [], []
    for (case_id, metric), part in rows.groupby(["case_id", "metric"], sort=True):
        if part["rank"].nunique() < 3:
            continue
        s, o = _one(part, str(metric), uuids, rule)
        summaries.append(s)
        found += o
    cols = ["kind", "case_id", "case", "metric", "unit", "node", "rank", "device", "gpu_index", "gpu_uuid", "value",
            "median", "dev_pct", "z", "slow_gpus_on_node", "gpus_on_node"]
    return pd.DataFrame(summaries), pd.DataFrame(found, columns=cols)


def _one(part: pd.DataFrame, metric: str, uuids: dict[tuple[int, str], str], rule: Rule
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    higher = higher_is_better(metric)
    x = part["value"].to_numpy(dtype=float)
    bad, z, dev, med = _flag(x, higher, rule)
    nodes = part.groupby("node", sort=True)["value"].median()
    nbad, nz, ndev, nmed = _flag(nodes.to_numpy(dtype=float), higher, rule) if len(nodes) >= 3 else \
        (np.zeros(len(nodes), bool), np.zeros(len(nodes)), np.zeros(len(nodes)), math.nan)
    per_node = part.assign(_bad=bad).groupby("node", sort=True)["_bad"].agg(["sum", "size"]).reindex(nodes.index)
    nbad = nbad & (per_node["sum"] > per_node["size"] / 2).to_numpy()  # most of its GPUs: the node
    slow_nodes = set(nodes.index[nbad])
    label, unit = str(part["label"].iloc[0]), str(part["unit"].iloc[0])
    common = {"case_id": str(part["case_id"].iloc[0]), "case": label, "metric": metric, "unit": unit}
    out = []
    for node, zi, di, vi in zip(nodes.index[nbad], nz[nbad], ndev[nbad], nodes.to_numpy(dtype=float)[nbad]):
        out.append({**common, "kind": "node", "node": str(node), "rank": None, "device": None, "gpu_index": None, "gpu_uuid": None,
                    "value": float(vi), "median": nmed, "dev_pct": float(di), "z": float(zi),
                    "slow_gpus_on_node": int(per_node.loc[node, "sum"]), "gpus_on_node": int(per_node.loc[node, "size"])})
    idx = gpu_index(part["device"]) if "device" in part.columns else pd.Series([pd.NA] * len(part))
    sel = bad & ~part["node"].isin(slow_nodes).to_numpy()
    for r, g, zi, di, vi in zip(part.loc[sel, ["node", "rank", "device"]].itertuples(index=False), idx[sel], z[sel],
                                dev[sel], x[sel]):  # the three columns named, not every column of the rows
        out.append({**common, "kind": "gpu", "node": str(r.node), "rank": int(r.rank), "device": str(r.device),
                    "gpu_index": None if pd.isna(g) else int(g), "gpu_uuid": uuids.get((int(r.rank), str(r.node))),
                    "value": float(vi), "median": med, "dev_pct": float(di), "z": float(zi),
                    "slow_gpus_on_node": int(per_node.loc[r.node, "sum"]), "gpus_on_node": int(per_node.loc[r.node, "size"])})
    mad = float(np.median(np.abs(x - med)))
    p5, p95 = np.percentile(x, [5, 95])
    summary = {**common, "n_gpus": len(x), "n_nodes": len(nodes), "median": med, "mad": mad,
               "spread_pct": 100 * 1.4826 * mad / med if med else math.nan, "p5": float(p5), "p95": float(p95),
               "min": float(x.min()), "max": float(x.max()), "slow_gpus": int(sel.sum()), "slow_nodes": len(slow_nodes),
               "higher_is_better": higher}
    return summary, out


def describe(o: Any) -> str:  # o: a row of the found frame's itertuples
    """'slow rank 4 (n1 cuda:1 GPU-...): 611.2 TFLOP/s, -20.1 % vs median 765 (robust z -40.1)', or
    'slow node n4 (3 of 3 GPUs slow): ... vs node median ...'."""
    word = "slow" if higher_is_better(o.metric) else "high"
    if o.kind == "node":
        return (f"{word} node {o.node} ({o.slow_gpus_on_node} of {o.gpus_on_node} GPUs {word}): {o.value:.4g} {o.unit}, "
                f"{o.dev_pct:+.1f} % vs node median {o.median:.4g} (robust z {o.z:.1f})")
    uuid = f" {o.gpu_uuid}" if isinstance(o.gpu_uuid, str) else ""
    return (f"{word} rank {int(o.rank)} ({o.node} {o.device}{uuid}): {o.value:.4g} {o.unit}, {o.dev_pct:+.1f} % vs "
            f"median {o.median:.4g} (robust z {o.z:.1f})")


def worst(outliers: pd.DataFrame, n: int = WORST) -> pd.DataFrame:
    """The `n` farthest off (largest |deviation|) first."""
    if not len(outliers):
        return outliers
    return outliers.reindex(outliers["dev_pct"].abs().sort_values(ascending=False).index).head(n)


def below_median(rows: pd.DataFrame, pct: float) -> pd.DataFrame:
    """Rows (one case's ranks, or several cases') below `pct` % of their case's partition median
    (above 100 + (100 - pct) % for lower-is-better metrics); adds median and pct_of_median."""
    med = rows.groupby(["case_id", "metric"])["value"].transform("median")
    ratio = 100.0 * rows["value"] / med
    higher = rows["metric"].map(higher_is_better).astype(bool)
    bad = (higher & (ratio < pct)) | (~higher & (ratio > 200.0 - pct))
    return rows[bad].assign(median=med[bad], pct_of_median=ratio[bad])


def for_selection(metrics: pd.DataFrame, runs: pd.DataFrame, rule: Rule = Rule()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, outliers) of every run with >= 3 ranks in a selection, figures of merit only
    (metrics.is_merit), ok rows without telemetry flags; both get a run_id column."""
    from aifbench.analysis.data import headline

    h = headline(metrics)
    h = h[h["metric"].map(metric_dict.is_merit) & (h["flags"].fillna("").astype(str) == "")]
    uuids = {(int(r.rank), str(r.node)): str(r.gpu_uuid) for r in
             runs[["rank", "node", "gpu_uuid"]].dropna().itertuples(index=False)} if len(runs) else {}
    summaries, found = [], []
    for run_id, part in h.groupby("run_id", sort=True):
        if part["rank"].nunique() < 3:
            continue
        own = uuids if not len(runs) or runs["run_id"].nunique() <= 1 else \
            {(int(r.rank), str(r.node)): str(r.gpu_uuid) for r in
             runs[runs["run_id"] == run_id][["rank", "node", "gpu_uuid"]].dropna().itertuples(index=False)}
        s, o = partition(part, own, rule)
        summaries.append(s.assign(run_id=run_id))
        found.append(o.assign(run_id=run_id))
    if not summaries:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(summaries, ignore_index=True), pd.concat(found, ignore_index=True)


def to_text(summary: pd.DataFrame, found: pd.DataFrame, rule: Rule = Rule(), n: int = WORST) -> str:
    """Markdown: per run, case and metric the partition's median and spread, slow GPUs and nodes
    counted, and the worst `n` named."""
    if not len(summary):
        return ""
    lines = [f"## Slow GPUs and nodes ({rule.text()})", "",
             "| run | case | metric | GPUs | median | robust spread % | p5 | min | slow GPUs | slow nodes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary.itertuples(index=False):
        lines.append(f"| {s.run_id} | {s.case} | {s.metric} | {s.n_gpus} | {s.median:.4g} {s.unit} | "
                     f"{s.spread_pct:.2g} | {s.p5:.4g} | {s.min:.4g} | {s.slow_gpus} | {s.slow_nodes} |")
    if len(found):
        lines += ["", f"Worst {min(n, len(found))} of {len(found)} (nodes first, then GPUs on nodes that are not slow):", ""]
        for kind in ("node", "gpu"):
            part = worst(found[found["kind"] == kind], n)
            lines += [f"- {o.case} {o.metric}: {describe(o)}" for o in part.itertuples(index=False)]
    return "\n".join(lines) + "\n"
