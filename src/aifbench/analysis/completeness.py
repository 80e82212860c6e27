"""validate's completeness: every case of the run's plan on every rank, every selected reference judged.

A run is complete when every case of the plan its ranks recorded (runs.config: the cases with
their ids, the union over ranks and array tasks) has rows from every rank 0 .. world_size - 1
(runs.world_size); a rank "has" a case when it stored any row of it (ok, failed or skipped), so
missing, empty or unreadable shards count as missing. It is fully judged when every reference
that applies to a GPU model the run ran on judged at least one row. Otherwise validate's
verdict is INCOMPLETE (validate.Report.verdict). A plan that cannot be read is a ConfigError
(one line, exit 2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aifbench.analysis.data import case_label
from aifbench.analysis.references import LAYOUT_KEYS, Reference
from aifbench.analysis.checks import Check, Slot
from aifbench.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What the run meant to do: its cases (case id -> label, plan order) and its world size."""

    cases: dict[str, str]
    world_size: int
    params: dict[str, tuple[str, str]] = field(default_factory=dict)
    """case id -> (benchmark, parameters JSON) of every planned case"""


def read_plan(runs: pd.DataFrame, run_id: str, metrics: pd.DataFrame | None = None,
              plan_file: Path | None = None) -> RunPlan:
    """The plan every rank recorded (runs.config: its cases; runs.world_size), the union over
    ranks and array tasks. Without runs rows (Slurm tasks that died before writing any; `collect`
    wrote failed metrics rows for them): the cases of `plan_file` (the run's plan.json) and the
    world size of the metrics rows. ConfigError (one line) when neither can be read."""
    why = f"run {run_id}: its plan cannot be read, so validate cannot tell which cases and ranks to expect"
    if len(runs):
        texts, where = list(pd.unique(runs["config"].dropna())), "runs.config"  # per distinct text, not per rank
        world = int(runs["world_size"].max())
        if metrics is not None and len(metrics) and "world_size" in metrics:  # a rank whose runs row is lost still said how many ranks ran
            world = max(world, int(metrics["world_size"].max()))
    elif plan_file is not None and plan_file.is_file() and metrics is not None and len(metrics):
        try:
            texts, where = [json.dumps(_plan_cases(json.loads(plan_file.read_text())))], plan_file.name
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{why} (no runs rows, and {plan_file}: {type(exc).__name__}: {exc})") from None
        world = int(metrics["world_size"].max())
    else:
        raise ConfigError(f"{why} (no runs rows: every runs.rank*.parquet shard is missing or unreadable)")
    params: dict[str, tuple[str, str]] = {}
    cases = _cases([str(t) for t in texts], f"{why} ({where} is not a plan with cases", params)
    return RunPlan(cases, world, params)


def _plan_cases(data: dict[str, Any]) -> dict[str, Any]:
    """{"cases": [...]} of a plan.json: Plan.to_json's suite_cases, or an earlier plan's suite_config
    (that reading is a compatibility shim: it stays until release 0.2.0)."""
    return data["suite_config"] if "suite_config" in data else {"cases": data["suite_cases"]}


def _cases(texts: list[str], error: str, params_out: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """case id -> label of every case listed in these JSON plans (Suite.config_dict()); `params_out`
    gets case id -> (benchmark, parameters JSON)."""
    from aifbench.config import Case

    cases: dict[str, str] = {}
    for text in texts:
        try:
            for i, c in enumerate(json.loads(text)["cases"]):
                params = c["params"]
                case_id = c.get("case_id") or Case(index=i, benchmark=c["benchmark"], params=params).case_id
                cases.setdefault(str(case_id), case_label(c["benchmark"], json.dumps(params), limit=None))
                if params_out is not None:
                    params_out.setdefault(str(case_id), (str(c["benchmark"]), json.dumps(params)))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{error}: {type(exc).__name__}: {exc})") from None
    if not cases:
        raise ConfigError(f"{error}: it lists no cases)")
    return cases


def missing_ranks(plan: RunPlan, metrics: pd.DataFrame) -> dict[str, list[int]]:
    """case id -> the ranks with no row of it (a rank has a case when it stored any row of it:
    ok, failed or skipped), for every case of the plan missing somewhere, in plan order."""
    pairs = metrics[["case_id", "rank"]].dropna().drop_duplicates() if len(metrics) else metrics
    ranks = ({str(c): set(r.astype("int64").tolist()) for c, r in pairs.groupby("case_id", observed=True)["rank"]}
             if len(pairs) else {})
    expected = set(range(plan.world_size))
    out = {case_id: sorted(expected - ranks.get(case_id, set())) for case_id in plan.cases}
    return {case_id: missing for case_id, missing in out.items() if missing}


def missing_provenance(plan: RunPlan, runs: pd.DataFrame) -> list[int]:
    """The ranks 0 .. world_size - 1 of the plan with no runs row (provenance: which node, which
    GPU model): what such a rank measured cannot be checked against the system's GPU model."""
    have = set(int(r) for r in runs["rank"].dropna()) if len(runs) else set()
    return sorted(set(range(plan.world_size)) - have)


