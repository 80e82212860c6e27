"""An operator's acceptance of a partition: references, outliers, telemetry flags, drift.

Verdict: FAIL when any check fails; else INCOMPLETE when the run is not complete or a reference
that applies was not judged (completeness.py); else INCONCLUSIVE when a reference judged on a
stored 95 % interval straddles its bound (intervals.py); else PASS. Exit 0 only for PASS.
Checks, each pass / fail / skip / inconclusive / incomplete:
- complete: every case of the run's plan (runs.config) has rows from every rank of its world
  size (runs.world_size); missing, empty or unreadable shards count as missing; and every
  selected reference (one that applies to a GPU model the run ran on) was judged
- ran: every case ended ok (failed cases fail, skipped cases are skipped)
- reference: each [[reference]] (references.py) against every rank's value; the failing ranks
  are named with node, device and GPU UUID
- outliers: per GPU (ranks) and per node (median over its ranks), outliers.py's rule (robust
  z-score beyond OUTLIER_Z in the bad direction AND at least `min_deviation_pct` from the
  median) fails, naming the slow node, or the slow GPU on a node that is not slow, with node,
  device, UUID and deviation; the worst outliers.WORST are named, the rest counted
- drift (with a baseline): compare.py's test on raw samples; a significantly worse median fails
Telemetry validity flags (the metrics `flags` column) are honoured: flagged rows are excluded
(default), fail their check, or are used anyway.
"""

from __future__ import annotations

import math

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aifbench import metrics as metric_dict
from aifbench.analysis import intervals, legacy, outliers
from aifbench.analysis.checks import Check, Slot, slot  # noqa: F401  (re-exported: validate.Check)
from aifbench.analysis.completeness import (completeness_checks, not_planned, read_plan, references_judged_check,
                                           selected)
from aifbench.analysis.compare import CompareOptions, compare
from aifbench.analysis.data import Selection, case_label, headline, text_values
from aifbench.analysis.references import Reference, check_names
from aifbench.analysis.stats import OUTLIER_Z
from aifbench.errors import ConfigError, one_of
from aifbench.results.store import Results

log = logging.getLogger(__name__)

FLAG_POLICIES = ("exclude", "fail", "ignore")


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidateOptions:
    flags: str = "exclude"
    """rows with telemetry validity flags: exclude them, fail their check, or ignore the flags"""
    min_deviation_pct: float = 5.0
    """an outlier must also be this far (%) from the median: robust z alone flags tiny spreads"""
    outlier_z: float = OUTLIER_Z
    alpha: float = 0.05
    strict: bool = False
    """a reference that judges nothing in the run (skip) fails: acceptance must measure everything"""


@dataclass
class Report:
    run_id: str
    system: str
    checks: list[Check] = field(default_factory=list)
    refs_elsewhere: int = 0
    """references for GPU models the run did not run on (not selected: skipped, not unjudged)"""
    refs_unplanned: int = 0
    """references to benchmarks or parameters the run did not plan (not selected either)"""

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def incomplete(self) -> list[Check]:
        return [c for c in self.checks if c.status == "incomplete"]

    @property
    def inconclusive(self) -> list[Check]:
        """Checks whose interval straddles a bound: judged neither pass nor fail."""
        return [c for c in self.checks if c.status == intervals.INCONCLUSIVE]

    @property
    def verdict(self) -> str:
        """FAIL (a check failed), INCOMPLETE (cases, ranks or references missing), INCONCLUSIVE (some
        interval straddles a bound), else PASS."""
        if self.failed:
            return "FAIL"
        return "INCOMPLETE" if self.incomplete else "INCONCLUSIVE" if self.inconclusive else "PASS"

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == "PASS" else 1

    def summary(self) -> str:
        """'3 passed, 1 failed, 1 inconclusive, 2 skipped, 1 incomplete; references: 4 of 7 judged,
        1 left unjudged, 1 for other GPUs' (an inconclusive reference is not counted as judged)."""
        refs = [c for c in self.checks if c.kind == "reference"]
        judged = sum(c.status in ("pass", "fail") for c in refs)
        unsure = f", {len(self.inconclusive)} inconclusive" if self.inconclusive else ""
        text = (f"{sum(c.status == 'pass' for c in self.checks)} passed, {len(self.failed)} failed{unsure}, "
                f"{sum(c.status == 'skip' for c in self.checks)} skipped")
        text += f", {len(self.incomplete)} incomplete" if self.incomplete else ""
        text += f"; references: {judged} of {len(refs)} judged"
        unjudged = sum(c.status == "skip" for c in refs) - self.refs_elsewhere - self.refs_unplanned
        text += f", {unjudged} left unjudged" if unjudged else ""
        text += (f", {self.refs_unplanned} not for this run (cases it did not plan, or recorded before the "
                 f"metric)" if self.refs_unplanned else "")
        return text + (f", {self.refs_elsewhere} for other GPUs" if self.refs_elsewhere else "")


