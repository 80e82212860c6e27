"""Metric traits (aifbench.metrics): consistent with each other, and read by compare, samples,
data, the plots and telemetry (efficiency, report, regions) instead of lists of names. That the
report's plots draw every metric their trait names: tests/unit/analysis/test_report_plots.py."""

from __future__ import annotations

import pytest

from aifbench import metrics as M
from aifbench.analysis import data, samples
from aifbench.analysis.plots import PLOTS, plotted
from aifbench.telemetry import regions as R
from aifbench.telemetry.efficiency import SOURCES
from aifbench.telemetry.report import split_metric

# --- the readers follow the traits (no list of names to keep in step) ---------------------------
KNOWN_JOB_WIDE = {"tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s"}
"""a few facts the traits must keep (membership only: a new metric of any kind passes)"""
KNOWN_NOT_ADDITIVE = {"avg_busbw_gbps", "busbw_gbps", "algbw_gbps", "hbm_gbps", "decode_tokens_per_s_per_seq"}


def test_a_merit_is_its_role():
    for name, d in M.METRICS.items():
        assert M.is_merit(name) == (d.role in M.MERIT_ROLES), name
    assert not M.is_merit("no_such_metric")
    assert M.is_merit("ttft_s") and M.is_merit("time_to_train_s")  # latencies: lower is better, still merits
    for clock in ["sm_clock_mean_mhz", *(f"{r}_sm_clock_mean_mhz" for r in M.REGIONS)]:
        assert not M.is_merit(clock), "a clock is a reading (higher_is_better only says which way is good)"


def test_compare_normalisation_reads_scope_and_additive():
    assert KNOWN_JOB_WIDE <= set(M.names(scope="job"))
    assert "tokens_per_s_per_device" in M.names(scope="device")
    assert not KNOWN_NOT_ADDITIVE & set(M.names(additive=True)), "a bus bandwidth or a per-sequence rate does not add up"
    assert {"tflops", "gbps", "tokens_per_s"} <= set(M.names(additive=True))


def test_sample_rules_read_the_derivation():
    for name, d in M.METRICS.items():
        assert samples.is_rate_of_time(name) == (d.derivation == "from_time"), name
    assert not samples.is_rate_of_time("avg_busbw_gbps") and not samples.is_rate_of_time("tflops_per_w")
    assert {"time_s", "step_time_s"} <= set(M.names(role="time_base"))
    merits = {n for n in M.METRICS if M.is_merit(n)}
    assert set(data.analysis_metrics()) == merits | set(M.names(role="time_base")) | {M.POWER}
    assert set(data.analysis_metrics(["loss"])) - set(data.analysis_metrics()) == {"loss"}


def test_telemetry_readers_follow_region_base_and_per_power():
    for name, d in M.METRICS.items():
        assert split_metric(name) == ((d.region, d.base) if d.derivation == "window" else (M.MAIN, name)), name
    assert split_metric("ref_not_a_metric") == (M.MAIN, "ref_not_a_metric")
    assert split_metric("ref_energy_j") == ("ref", "energy_j")
    assert {"energy_j", "module_energy_j"} <= set(M.names(over_segments="sum", region=M.MAIN))
    assert M.names(over_segments="lowest", region=M.MAIN) == ("power_limit_w",)  # the limit in force
    expected: dict[str, dict[str, tuple[str, ...]]] = {}
    for d in M.METRICS.values():
        if d.per_power:
            expected.setdefault(d.region, {})[d.base] = d.per_power.of
    assert SOURCES == expected
    assert SOURCES[M.MAIN]["tokens_per_j"][0] == "tokens_per_s_per_device", "per device before job-wide"


def test_energy_plot_reads_efficiencies_and_what_they_recompute():
    assert {"tflops_per_w", "gbps_per_w", "tokens_per_j"} <= set(plotted("energy"))
    assert all(M.get(m).role == "efficiency" for m in plotted("energy"))
    recomputed = {M.get(e).per_power.recomputed_from: e for e in plotted("energy") if M.get(e).per_power.recomputed_from}
    assert recomputed["tflops"] == "tflops_per_w" and recomputed["gbps"] == "gbps_per_w"


# --- consistency of the traits ----------------------------------------------------------------
@pytest.mark.parametrize("d", list(M.METRICS.values()), ids=list(M.METRICS))
def test_traits_agree_with_unit_and_direction(d: M.MetricDef):
    if d.additive:
        assert d.unit in M.RATE_UNITS, "an additive metric is work per second"
    if d.scope == "job":
        assert d.additive, "a job-wide figure is divided per GPU only when it adds up"
    if d.role in ("throughput", "score", "efficiency"):
        assert d.higher_is_better
    if d.role in ("latency", "time", "time_base"):
        assert d.unit == "s" and not d.higher_is_better
    if d.derivation == "from_time":
        assert d.higher_is_better and d.unit in M.RATE_UNITS + ("%",)
    assert (d.derivation == "window") == (d.role == "reading"), "a reading comes from a telemetry window"
    assert (d.derivation == "per_power") == (d.role == "efficiency") == (d.per_power is not None)
    if d.over_segments != "by_stat":
        assert d.derivation == "window"
    if d.region != M.MAIN:
        assert d.derivation in ("window", "per_power") and d.name == f"{d.region}_{d.base}" and not d.plots
    assert set(d.plots) <= {name for name, _, _ in PLOTS}


@pytest.mark.parametrize("d", [d for d in M.METRICS.values() if d.per_power], ids=lambda d: d.name)
def test_every_efficiency_names_existing_throughputs_and_its_window_power(d: M.MetricDef):
    assert R.prefixed(d.region, M.POWER) in M.METRICS, "the power of its own region's window"
    for source in d.per_power.of:
        s = M.get(source)
        assert s.role == "throughput" and s.derivation == "from_time"
        assert d.unit in (f"{s.unit}/W", "tokens/J" if s.unit == "tokens/s" else None), (d.unit, s.unit)
    if d.per_power.recomputed_from:
        assert d.per_power.recomputed_from in d.per_power.of


def test_every_region_has_every_window_metric_with_the_same_traits():
    assert set(R.REGIONS) == {M.MAIN, *M.REGIONS}
    for base in map(M.get, M.names(derivation="window", region=M.MAIN)):
        for region in M.REGIONS:
            v = M.get(f"{region}_{base.name}")
            assert (v.unit, v.role, v.over_segments, v.region, v.base) == (
                base.unit, base.role, base.over_segments, region, base.name)


def test_a_bad_trait_value_is_refused_at_definition():
    with pytest.raises(AssertionError, match="rolle"):
        M.MetricDef("x", "s", False, "d", role="rolle")


def test_schema_prints_the_traits(capsys):
    from aifbench.cli import main

    assert main(["schema", "--metrics"]) == 0
    out = capsys.readouterr().out
    assert "| tflops | TFLOP/s | higher | throughput | device | yes | from time | gemm, roofline |" in out
    assert "| tokens_per_s | tokens/s | higher | throughput | job | yes |" in out
    assert "| ref_tokens_per_j | tokens/J | higher | efficiency | device | no | ref_tokens_per_s, else " \
           "ref_decode_tokens_per_s / ref_power_mean_w |" in out
    assert "| ref_energy_j | J | lower | reading | device | no | window of region ref, segments summed |" in out