def completeness_checks(plan: RunPlan, metrics: pd.DataFrame, runs: pd.DataFrame,
                        unreadable: Sequence[tuple[Path, str]] = ()) -> list[Check]:
    """One check for the whole plan, one per case missing on some rank, and one when some rank of
    the plan has no runs row (its provenance is lost: the ranks come from the plan, not the rows)."""
    out = []
    lost = missing_provenance(plan, runs)
    if lost:
        shown = ", ".join(map(str, lost[:20])) + (f" (+{len(lost) - 20} more)" if len(lost) > 20 else "")
        out.append(Check("complete", "complete: a runs row (provenance) from every rank", "incomplete",
                         f"no runs row from {len(lost)} of {plan.world_size} rank(s): {shown}; their node and "
                         "GPU model are unknown"))
    for case_id, missing in missing_ranks(plan, metrics).items():
        label = plan.cases[case_id]
        where = (f"never ran: no rows from any of its {plan.world_size} rank(s)" if len(missing) == plan.world_size
                 else f"no rows from rank(s) {', '.join(map(str, missing))} of {plan.world_size}")
        out.append(Check("complete", f"complete: {label}", "incomplete", f"{where} ({case_id})"))
    notes = _run_notes(runs, unreadable)
    name = "complete: every case of the plan on every rank"
    if out or unreadable:
        cases = len(out) - bool(lost)
        msg = (f"{cases} of {len(plan.cases)} case(s) missing on some rank"
               + (f"; {len(lost)} rank(s) without a runs row" if lost else "") + (f"; {notes}" if notes else ""))
        return [Check("complete", name, "incomplete", msg)] + out
    msg = f"all {len(plan.cases)} case(s) on all {plan.world_size} rank(s)" + (f"; {notes}" if notes else "")
    return [Check("complete", name, "pass", msg)]


def _run_notes(runs: pd.DataFrame, unreadable: Sequence[tuple[Path, str]]) -> str:
    """Ranks whose runs row is not ok/failed (interrupted, still running) and unreadable shards."""
    notes = [f"run status {status} on rank(s) {', '.join(str(r) for r in sorted(part['rank']))}"
             for status, part in runs.groupby("status", observed=True) if status not in ("ok", "failed")]
    if unreadable:
        notes.append("unreadable shard(s), counted as missing: " + "; ".join(f"{Path(p).name}: {why}"
                                                                             for p, why in unreadable))
    return "; ".join(notes)


def not_planned(ref: Reference, plan: RunPlan) -> str:
    """Why `ref` is not the run's to meet ('' when it is): a reference judges only benchmarks the
    run planned. A run that planned the benchmark is held to it whatever sizes it chose (smaller
    cases leave the reference unjudged: INCOMPLETE), unless every planned case of it lacks a
    parameter the reference names: then the run was recorded before that parameter existed."""
    if not plan.params:  # a plan without parameters (never written so): judge as before
        return ""
    own = [json.loads(p) for b, p in plan.params.values() if b == ref.benchmark]
    if not own:
        return f"not planned: the run planned no {ref.benchmark} case"
    names = [k for k in (*ref.params, *ref.params_min) if k not in LAYOUT_KEYS]
    older = sorted({k for p in own for k in names if k not in p})
    if older and all(any(k not in p for k in names) for p in own):
        return (f"recorded before parameter(s) {', '.join(older)} existed: none of the run's {len(own)} "
                f"{ref.benchmark} case(s) can be one this reference judges")
    return ""


def selected(ref: Reference, skus: dict[Slot, str | None], plan: RunPlan | None = None) -> bool:
    """Whether `ref` applies to the run: to a GPU model some rank ran on (no gpu list: any), and
    to a case the run planned (not_planned)."""
    on_gpu = not ref.gpus or any(ref.applies_to(sku) for sku in skus.values())
    return on_gpu and (plan is None or not not_planned(ref, plan))


def references_judged_check(refs: list[Reference], checks: list[Check], skus: dict[Slot, str | None],
                            plan: RunPlan | None = None, not_for_run: list[str] | None = None) -> Check:
    """Incomplete when a selected reference (see `selected`) judged nothing; `checks` are the
    reference checks in the order of `refs`; `not_for_run` (same order) says why a reference is
    not the run's to meet ('' where it is): not planned, or recorded before its metric."""
    why = not_for_run or [""] * len(refs)
    applies = [selected(ref, skus, plan) and not w for ref, w in zip(refs, why)]
    left = [c for c, a in zip(checks, applies) if a and c.status == "skip"]
    name = "complete: every reference that applies to the run judged"
    n = sum(applies)
    if left:
        return Check("complete", name, "incomplete", f"{len(left)} of {n} reference(s) not judged: "
                     + "; ".join(f"{c.name.removeprefix('reference: ')}: {c.message}" for c in left))
    return Check("complete", name, "pass", f"all {n} reference(s) that apply judged")