def gpu_skus(runs: pd.DataFrame) -> dict[Slot, str | None]:
    """(rank, node) -> hardware catalog id of its device (exact name / PCI id match), None if unknown."""
    try:
        from aifbench.hardware import catalog
    except ImportError:
        return {}
    cat = catalog.load()
    out: dict[Slot, str | None] = {}
    for r in runs.itertuples(index=False):
        pci = None if pd.isna(r.gpu_pci_device_id) else r.gpu_pci_device_id
        m = cat.match(name=r.device_name, pci_device_id=pci, device=r.device)
        out[slot(r)] = m.entry.id if m.entry else None
    return out


def _tdps(skus: dict[Slot, str | None]) -> dict[Slot, float | None]:
    """(rank, node) -> datasheet TDP in W of its GPU model (None: not in the catalog or no figure)."""
    from aifbench.hardware import catalog

    cat = catalog.load()
    return {key: (cat.get(sku).peak("tdp_w")[0] if sku else None) for key, sku in skus.items()}


def _where(r: Any, uuids: dict[Slot, str]) -> str:  # r: a row of DataFrame.itertuples
    uuid = uuids.get(slot(r))
    return f"rank {r.rank} ({r.node} {r.device}{' ' + uuid if uuid else ''})"


def _flag_filter(rows: pd.DataFrame, opts: ValidateOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to use, flagged rows) under the flag policy; only invalidating flags count (a note such
    as telemetry_insufficient leaves the row in)."""
    from aifbench.telemetry.fields import invalidating

    flags = rows["flags"].astype(object).where(rows["flags"].notna(), None)
    verdict = {f: bool(invalidating(f)) for f in pd.unique(flags)}  # once per distinct text, not per row
    flagged = flags.map(verdict).astype(bool)
    if opts.flags == "ignore":
        return rows, rows.iloc[0:0]
    return rows[~flagged], rows[flagged]


def ran_checks(metrics: pd.DataFrame) -> list[Check]:
    out = []
    for case_id, part in metrics.groupby("case_id", sort=True):
        label = case_label(part["benchmark"].iloc[0], part["params"].iloc[0], limit=None)
        bad = part[part["status"] == "failed"].drop_duplicates("rank")
        skipped = part[part["status"] == "skipped"].drop_duplicates("rank")
        if len(bad):
            msg = "; ".join(f"rank {r.rank} ({r.node}): {r.reason}" for r in bad.itertuples(index=False))
            out.append(Check("ran", f"ran: {label}", "fail", f"failed on {len(bad)} rank(s): {msg}"))
        elif len(skipped):
            out.append(Check("ran", f"ran: {label}", "skip", f"skipped: {skipped['reason'].iloc[0]}"))
        else:
            out.append(Check("ran", f"ran: {label}", "pass",
                             f"ok on {part['rank'].nunique()} of {int(part['world_size'].max())} rank(s)"))
    return out


def _bound_failures(ref: Reference, rows: pd.DataFrame, uuids: dict[Slot, str]) -> tuple[list[str], list[str]]:
    """(failure texts, reasons a rank could not be judged)."""
    fails, unjudged = [], []
    for r in rows.itertuples(index=False):
        v = float(r.value)
        if not math.isfinite(v):  # the store refuses these; a value that got in anyway never passes
            fails.append(f"{_where(r, uuids)} {v} {r.unit} is not a finite number")
            continue
        if ref.fraction_of_peak is not None:
            if pd.isna(r.peak) or not r.peak:
                unjudged.append(f"{_where(r, uuids)}: no datasheet peak ({r.peak_source or 'unknown device'})")
            elif v < ref.fraction_of_peak * r.peak:
                fails.append(f"{_where(r, uuids)} {v:.4g} {r.unit} = {100 * v / r.peak:.1f} % of peak "
                             f"{r.peak:g} < {100 * ref.fraction_of_peak:g} %")
        if ref.lower is not None and v < ref.lower:
            fails.append(f"{_where(r, uuids)} {v:.4g} {r.unit} < lower {ref.lower:g}")
        if ref.upper is not None and v > ref.upper:
            fails.append(f"{_where(r, uuids)} {v:.4g} {r.unit} > upper {ref.upper:g}")
    return fails + median_floor_failures(ref, rows, uuids), unjudged


def median_floor_failures(ref: Reference, rows: pd.DataFrame, uuids: dict[Slot, str]) -> list[str]:
    """`min_pct_of_median`: the ranks below that % of their case's partition median, worst first
    (outliers.WORST named, the rest counted)."""
    if ref.min_pct_of_median is None or not len(rows):
        return []
    low = outliers.below_median(rows, ref.min_pct_of_median)
    low = low.reindex((low["pct_of_median"] - 100).abs().sort_values(ascending=False).index)
    out = [f"{_where(r, uuids)} {r.value:.4g} {r.unit} = {r.pct_of_median:.1f} % of the partition median "
           f"{r.median:.4g} < {ref.min_pct_of_median:g} %" for r in low.head(outliers.WORST).itertuples(index=False)]
    if len(low) > outliers.WORST:
        out.append(f"and {len(low) - outliers.WORST} more GPU(s) below {ref.min_pct_of_median:g} % of the median")
    return out


def case_layouts(metrics: pd.DataFrame) -> dict[str, dict[str, int]]:
    """case_id -> {nodes, ranks_per_node, world_size}: where the case ran (references.LAYOUT_KEYS)."""
    out = {}
    for case_id, part in metrics.groupby("case_id", sort=False):
        per_node = part.drop_duplicates("rank").groupby("node")["rank"].count()
        out[str(case_id)] = {"nodes": int(len(per_node)), "ranks_per_node": int(per_node.min()),
                             "world_size": int(part["world_size"].max())}
    return out


def _unmatched(ref: Reference, rows: pd.DataFrame, matched: pd.DataFrame, skus: dict[Slot, str | None]) -> str:
    """Why no row is judged by `ref`: nothing measured, other parameters, or other GPUs."""
    if not len(rows):
        return f"no ok {ref.benchmark} {ref.metric} ({ref.stat}) rows in this run"
    if not len(matched):
        return (f"none of the run's {rows['case_id'].nunique()} {ref.benchmark} case(s) with ok {ref.metric} "
                f"rows has these parameters")
    seen = sorted({str(skus.get(slot(r))) for r in matched.itertuples(index=False)})
    return f"measured on {', '.join(seen)} only; this reference applies to {'/'.join(ref.gpus)}"


STANDS_FOR_MEDIAN = ("mean", "value")
"""what a median reference judges where a row has no median: tools that print one figure per case
(imported nccl-tests: the mean over iterations; STREAM: the rate at the average time)"""


def _stat_rows(ref: Reference, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of ref.stat; for a median reference also the mean (else value) row of each
    (run, case, rank) that has no median row."""
    own = rows[rows["stat"] == ref.stat]
    if ref.stat != "median":
        return own
    def keys(df: pd.DataFrame) -> pd.MultiIndex:  # (run, case, rank) as text, matched by index, not per row
        return pd.MultiIndex.from_arrays([text_values(df[k]) for k in ("run_id", "case_id", "rank")])

    have = keys(own)
    for stat in STANDS_FOR_MEDIAN:
        extra = rows[rows["stat"] == stat]
        extra = extra[~keys(extra).isin(have)] if len(extra) else extra
        if len(extra):
            own = pd.concat([own, extra])
            have = have.append(keys(extra))
    return own


