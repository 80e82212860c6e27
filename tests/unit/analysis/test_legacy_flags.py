"""Runs recorded before the validity model: power_throttle read as power-capped at the default
only when the rule of aifbench.analysis.legacy holds (hand-built rows; the real H200 runs in
results/reference are covered by test_reference_runs)."""

from __future__ import annotations

import pandas as pd
import pytest

from aifbench.analysis import legacy

RUNS = pd.DataFrame({"rank": [0, 1], "node": ["n1", "n1"],
                     "telemetry": ["nvml: NVIDIA H200 GPU-a (index 0, power limit 700 W; matched) every 0.1 s",
                                   "nvml: NVIDIA H200 GPU-b (index 1, power limit 500 W; matched) every 0.1 s"]})
TDP = {(0, "n1"): 700.0, (1, "n1"): 700.0}


def _metrics(reasons_rank0: str, reasons_rank1: str = "SwPowerCap") -> pd.DataFrame:
    rows = []
    for rank, why in ((0, reasons_rank0), (1, reasons_rank1)):
        rows.append(dict(case_id="c", rank=rank, node="n1", metric="tflops", flags="power_throttle", detail=""))
        rows.append(dict(case_id="c", rank=rank, node="n1", metric="throttle_pct", flags="power_throttle",
                         detail=f"reasons={why}"))
    return pd.DataFrame(rows)


def _flags(df: pd.DataFrame) -> dict[int, str]:
    return dict(zip(df[df["metric"] == "tflops"]["rank"], df[df["metric"] == "tflops"]["flags"]))


def test_swpowercap_alone_at_the_tdp_limit_is_a_note_and_a_lowered_limit_is_not():
    out = _flags(legacy.translate(_metrics("SwPowerCap"), RUNS, TDP))
    assert out == {0: "power_capped_legacy", 1: "power_throttle"}  # rank 1 ran at 500 W < 700 W


@pytest.mark.parametrize("reasons", ["SwPowerCap,HwPowerBrakeSlowdown", "HwPowerBrakeSlowdown"])
def test_a_power_brake_keeps_the_invalidating_flag(reasons):
    assert _flags(legacy.translate(_metrics(reasons), RUNS, TDP))[0] == "power_throttle"


def test_unknown_tdp_or_unrecorded_reasons_keep_the_flag():
    assert _flags(legacy.translate(_metrics("SwPowerCap"), RUNS, {(0, "n1"): None}))[0] == "power_throttle"
    no_detail = _metrics("SwPowerCap").assign(detail="")
    assert _flags(legacy.translate(no_detail, RUNS, TDP))[0] == "power_throttle"


def test_parsers():
    assert legacy.limit_w("x (index 0, power limit 612.5 W; y)") == 612.5 and legacy.limit_w("cpu") is None
    assert legacy.reasons("reasons=SwPowerCap,HwSlowdown") == {"SwPowerCap", "HwSlowdown"}
    assert legacy.reasons("reasons=none") == set() and legacy.reasons("") is None
    assert legacy.capped_at_default(set(), 700.0, 700.0)  # no reason at all: nothing to invalidate
    assert not legacy.capped_at_default({"SwPowerCap"}, 699.0 - legacy.LIMIT_TOLERANCE_W, 700.0)


def test_other_flags_on_the_row_are_kept():
    df = _metrics("SwPowerCap").assign(flags="power_throttle,ecc_errors")
    assert _flags(legacy.translate(df, RUNS, TDP))[0] == "power_capped_legacy,ecc_errors"
