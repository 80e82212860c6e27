"""Telemetry windows scoped to timed regions (issue 10, item 2), on CPU with replayed NVML traces.

The traces are built here in the format of the real H200 recording (h200_real.jsonl: the same
header facts, the same reads per poll in NVML's units: mW, mJ, MHz), with a power that differs
between windows, so the figures show which window each one came from. A replay serves its
windows in order, one per window the sampler opens: one per segment of a region.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from aifbench import metrics as metric_dict
from aifbench.cli import main
from aifbench.results.store import load
from aifbench.telemetry import regions as R
from aifbench.telemetry import report
from aifbench.telemetry.base import NullSampler
from aifbench.telemetry.efficiency import SOURCES
from aifbench.telemetry.nvml import NvmlSampler
from aifbench.telemetry.trace import ReplayDevice
from aifbench.timing import Timer, TimingConfig
from tests.conftest import write

STATIC = {"index": [0, 0], "max_clock:1": [0, 1980], "name": [0, "NVIDIA H200"], "pid": [0, 848],
          "power_limit": [0, 700000], "uuid": [0, "GPU-4b29a544-ac9d-38a6-797f-d2d00ba5f789"]}
POWER_CAP = 0x4  # nvmlClocksEventReasonSwPowerCap
THERMAL = 0x20  # nvmlClocksEventReasonSwThermalSlowdown
DT = 0.1
DATA = Path(__file__).parents[2] / "data" / "telemetry"


def _poll(t: float, watts: float, energy_mj: int, reasons: int) -> dict:
    """One poll with the reads of h200_real.jsonl (power 186@0 in mW, energy counter in mJ)."""
    fields = {"138@4294967295": [3, None], "139@4294967295": [3, None], "142@0": [0, 0], "143@0": [0, 0],
              "144@0": [0, 0], "186@0": [0, round(watts * 1000)], "186@1": [3, None], "197@0": [0, 1102463024],
              "198@0": [0, 2523947420], "29@0": [3, None], "30@0": [3, None], "3@0": [0, 0], "4@0": [0, 0]}
    return {"t": round(t, 6), "reads": [{
        "clock:1": [0, 1500], "clock:2": [0, 3201], "clocks_event_reasons": [0, reasons], "energy": [0, energy_mj],
        "fields": [0, fields], "memory_used": [0, 1704853504], "processes": [0, [848]], "temperature": [0, 50],
        "utilization": [0, [98, 24]]}]}


def build_trace(path: Path, windows: list[tuple[str, float, float, int]]) -> Path:
    """windows: (name, seconds, watts, clock-event reasons): polls every 0.1 s at constant power,
    the energy counter rising by watts x 0.1 s per poll, time and counter running on across windows."""
    lines = [{"format": "aifbench-nvml-trace", "version": 2, "created_utc": "2026-12-04T18:30:09+00:00",
              "origin": "test: built in the format of h200_real.jsonl", "source": "nvml", "interval_s": DT,
              "static": [STATIC]}]
    t, energy_mj = 0.0, 43289781
    for name, seconds, watts, reasons in windows:
        lines.append({"window": name, "event": "start"})
        for i in range(round(seconds / DT) + 1):
            if i:
                t, energy_mj = t + DT, energy_mj + round(watts * DT * 1000)
            lines.append(_poll(t, watts, energy_mj, reasons))
        lines.append({"window": name, "event": "end"})
        t += 5.0  # work between windows: outside every window
    path.write_text("".join(json.dumps(o) + "\n" for o in lines))
    return path


def _value(metrics: pd.DataFrame, name: str, stat: str | None = None) -> float:
    rows = metrics[(metrics["metric"] == name) & ((metrics["stat"] == stat) if stat else True)]
    assert len(rows) == 1, (name, rows)
    return float(rows["value"].iloc[0])


def _suite(tmp_path, benchmark: str, params: str) -> str:
    body = (f'[suite]\nname = "t"\n[timing]\nwarmup = 1\nrepeats = 3\n[[case]]\nbenchmark = "{benchmark}"\n'
            f"params = {{ {params} }}\n")
    return str(write(tmp_path / "t.toml", body))


def test_llm_train_and_its_reference_each_get_the_energy_of_their_own_window(tmp_path, monkeypatch):
    """Done-when of issue 10: aifbench's model (region main) and the transformers reference
    (region ref) take energy, power and tokens/J from their own windows, which differ as the
    trace says; compilation, checks and warm-up open no window. The windows, in order: main's
    timed repeats, then two A/B rounds of speedup_vs_ref in ABBA order (main, ref; ref, main):
    main accumulates three segments, ref two."""
    pytest.importorskip("transformers")
    trace = build_trace(tmp_path / "trace.jsonl", [("a", 2.0, 300.0, 0), ("a1", 1.0, 300.0, 0),
                                                   ("b1", 1.5, 600.0, THERMAL), ("b2", 1.5, 600.0, THERMAL),
                                                   ("a2", 1.0, 300.0, 0)])
    monkeypatch.setenv("AIFBENCH_TELEMETRY_REPLAY", str(trace))
    suite = _suite(tmp_path, "llm_train", 'model = "tiny", seq_len = 32, micro_batch = 2, dtype = "fp32", '
                                          'compile = true, compile_backend = "eager", reference = "transformers", '
                                          'ab_rounds = 2, ab_round_s = 0.0')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "10"]) == 0
    res = load([tmp_path / "res"])
    m = res.metrics
    assert set(m["status"]) == {"ok"}
    assert _value(m, "energy_j") == pytest.approx(4.0 * 300.0)      # windows a, a1, a2
    assert _value(m, "power_mean_w") == pytest.approx(300.0)
    assert _value(m, "ref_energy_j") == pytest.approx(3.0 * 600.0)  # windows b1, b2
    assert _value(m, "ref_power_mean_w") == pytest.approx(600.0)
    assert _value(m, "tokens_per_j") == pytest.approx(_value(m, "tokens_per_s_per_device", "median") / 300.0)
    assert _value(m, "ref_tokens_per_j") == pytest.approx(_value(m, "ref_tokens_per_s", "median") / 600.0)
    assert _value(m, "telemetry_window_s") == pytest.approx(4.0)
    assert _value(m, "ref_telemetry_window_s") == pytest.approx(3.0)
    # the case's flags are main's (clean); the reference's thermal slowdown shows in its own window's detail
    assert set(m["flags"].fillna("")) == {""}
    assert "thermal" in m[m["metric"] == "ref_telemetry_window_s"]["detail"].iloc[0]
    tel = res.telemetry
    power = tel[tel["field"] == "power_w"]
    assert power.groupby("window")["value"].mean().to_dict() == pytest.approx({"main": 300.0, "ref": 600.0})
    assert power.groupby("window")["segment"].agg(lambda s: sorted(set(s))).to_dict() == {"main": [0, 1, 2],
                                                                                          "ref": [0, 1]}
    # `aifbench telemetry`: one summary row per window, each with its own power and flags
    rows = report.summary(m, tel).set_index("window")
    assert rows.loc["main", "power_mean_w"] == pytest.approx(300.0) and rows.loc["main", "flags"] == ""
    assert rows.loc["ref", "power_mean_w"] == pytest.approx(600.0) and "thermal" in rows.loc["ref", "flags"]
    spans = report.timeline(m, tel).groupby("window")["x_s"].agg(["min", "max"])
    assert spans.loc["main", "max"] < spans.loc["ref", "min"]  # the plot puts them one after the other


def test_llm_infer_prefill_and_decode_have_separate_windows(tmp_path, monkeypatch):
    """Prefill (one segment) and decode (one segment per timed generation, 3 repeats) each take
    their window's power; there is no region main, so no unprefixed power figure."""
    windows = [("p", 1.0, 150.0, 0)] + [(f"d{i}", 1.0, 450.0, 0) for i in range(3)]
    monkeypatch.setenv("AIFBENCH_TELEMETRY_REPLAY", str(build_trace(tmp_path / "trace.jsonl", windows)))
    suite = _suite(tmp_path, "llm_infer", 'model = "tiny", prompt_len = 16, gen_tokens = 4, dtype = "fp32"')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "10"]) == 0
    m = load([tmp_path / "res"]).metrics
    assert _value(m, "prefill_power_mean_w") == pytest.approx(150.0)
    assert _value(m, "decode_power_mean_w") == pytest.approx(450.0)
    assert _value(m, "decode_energy_j") == pytest.approx(3 * 450.0)
    assert _value(m, "prefill_tokens_per_j") == pytest.approx(_value(m, "prefill_tokens_per_s", "median") / 150.0)
    assert _value(m, "decode_tokens_per_j") == pytest.approx(_value(m, "decode_tokens_per_s", "median") / 450.0)
    assert not {"power_mean_w", "energy_j", "tokens_per_j"} & set(m["metric"])