def predates(ref: Reference, metrics: pd.DataFrame, layouts: dict[str, dict[str, int]]) -> str:
    """Why `ref` cannot judge a run recorded before its metric or statistic existed ('' when it
    can): the cases it judges ran ok, but stored no `ref.metric` at all, or only other statistics
    of it (an earlier protocol). Such a reference is said so and not counted against the run."""
    if not len(metrics):
        return ""
    mine = metrics[(metrics["benchmark"] == ref.benchmark) & (metrics["status"] == "ok")]
    cases = mine[["params", "case_id"]].drop_duplicates()
    hit = {c for p, c in zip(cases["params"], cases["case_id"]) if ref.matches_params(str(p), layouts.get(str(c)))}
    if not hit:
        return ""
    rows = mine[mine["case_id"].isin(hit).to_numpy(dtype=bool) & (mine["metric"] == ref.metric).to_numpy(dtype=bool)]
    if not len(rows):
        return (f"recorded before {ref.metric} existed: its {len(hit)} matching case(s) ran ok without it "
                f"(a run made with today's code is judged)")
    stats = sorted(set(rows["stat"].astype(str)))
    if ref.stat == "median" and set(stats) & set(STANDS_FOR_MEDIAN):
        return ""  # judged on the one figure the tool printed (see _stat_rows)
    if ref.stat not in stats:
        return (f"recorded before {ref.metric} had stat {ref.stat}: the run stored it as {', '.join(stats)} "
                f"(an earlier protocol; a run made with today's code is judged)")
    return ""


