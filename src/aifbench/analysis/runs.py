"""One line per run of a store: what ran, where, how it ended, and whether it is complete.

status (of the whole run, from its ranks' runs rows and its metrics rows):
- running: a rank's runs row still says running (in progress, or killed without cleanup)
- interrupted: a rank stopped before its last case
- incomplete: every rank that wrote a runs row ended, but cases or ranks of the plan have no
  metrics rows (a missing, empty or unreadable shard; a lost array task)
- failed: complete, and a case failed; ok: complete, every case ok or skipped
`complete` is True for ok and failed. compare and report pool only complete runs unless asked.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aifbench.analysis.completeness import RunPlan, missing_provenance, missing_ranks, read_plan
from aifbench.errors import ConfigError
from aifbench.results import store
from aifbench.results.store import Results

INCOMPLETE = ("running", "interrupted", "incomplete")


def _plan(ranks: pd.DataFrame, cases: pd.DataFrame) -> RunPlan | None:
    """The plan the ranks recorded (completeness.read_plan); None when it cannot be read."""
    try:
        return read_plan(ranks, str(ranks["run_id"].iloc[0]), cases)
    except ConfigError:
        return None


def _status(ranks: pd.DataFrame, cases: pd.DataFrame, plan: RunPlan | None) -> str:
    """The completeness rule is validate's (completeness.missing_ranks); without a readable plan
    (older runs) only the ranks of the runs rows are checked against the world size."""
    states = set(ranks["status"].astype(str))
    if "interrupted" in states:
        return "interrupted"
    if "running" in states:
        return "running"
    world = int(ranks["world_size"].max())
    if ranks["rank"].nunique() < world or (plan is not None and missing_ranks(plan, cases)):
        return "incomplete"
    if plan is not None and missing_provenance(plan, ranks):  # ranks the metrics rows say ran, without runs rows
        return "incomplete"
    return "failed" if "failed" in states or (cases["status"] == "failed").any() else "ok"


def summary(results: Results) -> pd.DataFrame:
    """One row per run, newest first: run_id, suite, system, status, complete, ranks, world_size,
    cases (planned), ok, failed, skipped (cases by their worst status over ranks), started_utc,
    duration_s (first start to last end over ranks; empty while running). Kept with `results`
    while its tables are the same frames (report and compare ask up to five times)."""
    runs, metrics = results.tables["runs"], results.tables["metrics"]
    kept = results.__dict__.get("_summary")
    if kept is not None and kept[0] is runs and kept[1] is metrics:
        return kept[2].copy()
    table = _summary(runs, metrics)
    results.__dict__["_summary"] = (runs, metrics, table)
    return table.copy()


def _summary(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for run_id, ranks in runs.groupby("run_id"):
        cases = metrics[metrics["run_id"] == run_id]
        worst = cases.drop_duplicates(["case_id", "rank"]).groupby("case_id")["status"].agg(
            lambda s: "failed" if (s == "failed").any() else "skipped" if (s == "skipped").all() else "ok")
        first = ranks.sort_values("rank").iloc[0]
        started, ended = ranks["started_utc"].min(), ranks["ended_utc"].max()
        plan = _plan(ranks, cases)
        status = _status(ranks, cases, plan)
        rows.append({"run_id": str(run_id), "suite": first["suite"], "system": first["system"], "status": status,
                     "complete": status not in INCOMPLETE, "ranks": int(ranks["rank"].nunique()),
                     "world_size": int(ranks["world_size"].max()),
                     "cases": len(plan.cases) if plan else None, "ok": int((worst == "ok").sum()),
                     "failed": int((worst == "failed").sum()), "skipped": int((worst == "skipped").sum()),
                     "started_utc": started,
                     "duration_s": None if pd.isna(ended) or status == "running" else (ended - started).total_seconds(),
                     "device_name": first["device_name"]})
    cols = ["run_id", "suite", "system", "status", "complete", "ranks", "world_size", "cases", "ok", "failed",
            "skipped", "started_utc", "duration_s", "device_name"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values("started_utc", ascending=False, kind="stable").reset_index(drop=True)


def incomplete(results: Results) -> dict[str, str]:
    """run_id -> status of the runs that are not complete (running, interrupted, incomplete)."""
    s = summary(results)
    return dict(zip(s.loc[~s["complete"], "run_id"], s.loc[~s["complete"], "status"]))


def load_store(root: Path) -> Results:
    """The runs and metrics tables of every run directly under a store, SUMMARY_COLUMNS only,
    the metrics as distinct rows (baselines and reference runs are separate stores; samples and telemetry are not read)."""
    shards = [s for d in store.run_dirs(root) if d.name not in ("reference", "baselines")
              for s in sorted(d.glob("*.parquet")) if s.name.startswith(("runs.", "metrics."))]
    return store.load(shards, tables=("runs", "metrics"), columns=SUMMARY_COLUMNS, categorical=True,
                      distinct=("metrics",))


SUMMARY_COLUMNS = {"runs": ["rank", "task", "status", "world_size", "config", "suite", "system", "started_utc",
                            "ended_utc", "device_name"],
                   "metrics": ["case_id", "rank", "status", "world_size"]}
"""what summary() reads: a few columns of each runs row (the plan text dictionary-encoded: once
per distinct text) and of the metrics rows, never the measured values or provenance texts. Of
the metrics only the distinct (case, rank, status, world size) are kept, reduced while read
(store.load's `distinct`): 21 cases at 10^5 ranks are 2 x 10^6 of them, of 3 x 10^7 rows"""
