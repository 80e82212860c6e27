"""The validity model on the real H200 trace: power-capped at the default limit is a state, not
a flag; a lowered limit, thermal slowdown, a foreign process ... invalidate; validate judges each.

tests/data/telemetry/h200_real.jsonl is a real recording (README there): 2 windows of 22 polls
each, SwPowerCap in every poll but the very first, the enforced limit 700 W in "static", no
default-limit read (recorded before aifbench asked for it). Edited copies are made here, in
memory, and written to tmp_path; the shipped file is never changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from aifbench.cli import main
from aifbench.results.store import load
from aifbench.telemetry import fields as F
from aifbench.telemetry.select import open_sampler
from aifbench.telemetry.validity import PowerState, power_state

from tests.conftest import write

REAL = Path(__file__).parents[2] / "data" / "telemetry" / "h200_real.jsonl"
OWN_PID = 848  # the recording process (static "pid", the only entry of every process list)


def _objects() -> list[dict]:
    return [json.loads(line) for line in REAL.read_text().splitlines() if line.strip()]


def _edited(tmp_path: Path, static: dict | None = None, poll: Callable[[int, dict], None] | None = None) -> Path:
    """A copy of the real trace: `static` merged into the GPU's static reads, `poll(i, reads)`
    applied to the reads of the i-th poll of each window."""
    objs, i = _objects(), 0
    objs[0]["static"][0].update(static or {})
    for o in objs[1:]:
        if o.get("event") == "start":
            i = 0
        elif "reads" in o:
            if poll:
                poll(i, o["reads"][0])
            i += 1
    path = tmp_path / "h200_edited.jsonl"
    path.write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in objs))
    return path


def _windows(path: Path) -> list:
    sampler = open_sampler("cpu", 0.1, trace_path=path)
    out = []
    for k in range(2):
        with sampler.window(f"gemm-{k}") as win:
            pass
        out.append(win)
    sampler.close()
    return out


def _metric(win, name: str):
    found = [m for m in win.metrics if m.metric == name]
    return found[0] if found else None


DEFAULT_700 = {"power_limit_default": [0, 700_000]}  # the H200 SXM's default TGP (catalog: MLPerf 'H200 TGP 700W')


# --- the real trace, replayed -------------------------------------------------------------------

def test_real_trace_is_power_capped_and_valid():
    first, second = _windows(REAL)
    assert first.flags == [] and second.flags == []
    # SwPowerCap in 21 of the first window's 22 polls (not the first), in all 22 of the second
    assert _metric(first, "power_capped_pct").value == pytest.approx(100 * 21 / 22)
    assert _metric(second, "power_capped_pct").value == 100.0
    assert _metric(first, "throttle_pct").value == 0.0 and _metric(first, "throttle_pct").detail == "reasons=SwPowerCap"
    assert _metric(first, "power_limit_w").value == 700.0
    # no default-limit read in this recording: the state is unknown, with the reason; nothing guessed
    assert _metric(first, "power_limit_default_w") is None
    assert _metric(first, "power_capped_pct").detail == (
        "state=unknown (SwPowerCap in 21 of 22 samples at the 700 W limit; default limit unknown: not in the trace)")
    clock = _metric(first, "sm_clock_mean_mhz")
    assert 1320 <= clock.value <= 1515 and "x max" in clock.detail  # 1320-1515 MHz polled, of 1980


def test_real_trace_with_its_default_limit_is_capped_at_default_and_valid(tmp_path):
    for win in _windows(_edited(tmp_path, DEFAULT_700)):
        assert win.flags == []
        assert _metric(win, "power_capped_pct").detail.startswith("state=capped_at_default (SwPowerCap in ")
        assert _metric(win, "power_limit_default_w").value == 700.0
        assert "default 700 W; state=capped_at_default" in _metric(win, "power_limit_w").detail


def _add_pid(i: int, reads: dict) -> None:
    if "processes" in reads:
        reads["processes"] = [0, [OWN_PID, 51877]]


def _bits(bits: int, first: int = 5, last: int = 9) -> Callable[[int, dict], None]:
    def edit(i: int, reads: dict) -> None:
        if first <= i <= last:
            reads["clocks_event_reasons"] = [0, reads["clocks_event_reasons"][1] | bits]
    return edit


def _ecc(i: int, reads: dict) -> None:
    reads["fields"][1]["3@0"] = [0, 2 if i >= 10 else 0]  # volatile corrected ECC count grows mid-window


def _slow_clock(i: int, reads: dict) -> None:
    reads["clock:1"] = [0, 1000]  # 1000 < 0.6 x 1980 = 1188 MHz


@pytest.mark.parametrize("static, poll, flag, throttle", [
    ({"power_limit": [0, 500_000], **DEFAULT_700}, None, "power_limit_below_default", 0.0),
    (DEFAULT_700, _bits(0x20), "thermal_throttle", 100 * 5 / 22),    # SwThermalSlowdown in polls 5..9
    (DEFAULT_700, _bits(0x40, 0, 21), "thermal_throttle", 100.0),    # HwThermalSlowdown throughout
    (DEFAULT_700, _bits(0x8, 3, 3), "hw_slowdown", 100 * 1 / 22),
    (DEFAULT_700, _bits(0x80, 0, 1), "power_brake", 100 * 2 / 22),
    (DEFAULT_700, _add_pid, "other_processes", 0.0),
    (DEFAULT_700, _ecc, "ecc_errors", 0.0),
    (DEFAULT_700, _slow_clock, "low_sm_clock", 0.0),
])
def test_edited_trace_is_invalid(tmp_path, static, poll, flag, throttle):
    for win in _windows(_edited(tmp_path, static, poll)):
        assert win.flags == [flag]
        assert _metric(win, "throttle_pct").value == pytest.approx(throttle)


def test_lowered_limit_state(tmp_path):
    win = _windows(_edited(tmp_path, {"power_limit": [0, 500_000], **DEFAULT_700}))[1]
    assert _metric(win, "power_limit_w").value == 500.0
    assert _metric(win, "power_capped_pct").detail == \
        "state=capped_below_default (SwPowerCap in 22 of 22 samples at the 500 W limit, default 700 W)"


# --- missing readings: unknown with the reason, nothing guessed, nothing crashes ---------------

def test_no_clock_reasons_and_an_older_driver(tmp_path):
    def drop(i: int, reads: dict) -> None:
        reads.pop("clocks_event_reasons")

    # an older driver: the default-limit query is not in it (NVML_ERROR_FUNCTION_NOT_FOUND)
    path = _edited(tmp_path, {"power_limit_default": [13, None]}, drop)
    win = _windows(path)[0]
    assert win.flags == []
    assert _metric(win, "power_capped_pct") is None and _metric(win, "throttle_pct") is None
    assert _metric(win, "power_limit_w").detail == (
        "enforced, lowest read in the window; default unknown: NVML error 13 (not in this driver (older driver)); "
        "state=unknown (no clock-event reasons: not in the trace)")
    assert _metric(win, "energy_j") is not None  # everything else still measured


def test_no_limit_at_all(tmp_path):
    objs = _objects()
    del objs[0]["static"][0]["power_limit"]
    path = tmp_path / "nolimit.jsonl"
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    win = _windows(path)[0]
    assert win.flags == [] and _metric(win, "power_limit_w") is None
    assert _metric(win, "power_capped_pct").detail == \
        "state=unknown (SwPowerCap in 21 of 22 samples; enforced limit unknown: not in the trace)"


@pytest.mark.parametrize("masks, limit, default, state", [
    ([0, 0], 700.0, 700.0, PowerState("uncapped", "SwPowerCap in 0 of 2 samples")),
    ([4, 0x1 | 4], 700.0, 700.0, PowerState("capped_at_default", "SwPowerCap in 2 of 2 samples at the 700 W limit = default")),
    ([4], 700.5, 700.0, PowerState("capped_at_default", "SwPowerCap in 1 of 1 samples at the 700.5 W limit = default")),
    ([4], 750.0, 700.0, PowerState("capped_above_default",
                                   "SwPowerCap in 1 of 1 samples at the 750 W limit, default 700 W")),
    ([], 700.0, 700.0, PowerState("unknown", "no clock-event reasons: not read")),
])
def test_power_state_rules(masks, limit, default, state):
    assert power_state(masks, limit, default, {}) == state
    assert state.state in F.STATES


def test_amd_limit_below_default_and_no_reasons():
    """amdsmi: the power cap and its default from amdsmi_get_power_cap_info; no clock-event reasons."""
    from tests import telemetry_scripted as scripted

    device, windows, _ = scripted.mi250x()
    cap = device.fake.amdsmi_get_power_cap_info
    device.fake.amdsmi_get_power_cap_info = lambda h: dict(cap(h), power_cap=400_000_000)  # 400 W of 560 W
    from aifbench.telemetry.nvml import NvmlSampler

    sampler = NvmlSampler(device, 0.1)
    with sampler.window(windows[0][0]) as win:
        pass
    assert win.flags == ["power_limit_below_default"]
    assert _metric(win, "power_limit_w").value == 400.0 and _metric(win, "power_limit_default_w").value == 560.0
    assert _metric(win, "power_limit_w").detail.endswith(
        "state=unknown (no clock-event reasons: NVML error 3 (not supported))")


def test_recorder_prints_flags_and_state(tmp_path, capsys):
    """The recorder's per-window line (its GPU path needs NVML; the window loop is the same)."""
    import argparse

    from aifbench.telemetry.nvml import NvmlSampler
    from aifbench.telemetry.record import _record
    from aifbench.telemetry.trace import ReplayDevice

    args = argparse.Namespace(windows=2, seconds=0.0, load="idle", device="cpu", size=1, output=tmp_path / "x")
    assert _record(args, NvmlSampler(ReplayDevice(_edited(tmp_path, DEFAULT_700)))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("window 0: flags=- state=capped_at_default power_mean_w=")
    assert lines[1].startswith("window 1: flags=- state=capped_at_default ")


def test_schema_describes_the_model(capsys):
    assert main(["schema"]) == 0
    out = capsys.readouterr().out
    assert "## telemetry validity" in out and "| capped_at_default | clocks held by the power limit" in out
    assert "| power_limit_below_default |" in out and "| power_throttle |" not in out
    assert "1350-1630 MHz of 1980" in out  # the low_sm_clock rule states its source
    assert "| power_capped_pct | % |" in out


# --- a real run on this CPU with the trace replayed, then validate ------------------------------

SUITE = """
[suite]
name = "gemm-h200-trace"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "gemm"
params = { m = 64, n = 64, k = 64, dtype = "fp32" }
"""

# H200-style GEMM references (benchmarks/targets/h200-sxm-141gb.toml holds the real ones). No gpu
# list, so they apply to this CPU run: one any device passes, one no device reaches.
REFS = """
[[reference]]
benchmark = "gemm"
metric = "tflops"
params = { dtype = "fp32", m = 64 }
lower = 1e-9
source = "test: any device"

[[reference]]
benchmark = "gemm"
metric = "tflops"
params = { dtype = "fp32", m = 64 }
lower = 1e6
source = "test: 1 EFLOP/s, no device"
"""


def _run_replayed(tmp_path: Path, trace: Path, monkeypatch) -> Path:
    monkeypatch.setenv("AIFBENCH_TELEMETRY_REPLAY", str(trace))
    root = tmp_path / "res"
    assert main(["run", str(write(tmp_path / "suite.toml", SUITE)), "--device", "cpu", "--results", str(root)]) == 0
    return root


def _validate(root: Path, refs: Path, *extra: str) -> int:
    return main(["validate", "--results", str(root), "--references", str(refs), "--format", "markdown", *extra])


def test_real_trace_run_judges_gemm_references_on_their_values(tmp_path, monkeypatch, capsys):
    root = _run_replayed(tmp_path, REAL, monkeypatch)
    m = load([root]).metrics
    assert set(m["flags"].fillna("")) == {""}
    assert m.loc[m["metric"] == "power_capped_pct", "detail"].str.startswith("state=").all()
    capsys.readouterr()
    refs = write(tmp_path / "refs.toml", REFS)
    assert _validate(root, refs) == 1
    out, err = capsys.readouterr()
    assert "FAIL" in err and "references: 2 of 2 judged" in out
    assert "| pass | reference: gemm m=64 dtype=fp32 tflops >= 1e-09 | 1 row(s) pass" in out
    assert "| fail | reference: gemm m=64 dtype=fp32 tflops >= 1e+06 | 1 of 1 failed: rank 0" in out
    assert "< lower 1e+06" in out and "telemetry flags" not in out
    one = write(tmp_path / "one.toml", REFS.split("\n\n")[0] + "\n")  # the reference any device meets
    assert _validate(root, one) == 0 and "PASS" in capsys.readouterr().err


def test_gemm_capped_at_default_is_valid_and_passes(tmp_path, monkeypatch, capsys):
    root = _run_replayed(tmp_path, _edited(tmp_path, DEFAULT_700), monkeypatch)
    m = load([root]).metrics
    assert set(m["flags"].fillna("")) == {""}
    state = m.loc[m["metric"] == "power_capped_pct", "detail"]
    assert len(state) >= 1 and state.str.startswith("state=capped_at_default (SwPowerCap in ").all()
    assert (m.loc[m["metric"] == "power_limit_default_w", "value"] == 700.0).all()
    refs = write(tmp_path / "refs.toml", REFS.split("\n\n")[0] + "\n")
    capsys.readouterr()
    assert _validate(root, refs) == 0
    out, err = capsys.readouterr()
    assert "PASS" in err and "references: 1 of 1 judged" in out and "excluded" not in out


@pytest.mark.parametrize("static, poll, flag", [
    ({"power_limit": [0, 500_000], **DEFAULT_700}, None, "power_limit_below_default"),
    (DEFAULT_700, _bits(0x20, 0, 21), "thermal_throttle"),
    (DEFAULT_700, _add_pid, "other_processes"),
])
def test_edited_trace_run_is_judged_by_the_flag_rule(tmp_path, monkeypatch, capsys, static, poll, flag):
    root = _run_replayed(tmp_path, _edited(tmp_path, static, poll), monkeypatch)
    m = load([root]).metrics
    assert set(m["flags"]) == {flag}
    refs = write(tmp_path / "refs.toml", REFS.split("\n\n")[0] + "\n")
    capsys.readouterr()
    # default: flagged rows are excluded, so the reference judges nothing: INCOMPLETE, never PASS
    assert _validate(root, refs) == 1
    out, err = capsys.readouterr()
    assert "INCOMPLETE" in err and "references: 0 of 1 judged, 1 left unjudged" in out
    assert "all 1 row(s) excluded by telemetry flags" in out
    # --flags fail: the reference fails for the flag, naming it
    assert _validate(root, refs, "--flags", "fail") == 1
    out, err = capsys.readouterr()
    assert "FAIL" in err and "telemetry flags: rank 0" in out and f"[{flag}]" in out


@pytest.mark.parametrize("flags, judged", [
    ("", True), ("telemetry_insufficient", True),  # a note: the measured figure stands
    ("telemetry_insufficient,thermal_throttle", False), ("power_throttle", False),  # old runs' flag still excludes
])
def test_validate_excludes_only_invalidating_flags(tmp_path, flags, judged):
    from aifbench.analysis.data import Selection, load_runs
    from aifbench.analysis.references import Reference
    from aifbench.analysis.validate import ValidateOptions, validate
    from tests._analysis_data import RunSpec, gemm, write_run

    run_dir = write_run(tmp_path, RunSpec(run_id="20261204T210000Z-v-00000a", cases=[gemm(4096)], flags={0: flags}))
    ref = Reference(benchmark="gemm", metric="tflops", lower=1.0)
    report = validate(Selection(load_runs([run_dir])), [ref], ValidateOptions())
    (check,) = [c for c in report.checks if c.kind == "reference"]
    assert (check.status == "pass") == judged and report.verdict == ("PASS" if judged else "INCOMPLETE")
    if not judged:
        assert check.message == "all 1 row(s) excluded by telemetry flags"