def reference_check(ref: Reference, metrics: pd.DataFrame, skus: dict[Slot, str | None],
                    uuids: dict[Slot, str], opts: ValidateOptions,
                    layouts: dict[str, dict[str, int]] | None = None) -> Check:
    name = f"reference: {ref.describe()} {ref.criterion()}"
    rows = _stat_rows(ref, metrics[(metrics["benchmark"] == ref.benchmark) & (metrics["metric"] == ref.metric)
                                   & (metrics["status"] == "ok")])
    layouts = layouts if layouts is not None else case_layouts(metrics)
    # boolean masks as arrays: a plain empty list would select no columns instead of no rows
    cases = rows[["params", "case_id"]].drop_duplicates()  # once per case, not per rank
    hit = {c for p, c in zip(cases["params"], cases["case_id"]) if ref.matches_params(p, layouts.get(c))}
    matched = rows[rows["case_id"].isin(hit).to_numpy(dtype=bool)]
    slots = pd.MultiIndex.from_arrays([matched["rank"].astype(int).to_numpy(), text_values(matched["node"])])
    applies = {s: ref.applies_to(skus.get(s)) for s in slots.unique()}  # once per GPU, not per row
    judged = matched[np.array([applies[s] for s in slots], dtype=bool)]
    if not len(judged):
        return Check("reference", name, "skip", _unmatched(ref, rows, matched, skus))
    use, flagged = _flag_filter(judged, opts)
    if len(flagged) and opts.flags == "fail":
        return Check("reference", name, "fail", "telemetry flags: " + "; ".join(
            f"{_where(r, uuids)} [{r.flags}]" for r in flagged.itertuples(index=False)))
    if not len(use):
        return Check("reference", name, "skip", f"all {len(flagged)} row(s) excluded by telemetry flags")
    median = float(use["value"].median())
    unit = str(use["unit"].iloc[0])
    note = f"; {len(flagged)} flagged row(s) excluded" if len(flagged) else ""
    note += f"; source: {ref.source}" if ref.source else ""
    judged_interval = _interval_check(ref, use, metrics, uuids, name, note)
    if judged_interval is not None:
        return judged_interval
    fails, unjudged = _bound_failures(ref, use, uuids)
    if fails:
        return Check("reference", name, "fail", f"{len(fails)} of {len(use)} failed: " + "; ".join(fails) + note,
                     median, unit)
    if unjudged and len(unjudged) == len(use):
        return Check("reference", name, "skip", "; ".join(unjudged[:3]) + note, median, unit)
    peak = use["peak"].dropna()
    nominal = f" ({100 * median / ref.value:.1f} % of nominal {ref.value:g})" if ref.value else ""
    if len(peak) and ref.fraction_of_peak is not None:
        nominal += f" = {100 * median / float(peak.median()):.1f} % of peak {float(peak.median()):g}"
    return Check("reference", name, "pass", f"{len(use)} row(s) pass, median {median:.4g} {unit}{nominal}{note}",
                 median, unit)


