"""Metric traits (aifbench.metrics): consistent with each other, and equal to the private lists
they replaced (compare, samples, data, plots, telemetry efficiency/report/regions), so the
readers' behaviour is shown unchanged."""

from __future__ import annotations

import pytest

from aifbench import metrics as M
from aifbench.analysis import data, samples
from aifbench.analysis.plots import PLOTS, plotted
from aifbench.telemetry import regions as R
from aifbench.telemetry.efficiency import SOURCES
from aifbench.telemetry.report import split_metric

# --- the lists as they were before the traits (copied from the readers, once) ------------------
OLD_JOB_WIDE = {"tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s"}
OLD_ADDITIVE_UNITS = {"TFLOP/s", "GB/s", "1/s", "tokens/s"}  # token rates: 1/s before they said tokens/s
OLD_NOT_ADDITIVE = {"avg_busbw_gbps", "busbw_gbps", "algbw_gbps", "hbm_gbps", "decode_tokens_per_s_per_seq"}
OLD_LATENCIES = {"ttft_s", "itl_s", "time_to_train_s"}  # time_to_train_s: imported MLPerf score
OLD_NOT_MERITS = {"sm_clock_mean_mhz"}
OLD_TIME_BASES = ("time_s", "step_time_s")
OLD_RATE_UNITS = {"TFLOP/s", "GB/s", "1/s", "tokens/s", "%"}
OLD_NOT_FROM_TIME = {"avg_busbw_gbps", "sm_clock_mean_mhz", "tflops_per_w", "gbps_per_w", "tokens_per_j"}
OLD_TIME_AND_POWER = {"time_s", "step_time_s", "power_mean_w"}
OLD_EFFICIENCY = ("tflops_per_w", "gbps_per_w", "tokens_per_j")
OLD_DERIVED_EFFICIENCY = {"tflops": "tflops_per_w", "gbps": "gbps_per_w"}
OLD_WINDOW_METRICS = {"energy_j", "power_mean_w", "power_peak_w", "sm_clock_mean_mhz", "temperature_max_c",
                      "module_power_mean_w", "module_power_peak_w", "module_energy_j", "throttle_pct",
                      "power_capped_pct", "power_limit_w", "power_limit_default_w", "process_cpu_util_mean_pct",
                      "system_cpu_util_mean_pct", "process_rss_max_bytes", "telemetry_window_s"}
OLD_REPORT_WINDOW_METRICS = {"energy_j", "power_mean_w", "power_peak_w", "sm_clock_mean_mhz", "temperature_max_c",
                             "throttle_pct", "power_capped_pct", "power_limit_w", "module_power_mean_w",
                             "process_cpu_util_mean_pct", "telemetry_window_s"}
OLD_SUMMED = {"energy_j", "module_energy_j"}
OLD_LOWEST = {"power_limit_w"}
OLD_SOURCES = {
    "main": {"tflops_per_w": ("tflops", "model_tflops_per_device"), "gbps_per_w": ("gbps", "busbw_gbps"),
             "tokens_per_j": ("tokens_per_s_per_device", "tokens_per_s")},
    "ref": {"tokens_per_j": ("ref_tokens_per_s", "ref_decode_tokens_per_s")},
    "prefill": {"tokens_per_j": ("prefill_tokens_per_s",)},
    "decode": {"tokens_per_j": ("decode_tokens_per_s",), "gbps_per_w": ("hbm_gbps",)},
    "bare": {"tflops_per_w": ("bare_loop_tflops",)},
    "burst": {"tflops_per_w": ("burst_tflops",)},
}
REGION_CLOCKS = {f"{r}_sm_clock_mean_mhz" for r in M.REGIONS}
"""the one deliberate change: a region's mean SM clock is a telemetry reading like main's, no
longer a figure of merit (the old NOT_MERITS named main's only, so compare showed region clocks)"""


def _old_is_merit(name: str) -> bool:
    d = M.METRICS[name]
    return name not in OLD_NOT_MERITS and (d.higher_is_better or name in OLD_LATENCIES)


def _old_split(name: str) -> tuple[str, str]:
    for region in M.REGIONS:
        if name.startswith(region + "_") and name[len(region) + 1:] in OLD_WINDOW_METRICS:
            return region, name[len(region) + 1:]
    return "main", name


def test_merits_are_the_old_ones_but_region_clocks():
    old = {n for n in M.METRICS if _old_is_merit(n)}
    new = {n for n in M.METRICS if M.is_merit(n)}
    assert old - new == REGION_CLOCKS and not new - old
    assert not M.is_merit("no_such_metric")


def test_compare_normalisation_sets_are_the_old_ones():
    old_additive = {n for n, d in M.METRICS.items() if d.unit in OLD_ADDITIVE_UNITS and n not in OLD_NOT_ADDITIVE}
    assert set(M.names(additive=True)) == old_additive
    assert set(M.names(scope="job")) == OLD_JOB_WIDE


def test_sample_rules_are_the_old_ones():
    old = {n for n, d in M.METRICS.items()
           if n not in OLD_NOT_FROM_TIME and d.higher_is_better and d.unit in OLD_RATE_UNITS}
    assert {n for n in M.METRICS if samples.is_rate_of_time(n)} == old
    assert M.names(role="time_base") == OLD_TIME_BASES
    assert set(data.analysis_metrics()) == ({n for n in M.METRICS if _old_is_merit(n)} - REGION_CLOCKS) | OLD_TIME_AND_POWER


def test_telemetry_sets_are_the_old_ones():
    assert set(M.names(derivation="window", region=M.MAIN)) == OLD_WINDOW_METRICS
    assert OLD_REPORT_WINDOW_METRICS <= OLD_WINDOW_METRICS  # the summary now carries every window metric
    assert set(M.names(over_segments="sum", region=M.MAIN)) == OLD_SUMMED
    assert set(M.names(over_segments="lowest", region=M.MAIN)) == OLD_LOWEST
    assert SOURCES == OLD_SOURCES
    for name in list(M.METRICS) + ["ref_not_a_metric"]:
        assert split_metric(name) == _old_split(name), name


def test_plot_sets_are_the_old_ones():
    assert plotted("energy") == OLD_EFFICIENCY
    recomputed = {M.get(e).per_power.recomputed_from: e for e in plotted("energy")
                  if M.get(e).per_power.recomputed_from}
    assert recomputed == OLD_DERIVED_EFFICIENCY


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


def test_every_plots_trait_names_a_builder_that_reads_the_metric():
    import inspect

    from aifbench.analysis import plots

    def reads(build) -> str:  # the builder's source and that of the module functions it calls
        text = inspect.getsource(build)
        helpers = [f for n, f in vars(plots).items() if inspect.isfunction(f) and f"{n}(" in text and f is not build]
        return text + "".join(inspect.getsource(f) for f in helpers)

    builders = {name: build for name, _, build in PLOTS}
    for d in M.METRICS.values():
        for plot in d.plots:
            assert f'"{d.name}"' in reads(builders[plot]) or plot == "energy", (d.name, plot)
    assert plotted("energy") and all(M.get(m).role == "efficiency" for m in plotted("energy"))
