"""Runs recorded before the validity model (aifbench.telemetry.validity): their flag power_throttle.

Before the model, one flag `power_throttle` stood for SwPowerCap *or* HwPowerBrakeSlowdown, and
the power limit was not stored per window. A row so flagged is read as power-capped at the
default limit (the note `power_capped_legacy`, not invalidating) only when all of this holds:
- the case's throttle_pct detail lists the reasons seen and they are SwPowerCap alone (so no
  power brake, thermal or hardware slowdown);
- the rank's runs.telemetry text records the enforced limit ('power limit 700 W');
- that limit is at least the GPU model's datasheet TDP from the hardware catalog (an SXM part
  ships with its default limit at its TDP: an H200 SXM measured on 2026-12-04
  showed 700 W of 700 W in nvidia-smi).
Otherwise the row keeps power_throttle, which stays invalidating: what could not be told apart
is not judged. A compatibility shim for stored runs: it stays until release 0.2.0, then goes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from aifbench.telemetry.validity import LIMIT_TOLERANCE_W

LEGACY_FLAG = "power_throttle"
LEGACY_NOTE = "power_capped_legacy"
_LIMIT = re.compile(r"power limit ([0-9.]+) W")
_REASONS = re.compile(r"reasons=([A-Za-z,]+)")
NEEDED_METRICS = ("throttle_pct",)
"""what the rule reads besides the flagged rows (a lean reader must include it)"""


def limit_w(telemetry: object) -> float | None:
    """The enforced power limit (W) a runs.telemetry text records, or None."""
    m = _LIMIT.search(str(telemetry or ""))
    return float(m.group(1)) if m else None


def reasons(detail: object) -> set[str] | None:
    """Clock-event reasons a throttle_pct detail lists ('reasons=SwPowerCap,...'), or None."""
    m = _REASONS.search(str(detail or ""))
    return None if m is None else {r for r in m.group(1).split(",") if r and r != "none"}


def capped_at_default(seen: set[str] | None, limit: float | None, tdp: float | None) -> bool:
    """The module rule: no reason but SwPowerCap, at a recorded limit not below the datasheet TDP
    (limits closer than LIMIT_TOLERANCE_W are equal, as in validity.power_state)."""
    return (seen is not None and seen <= {"SwPowerCap"} and limit is not None and tdp is not None
            and limit > tdp - LIMIT_TOLERANCE_W)


def has_legacy_flags(metrics: pd.DataFrame) -> bool:
    return bool(len(metrics)) and bool(metrics["flags"].astype(str).str.contains(LEGACY_FLAG, regex=False).any())


def reasons_seen(throttle_rows: pd.DataFrame) -> dict[tuple[str, int], set[str] | None]:
    """(case_id, rank) -> reasons listed by its throttle_pct row (needs the detail column)."""
    rows = throttle_rows[throttle_rows["metric"] == "throttle_pct"] if len(throttle_rows) else throttle_rows
    if not len(rows) or "detail" not in rows.columns:
        return {}
    detail = rows["detail"].astype(object)
    parsed = {d: reasons(d) for d in detail.dropna().unique()}  # one regex per distinct text, not per row
    seen = [None if d is None or d is pd.NA or d != d else parsed[d] for d in detail.tolist()]
    keys = zip(rows["case_id"].astype(str).tolist(), rows["rank"].astype(int).tolist())
    return dict(zip(keys, seen))  # the last row of a (case, rank) wins, as row by row


SIDE_COLUMNS = ["run_id", "case_id", "rank", "metric", "detail"]


def side_view() -> dict[str, tuple[list[str], object]]:
    """store.load's `side` argument that reads what reasons_seen() needs in the same pass as the
    lean analysis read (which leaves the detail column out): every throttle_pct row's detail."""
    import pyarrow.dataset as ds

    return {"metrics": (SIDE_COLUMNS, ds.field("metric") == "throttle_pct")}


def read_reasons(run_dir: Path) -> dict[tuple[str, int], set[str] | None]:
    """reasons_seen() of a stored run: its throttle_pct rows with their detail (a read of its own;
    side_view() gets them from a read made anyway)."""
    from aifbench.results import store

    (cols, flt), = side_view().values()
    res = store.load(store.find_shards([run_dir]), tables=("metrics",), columns={"metrics": cols},
                     filters={"metrics": flt})
    return reasons_seen(res.tables["metrics"])


def translate(metrics: pd.DataFrame, runs: pd.DataFrame, tdp_of_rank: dict[tuple[int, str], float | None],
              seen: dict[tuple[str, int], set[str] | None] | None = None) -> pd.DataFrame:
    """`metrics` with power_throttle replaced by power_capped_legacy where the rule holds.
    tdp_of_rank: (rank, node) -> datasheet TDP in W of the rank's GPU model (None: unknown);
    seen: reasons_seen() of the run's throttle_pct rows (default: from `metrics` itself)."""
    if not has_legacy_flags(metrics):
        return metrics
    flags = metrics["flags"].astype(str)
    hit = flags.str.contains(LEGACY_FLAG, regex=False)
    limits = {(int(r.rank), str(r.node)): limit_w(r.telemetry) for r in runs.itertuples(index=False)}
    seen = reasons_seen(metrics) if seen is None else seen
    out = metrics.copy()
    out["flags"] = flags
    rows = out.loc[hit.to_numpy(), ["case_id", "rank", "node", "flags"]]
    if not len(rows):
        return out
    # one decision per distinct (case, rank, node, flags), not per row: 10^5-rank runs have millions
    keys = pd.DataFrame({"case_id": rows["case_id"].astype(str).to_numpy(), "rank": rows["rank"].astype(int).to_numpy(),
                         "node": rows["node"].astype(str).to_numpy(), "flags": rows["flags"].to_numpy()})
    distinct = keys.drop_duplicates()
    new = [",".join(LEGACY_NOTE if f == LEGACY_FLAG else f for f in text.split(","))
           if capped_at_default(seen.get((case_id, rank)), limits.get((rank, node)), tdp_of_rank.get((rank, node)))
           else None for case_id, rank, node, text in distinct.itertuples(index=False)]
    if any(n is not None for n in new):  # back to every row by one join (left: the rows' order kept)
        mapped = keys.merge(distinct.assign(new=pd.Series(new, index=distinct.index, dtype=object)),
                            how="left", on=list(keys.columns))["new"]
        changed = pd.Series(mapped.to_numpy(), index=rows.index).dropna()
        out.loc[changed.index, "flags"] = changed.to_numpy()
    return out