def _interval_check(ref: Reference, use: pd.DataFrame, metrics: pd.DataFrame, uuids: dict[Slot, str],
                    name: str, note: str) -> Check | None:
    """The reference judged on each row's stored 95 % interval (analysis.intervals), or None where
    the rows have no interval (then their value is judged)."""
    if ref.lower is None and ref.upper is None and use["peak"].isna().any():
        return None  # fraction_of_peak without a peak: the point path says why it is unjudged
    rows = intervals.bounds_of(use, metrics)
    if rows is None:
        return None
    status, message = intervals.judge_rows(rows, ref.lower, ref.upper, ref.fraction_of_peak,
                                           lambda r: _where(r, uuids))
    return Check("reference", name, status, message + note, float(use["value"].median()), str(use["unit"].iloc[0]))


def gpu_check(expected: str, system: str, skus: dict[Slot, str | None], runs: pd.DataFrame) -> Check:
    """Whether every rank ran on the GPU model the system profile has: its references assume it."""
    name = f"gpu model: {system} has {expected}"
    names = {slot(r): str(r.device_name) for r in runs.itertuples(index=False)}
    other = {key: sku for key, sku in sorted(skus.items()) if sku != expected}
    if not skus:
        return Check("gpu", name, "skip", "the run has no provenance rows (runs table)")
    if not other:
        return Check("gpu", name, "pass", f"all {len(skus)} rank(s) on {expected}")
    seen = sorted({f"{sku or 'not in the catalog'} ({names.get(key, '?')})" for key, sku in other.items()})
    return Check("gpu", name, "fail", f"{len(other)} of {len(skus)} rank(s) ran on {', '.join(seen)}: "
                                      f"this run cannot accept a {system} partition")


def _figures(h: pd.DataFrame) -> pd.DataFrame:
    """Rows of the metrics that judge a case: figures of merit, or time when a case has nothing else."""
    merit = h["metric"].map(metric_dict.is_merit).astype(bool).to_numpy()  # bool: an empty object mask would select columns
    cases = set(pd.unique(h.loc[merit, "case_id"]))
    time = (~h["case_id"].isin(cases) & (h["metric"] == "time_s")).to_numpy(dtype=bool)
    return h.iloc[np.concatenate([np.flatnonzero(merit), np.flatnonzero(time)])]  # one copy, merit rows first