def test_gemm_harness_and_bare_loop_have_separate_windows(tmp_path, monkeypatch):
    """The harness's timed calls (main) and the bare loop (bare) each take their own window's
    power. Windows open in the order: the timed repeats (main), then two A/B rounds in ABBA order
    (main, bare | bare, main); the replayed trace gives them in that order."""
    order = [("h", 400.0), ("h", 400.0), ("b", 420.0), ("b", 420.0), ("h", 400.0)]
    trace = build_trace(tmp_path / "trace.jsonl", [(name, 1.0, watts, 0) for name, watts in order])
    monkeypatch.setenv("AIFBENCH_TELEMETRY_REPLAY", str(trace))
    suite = _suite(tmp_path, "gemm", 'm = 64, n = 64, k = 64, dtype = "fp32", bare_loop = true, ab_rounds = 2')
    assert main(["run", suite, "--results", str(tmp_path / "res"), "--telemetry-hz", "10"]) == 0
    m = load([tmp_path / "res"]).metrics
    assert _value(m, "power_mean_w") == pytest.approx(400.0)
    assert _value(m, "bare_power_mean_w") == pytest.approx(420.0)
    assert _value(m, "tflops_per_w") == pytest.approx(_value(m, "tflops", "median") / 400.0)
    bare = m[m["metric"] == "bare_loop_tflops"].iloc[0]
    assert _value(m, "bare_tflops_per_w") == pytest.approx(bare["value"] / 420.0)


