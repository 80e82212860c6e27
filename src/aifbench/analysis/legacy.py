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

import numpy as np
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


def only_power_cap(seen: set[str] | None) -> bool:
    """The rule's first half: reasons were recorded, and none but SwPowerCap."""
    return seen is not None and seen <= {"SwPowerCap"}


def at_default_limit(limit: float | None, tdp: float | None) -> bool:
    """The rule's second half: a recorded limit not below the datasheet TDP (limits closer than
    LIMIT_TOLERANCE_W are equal, as in validity.power_state)."""
    return limit is not None and tdp is not None and limit > tdp - LIMIT_TOLERANCE_W


def capped_at_default(seen: set[str] | None, limit: float | None, tdp: float | None) -> bool:
    """The module rule: no reason but SwPowerCap, at a recorded limit not below the datasheet TDP."""
    return only_power_cap(seen) and at_default_limit(limit, tdp)


def legacy_texts(flags: pd.Series) -> set[str]:
    """The distinct flags texts that carry LEGACY_FLAG (once per text, not per row)."""
    return {str(t) for t in pd.unique(flags.dropna()) if LEGACY_FLAG in str(t)}


def has_legacy_flags(metrics: pd.DataFrame) -> bool:
    return bool(len(metrics)) and bool(legacy_texts(metrics["flags"]))


def reasons_seen(throttle_rows: pd.DataFrame) -> dict[tuple[str, int], set[str] | None]:
    """(case_id, rank) -> reasons listed by its throttle_pct row (needs the detail column)."""
    rows = throttle_rows[throttle_rows["metric"] == "throttle_pct"] if len(throttle_rows) else throttle_rows
    if not len(rows) or "detail" not in rows.columns:
        return {}
    detail = rows["detail"].astype(object)
    parsed = {d: reasons(d) for d in detail.dropna().unique()}  # one regex per distinct text, not per row
    seen = [None if d is None or d is pd.NA or d != d else parsed[d] for d in detail.tolist()]
    from aifbench.analysis.data import text_values

    keys = zip(text_values(rows["case_id"]).tolist(), rows["rank"].astype(int).tolist())
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
    texts = legacy_texts(metrics["flags"]) if len(metrics) else set()
    if not texts:
        return metrics
    from aifbench.analysis.data import text_values

    seen = reasons_seen(metrics) if seen is None else seen
    limits = {(int(r.rank), str(r.node)): limit_w(r.telemetry) for r in runs.itertuples(index=False)}
    # the rule's halves once per distinct value (10^5-rank runs flag millions of rows), then per row
    # by two hashed lookups: (case, rank) among the only-SwPowerCap ones, (rank, node) among those at default
    capped = [k for k, v in seen.items() if only_power_cap(v)]
    default = [k for k in set(limits) | set(tdp_of_rank) if at_default_limit(limits.get(k), tdp_of_rank.get(k))]
    at = np.flatnonzero(metrics["flags"].isin(texts).to_numpy(dtype=bool))
    if not capped or not default or not len(at):
        return metrics
    rows = metrics.iloc[at]
    rank = rows["rank"].to_numpy(dtype=np.int64)
    yes = (pd.MultiIndex.from_arrays([text_values(rows["case_id"]), rank]).isin(capped)
           & pd.MultiIndex.from_arrays([rank, text_values(rows["node"])]).isin(default))
    if not yes.any():
        return metrics
    new = {t: ",".join(LEGACY_NOTE if f == LEGACY_FLAG else f for f in t.split(",")) for t in texts}
    out = metrics.copy(deep=False)  # columns shared, the flags column replaced (not a copy of 10^7 rows)
    out["flags"] = _replaced(metrics["flags"], at[yes], new)
    return out


def _replaced(flags: pd.Series, at: np.ndarray, new: dict[str, str]) -> pd.Series:
    """`flags` with the rows at positions `at` given new[their text]; a categorical stays one
    (its categories sorted, as analysis reads them), its codes remapped: no text per row."""
    if isinstance(flags.dtype, pd.CategoricalDtype):
        from aifbench.results.read import sorted_categories

        cats = [str(c) for c in flags.cat.categories]
        names = cats + sorted(set(new.values()) - set(cats))
        code = {c: i for i, c in enumerate(names)}
        remap = np.array([code[new.get(c, c)] for c in cats], dtype=np.int64)
        codes = flags.cat.codes.to_numpy().astype(np.int64)
        codes[at] = remap[codes[at]]
        return sorted_categories(pd.Series(pd.Categorical.from_codes(codes, names), index=flags.index, name=flags.name))
    values = flags.astype(object).to_numpy(copy=True)
    values[at] = [new[str(v)] for v in values[at]]
    return pd.Series(values, index=flags.index, name=flags.name)