def outlier_checks(h: pd.DataFrame, uuids: dict[Slot, str], opts: ValidateOptions) -> list[Check]:
    """Per case and figure of merit: slow GPUs and slow nodes (outliers.py states the rule), the
    worst WORST named, the rest counted; a slow node's GPUs are named under the node."""
    use, _ = _flag_filter(_figures(h), opts)
    rule = outliers.Rule(z=opts.outlier_z, min_deviation_pct=opts.min_deviation_pct)
    summary, found = outliers.partition(use, uuids, rule)
    out = []
    by_key = {k: g for k, g in found.groupby(["case_id", "metric"], sort=False)} if len(found) else {}
    for s in summary.itertuples(index=False):
        o = by_key.get((s.case_id, s.metric), found.iloc[0:0])
        gpus, nodes = o[o["kind"] == "gpu"], o[o["kind"] == "node"]
        on_slow_nodes = int(nodes["slow_gpus_on_node"].sum()) if len(nodes) else 0
        extra = f"; {on_slow_nodes} more on the slow node(s) below" if on_slow_nodes else ""
        out.append(_outlier_check("outliers-gpu", f"outliers per GPU: {s.case} {s.metric}", gpus, s.n_gpus,
                                  "GPU", extra, s))
        if s.n_nodes >= 3:
            out.append(_outlier_check("outliers-node", f"outliers per node: {s.case} {s.metric}", nodes,
                                      s.n_nodes, "node", "", s))
    return out


def _outlier_check(kind: str, name: str, found: pd.DataFrame, n: int, what: str, extra: str, s: Any) -> Check:  # s: a row of the outlier summary's itertuples
    spread = f"median {s.median:.4g} {s.unit}, robust spread {s.spread_pct:.2g} %, min {s.min:.4g}"
    if not len(found):
        return Check(kind, name, "pass", f"no outlier among {n} {what}s ({spread})", s.median, s.unit)
    lines = [outliers.describe(o) for o in outliers.worst(found).itertuples(index=False)]
    more = f"; and {len(found) - len(lines)} more" if len(found) > len(lines) else ""
    return Check(kind, name, "fail", f"{len(found)} of {n} {what}s: " + "; ".join(lines) + more + extra
                 + f" [{spread}]", s.median, s.unit)


def drift_checks(sel: Selection, baseline: Results, describe: str, opts: ValidateOptions,
                 rows: pd.DataFrame | None = None) -> list[Check]:
    """`rows`: headline(sel.metrics) where the caller has it already."""
    table = compare(sel, CompareOptions(by="system", alpha=opts.alpha), baseline=baseline, rows=rows)
    out = []
    for r in table.itertuples(index=False):
        name = f"drift vs {describe}: {r.case} {r.metric}"
        if r.verdict in ("", "n/a"):
            out.append(Check("drift", name, "skip", f"baseline has no {r.metric} for this case"))
            continue
        msg = (f"{r.vs_baseline_pct:+.1f} % (95 % CI {r.ci_low_pct:+.1f} .. {r.ci_high_pct:+.1f} %), "
               f"Mann-Whitney p = {r.p_value:.3g}: {r.verdict}")
        out.append(Check("drift", name, "fail" if r.verdict == "worse" else "pass", msg, r.median, r.unit))
    return out