def test_re_entered_region_accumulates_as_computed_by_hand(tmp_path):
    """Three segments of region decode (1 s at 200 W, 2 s at 500 W, 0.5 s at 400 W): energy is
    the sum, mean power weights each segment by its duration (not the plain mean, 366.7 W)."""
    trace = build_trace(tmp_path / "t.jsonl", [("s0", 1.0, 200.0, 0), ("s1", 2.0, 500.0, 0), ("s2", 0.5, 400.0, 0)])
    regions = R.Regions(NvmlSampler(ReplayDevice(trace), DT), "case")
    timer = Timer("cpu", TimingConfig(warmup=0, repeats=1), regions=regions)
    for _ in range(3):
        with timer.region("decode"):
            pass
    res = regions.results()["decode"]
    got = {m.metric: m for m in res.metrics}
    energy = 200.0 * 1.0 + 500.0 * 2.0 + 400.0 * 0.5  # 1400 J
    assert got["energy_j"].value == pytest.approx(energy)
    assert got["power_mean_w"].value == pytest.approx(energy / 3.5)  # 400 W
    assert got["power_peak_w"].value == pytest.approx(500.0)
    assert got["telemetry_window_s"].value == pytest.approx(3.5)
    assert got["telemetry_window_s"].n_samples == 11 + 21 + 6
    assert res.flags == [] and not res.insufficient
    rows = pd.DataFrame(res.rows)
    assert set(rows["window"]) == {"decode"} and sorted(set(rows["segment"])) == [0, 1, 2]
    # t_s runs from the region's first poll across segments (here 5 s of untimed work between them)
    assert rows.groupby("segment")["t_s"].min().tolist() == pytest.approx([0.0, 6.0, 13.0])


def test_short_window_is_insufficient_and_inherits_nothing(tmp_path, monkeypatch):
    """The H200 observation: a 0.12 s STREAM triad right after a power-capped GEMM, its first poll
    still showing SwPowerCap at 259 W. The second case gets telemetry_insufficient with the
    reason, no power, energy or efficiency figure and no clock-reason flag of its own or the GEMM's."""
    trace = build_trace(tmp_path / "trace.jsonl", [("gemm", 2.0, 690.0, POWER_CAP), ("triad", 0.1, 259.0, POWER_CAP)])
    monkeypatch.setenv("AIFBENCH_TELEMETRY_REPLAY", str(trace))
    body = ('[suite]\nname = "t"\n[timing]\nwarmup = 1\nrepeats = 3\n[[case]]\nbenchmark = "membw"\n'
            'sweep = { op = ["copy", "triad"] }\nparams = { size_bytes = 1048576 }\n')
    assert main(["run", str(write(tmp_path / "t.toml", body)), "--results", str(tmp_path / "res"),
                 "--telemetry-hz", "10"]) == 0
    res = load([tmp_path / "res"])
    first, second = (res.metrics[res.metrics["case_id"] == c] for c in sorted(set(res.metrics["case_id"])))
    assert second["params"].str.contains("triad").all()
    assert _value(first, "power_mean_w") == pytest.approx(690.0)
    assert "gbps_per_w" in set(first["metric"])
    assert set(second["flags"]) == {R.INSUFFICIENT}
    assert not {"power_mean_w", "power_peak_w", "energy_j", "gbps_per_w", "sm_clock_mean_mhz",
                "throttle_pct"} & set(second["metric"])
    window = second[second["metric"] == "telemetry_window_s"].iloc[0]
    assert window["n_samples"] == 2 and "2 poll(s) < 3" in window["detail"]
    assert _value(second, "gbps", "median") > 0  # the figure itself stands
    tel = res.telemetry
    assert len(tel[(tel["case_id"] == window["case_id"]) & (tel["field"] == "power_w")]) == 2  # raw rows kept


