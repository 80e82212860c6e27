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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aifbench.analysis.data import case_label
from aifbench.analysis.references import Reference
from aifbench.analysis.checks import Check, Slot
from aifbench.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What the run meant to do: its cases (case id -> label, plan order) and its world size."""

    cases: dict[str, str]
    world_size: int


def read_plan(runs: pd.DataFrame, run_id: str, metrics: pd.DataFrame | None = None,
              plan_file: Path | None = None) -> RunPlan:
    """The plan every rank recorded (runs.config: its cases; runs.world_size), the union over
    ranks and array tasks. Without runs rows (Slurm tasks that died before writing any; `collect`
    wrote failed metrics rows for them): the cases of `plan_file` (the run's plan.json) and the
    world size of the metrics rows. ConfigError (one line) when neither can be read."""
    why = f"run {run_id}: its plan cannot be read, so validate cannot tell which cases and ranks to expect"
    if len(runs):
        texts, where = list(dict.fromkeys(runs["config"].dropna())), "runs.config"
        world = int(runs["world_size"].max())
        if metrics is not None and len(metrics):  # a rank whose runs row is lost still said how many ranks ran
            world = max(world, int(metrics["world_size"].max()))
    elif plan_file is not None and plan_file.is_file() and metrics is not None and len(metrics):
        try:
            texts, where = [json.dumps(_plan_cases(json.loads(plan_file.read_text())))], plan_file.name
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{why} (no runs rows, and {plan_file}: {type(exc).__name__}: {exc})") from None
        world = int(metrics["world_size"].max())
    else:
        raise ConfigError(f"{why} (no runs rows: every runs.rank*.parquet shard is missing or unreadable)")
    cases = _cases([str(t) for t in texts], f"{why} ({where} is not a plan with cases")
    return RunPlan(cases, world)


def _plan_cases(data: dict) -> dict:
    """{"cases": [...]} of a plan.json: Plan.to_json's suite_cases, or an earlier plan's suite_config
    (that reading is a compatibility shim: it stays until release 0.2.0)."""
    return data["suite_config"] if "suite_config" in data else {"cases": data["suite_cases"]}


def _cases(texts: list[str], error: str) -> dict[str, str]:
    """case id -> label of every case listed in these JSON plans (Suite.config_dict())."""
    from aifbench.config import Case

    cases: dict[str, str] = {}
    for text in texts:
        try:
            for i, c in enumerate(json.loads(text)["cases"]):
                params = c["params"]
                case_id = c.get("case_id") or Case(index=i, benchmark=c["benchmark"], params=params).case_id
                cases.setdefault(str(case_id), case_label(c["benchmark"], json.dumps(params, sort_keys=True), limit=None))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{error}: {type(exc).__name__}: {exc})") from None
    if not cases:
        raise ConfigError(f"{error}: it lists no cases)")
    return cases


def missing_ranks(plan: RunPlan, metrics: pd.DataFrame) -> dict[str, list[int]]:
    """case id -> the ranks with no row of it (a rank has a case when it stored any row of it:
    ok, failed or skipped), for every case of the plan missing somewhere, in plan order."""
    ranks = (metrics.groupby("case_id", observed=True)["rank"].agg(lambda r: set(int(x) for x in r)).to_dict()
             if len(metrics) else {})
    expected = set(range(plan.world_size))
    out = {case_id: sorted(expected - ranks.get(case_id, set())) for case_id in plan.cases}
    return {case_id: missing for case_id, missing in out.items() if missing}


def missing_provenance(plan: RunPlan, runs: pd.DataFrame) -> list[int]:
    """The ranks 0 .. world_size - 1 of the plan with no runs row (provenance: which node, which
    GPU model): what such a rank measured cannot be checked against the system's GPU model."""
    have = set(int(r) for r in runs["rank"].dropna()) if len(runs) else set()
    return sorted(set(range(plan.world_size)) - have)


def completeness_checks(plan: RunPlan, metrics: pd.DataFrame, runs: pd.DataFrame,
                        unreadable: list[tuple[Path, str]] = ()) -> list[Check]:
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


def _run_notes(runs: pd.DataFrame, unreadable: list[tuple[Path, str]]) -> str:
    """Ranks whose runs row is not ok/failed (interrupted, still running) and unreadable shards."""
    notes = [f"run status {status} on rank(s) {', '.join(str(r) for r in sorted(part['rank']))}"
             for status, part in runs.groupby("status", observed=True) if status not in ("ok", "failed")]
    if unreadable:
        notes.append("unreadable shard(s), counted as missing: " + "; ".join(f"{Path(p).name}: {why}"
                                                                             for p, why in unreadable))
    return "; ".join(notes)


def selected(ref: Reference, skus: dict[Slot, str | None]) -> bool:
    """Whether `ref` applies to a GPU model some rank of the run ran on (no gpu list: any)."""
    return not ref.gpus or any(ref.applies_to(sku) for sku in skus.values())


def references_judged_check(refs: list[Reference], checks: list[Check], skus: dict[Slot, str | None]) -> Check:
    """Incomplete when a selected reference (see `selected`) judged nothing; `checks` are the
    reference checks in the order of `refs`."""
    left = [c for ref, c in zip(refs, checks) if c.status == "skip" and selected(ref, skus)]
    name = "complete: every reference that applies to the run judged"
    n = sum(selected(ref, skus) for ref in refs)
    if left:
        return Check("complete", name, "incomplete", f"{len(left)} of {n} reference(s) not judged: "
                     + "; ".join(f"{c.name.removeprefix('reference: ')}: {c.message}" for c in left))
    return Check("complete", name, "pass", f"all {n} reference(s) that apply judged")