def validate(sel: Selection, refs: list[Reference], opts: ValidateOptions,
             baseline: tuple[str, Results] | None = None, expected_gpu: str | None = None,
             system: str | None = None, plan_file: Path | None = None,
             throttle_reasons: dict[tuple[str, int], set[str] | None] | None = None) -> Report:
    """All checks of one run (the selection holds exactly that run). `system`: the profile the
    references come from (default: the run's); `expected_gpu`: the catalog id its nodes carry,
    which every rank is checked to have run on; `plan_file`: the run's plan.json, read when no
    runs row is left (completeness.read_plan)."""
    if opts.flags not in FLAG_POLICIES:
        raise one_of("flag policy", opts.flags, FLAG_POLICIES)

    check_names(refs)
    metrics = sel.metrics
    runs = sel.results.tables["runs"]
    run_ids = sorted(set(pd.unique(metrics["run_id"])) | set(pd.unique(runs["run_id"])))  # not a set of 10^7 rows
    if len(run_ids) != 1:
        raise ConfigError(f"validate takes one run, got {len(run_ids)}: {', '.join(run_ids[:5])}")
    plan = read_plan(runs, run_ids[0], metrics, plan_file)
    uuids = {slot(r): str(r.gpu_uuid) for r in runs.itertuples(index=False) if not pd.isna(r.gpu_uuid)}
    skus = gpu_skus(runs)
    metrics = legacy.translate(metrics, runs, _tdps(skus), throttle_reasons)  # runs before the validity model
    system = system or str((metrics if len(metrics) else runs)["system"].iloc[0])
    unreadable = [(p, why) for p, why in sel.skipped if run_ids[0] in Path(p).parts]  # this run's shards only
    report = Report(run_ids[0], system, completeness_checks(plan, metrics, runs, unreadable))
    report.checks += ran_checks(metrics)
    if expected_gpu is not None:
        report.checks.append(gpu_check(expected_gpu, system, skus, runs))
    layouts = case_layouts(metrics)
    unplanned = [not_planned(ref, plan) or predates(ref, metrics, layouts) for ref in refs]
    checks = [Check("reference", f"reference: {ref.describe()} {ref.criterion()}", "skip", why) if why
              else reference_check(ref, metrics, skus, uuids, opts, layouts) for ref, why in zip(refs, unplanned)]
    if opts.strict:  # --strict fails what the run planned but did not judge, not what it never meant to run
        checks = [Check(c.kind, c.name, "fail", f"strict: not judged: {c.message}", c.value, c.unit)
                  if c.status == "skip" and not why else c for c, why in zip(checks, unplanned)]
    report.refs_elsewhere = sum(c.status == "skip" and not selected(ref, skus) for ref, c in zip(refs, checks))
    report.refs_unplanned = sum(bool(why) and selected(ref, skus) for ref, why in zip(refs, unplanned))
    report.checks.insert(1, references_judged_check(refs, checks, skus, plan, unplanned))
    report.checks += checks
    h = headline(metrics)
    if not len(h):  # no case ended ok (e.g. stopped before the first): nothing to compare
        return report
    report.checks += outlier_checks(h, uuids, opts)
    if baseline is not None:
        report.checks += drift_checks(sel, baseline[1], baseline[0], opts, rows=h)
    return report


# --- output ---------------------------------------------------------------------------------

def to_markdown(report: Report) -> str:
    lines = [f"# aifbench validate: run {report.run_id} on {report.system}: {report.verdict}", "",
             report.summary(), "",
             "| status | check | detail |", "|---|---|---|"]
    for c in report.checks:
        lines.append(f"| {c.status} | {_md(c.name)} | {_md(c.message)} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_junit(report: Report) -> str:
    """JUnit XML (the schema Jenkins / GitLab read): one testsuite per check kind; an incomplete
    check is an <error type="incomplete">; the verdict and summary are in the root's name."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name=f"aifbench validate {report.run_id}: {report.verdict} ({report.summary()})",
                      tests=str(len(report.checks)), failures=str(len(report.failed) + len(report.inconclusive)),
                      errors=str(len(report.incomplete)))
    kinds: dict[str, list[Check]] = {}
    for c in report.checks:
        kinds.setdefault(c.kind, []).append(c)
    for kind, checks in kinds.items():
        suite = ET.SubElement(root, "testsuite", name=f"{report.system}.{kind}", tests=str(len(checks)),
                              failures=str(sum(c.status in ("fail", intervals.INCONCLUSIVE) for c in checks)),
                              skipped=str(sum(c.status == "skip" for c in checks)),
                              errors=str(sum(c.status == "incomplete" for c in checks)))
        for c in checks:
            case = ET.SubElement(suite, "testcase", name=c.name, classname=f"aifbench.{report.system}.{kind}")
            if c.status in ("fail", intervals.INCONCLUSIVE):  # inconclusive is not a pass
                ET.SubElement(case, "failure", message=c.message[:500],
                              type=kind if c.status == "fail" else "inconclusive").text = c.message
            elif c.status == "incomplete":
                ET.SubElement(case, "error", message=c.message[:500], type="incomplete").text = c.message
            elif c.status == "skip":
                ET.SubElement(case, "skipped", message=c.message[:500])
            else:
                ET.SubElement(case, "system-out").text = c.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