def test_warm_up_is_outside_and_repeats_inside_region_main():
    regions = R.Regions(NullSampler(), "case")
    timer = Timer("cpu", TimingConfig(warmup=2, repeats=3), regions=regions)
    seen: list[str | None] = []
    timer.time(lambda: seen.append(regions.active))
    assert seen == [None, None, "main", "main", "main"]
    seen.clear()
    with timer.region("bare"):  # inside a region, time() opens none of its own
        timer.time(lambda: seen.append(regions.active), warmup=0, repeats=1)
    timer.time(lambda: seen.append(regions.active), warmup=1, repeats=1, region="ref")
    assert seen == ["bare", None, "ref"]
    assert regions.names == ["main", "bare", "ref"]


def test_regions_do_not_nest_and_names_are_checked():
    timer = Timer("cpu", regions=R.Regions(NullSampler(), "case"))
    with pytest.raises(ValueError, match="do not nest"):
        with timer.region("bare"):
            with timer.region("ref"):
                pass
    with pytest.raises(ValueError, match="do not nest"):
        with timer.region("bare"):
            timer.time(lambda: None, region="ref")
    with pytest.raises(ValueError, match="one of main, ref"):
        with timer.region("Main"):
            pass


def test_timer_without_regions_and_extension_without_live_telemetry():
    timer = Timer("cpu", TimingConfig(warmup=0, repeats=2))
    with timer.region("ref"):  # no regions object: nothing to do, no error
        stats = timer.time(lambda: None, extend=True)
    assert stats.n == 2
    # without live telemetry (off, or a replay) there is nothing to extend for
    assert R.Regions(NullSampler(), "c").min_timed_s == 0.0


def test_extend_adds_repeats_until_the_region_lasts_its_minimum():
    class Live(NullSampler):
        live, interval_s = True, 0.1

    clock = iter(range(0, 10**12, 125_000_000))  # every reading 0.125 s later: each repeat lasts 0.125 s
    timer = Timer("cpu", TimingConfig(warmup=0, repeats=2), clock=lambda: next(clock),
                  regions=R.Regions(Live(), "c"))
    assert timer.regions.min_timed_s == R.MIN_TIMED_S
    stats = timer.time(lambda: None, extend=True)
    assert stats.n == round(R.MIN_TIMED_S / 0.125)
    assert timer.time(lambda: None).n == 2


@pytest.mark.parametrize("trace", sorted(p.name for p in DATA.glob("*.jsonl")))
def test_every_metric_a_window_emits_has_its_region_variants(trace):
    """What a sampler reports for a window (any shipped trace) can be stored for every region."""
    sampler = NvmlSampler(ReplayDevice(DATA / trace), DT)
    names = set()
    for _ in sampler.dev.windows:
        with sampler.window("w") as win:
            pass
        names |= {m.metric for m in win.metrics}
    names.add("telemetry_window_s")
    for region in metric_dict.REGIONS:
        for name in names:
            assert metric_dict.get(f"{region}_{name}").unit == metric_dict.get(name).unit


def test_every_metric_a_cpu_window_emits_has_its_region_variants():
    psutil = pytest.importorskip("psutil")
    from aifbench.telemetry.cpu import CpuSampler

    with CpuSampler(0.01).window("w") as win:
        sum(range(10**6))
    assert win.metrics and psutil
    for region in metric_dict.REGIONS:
        for m in win.metrics:
            assert f"{region}_{m.metric}" in metric_dict.METRICS


def test_every_region_metric_is_defined():
    assert set(metric_dict.REGIONS) == set(R.REGIONS) - {R.MAIN}
    for region, targets in SOURCES.items():
        for target, rates in targets.items():
            assert R.prefixed(region, target) in metric_dict.METRICS
            assert all(r in metric_dict.METRICS for r in rates)
