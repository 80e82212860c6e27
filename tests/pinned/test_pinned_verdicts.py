"""Every verdict branch of validate, compare and baseline check, in both directions: bounds
(lower, upper), fraction of peak, unjudged and skipped references, slow AND fast outliers (a
fast GPU never fails), drift worse AND better (better never fails), failed and skipped cases.
Data: synthetic runs written through the real ShardWriter (tests/_analysis_data.py)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from aifbench.analysis import references
from aifbench.analysis.compare import CompareOptions, compare
from aifbench.analysis.data import Selection, load_runs
from aifbench.analysis.validate import ValidateOptions, drift_checks, validate
from aifbench.cli import main
from tests._analysis_data import CaseSpec, RunSpec, gemm, membw, write_run

NODES = ("n1", "n2", "n3")
# a GEMM at 700 TFLOP/s of a 989 peak (70.8 %), a copy at 3000 GB/s, and a case judged on time alone
TIME_ONLY = CaseSpec("gemm", {"shape": "square", "m": 64, "n": 1024, "k": 1024, "dtype": "fp32"}, 0.01)
CASES = [gemm(4096, tflops=700.0, peak=989.0), membw(1 << 30, gbps=3000.0, peak=None), TIME_ONLY]


def _sel(tmp_path, run_id="20260105T120000Z-pin-00000a", **kw) -> Selection:
    spec = RunSpec(**{"run_id": run_id, "nodes": NODES, "gpus_per_node": 2, "cases": CASES, **kw})
    return Selection(load_runs([write_run(tmp_path / "results", spec)]))


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Selection:
    return _sel(tmp_path_factory.mktemp("healthy"))


def _ref_check(sel: Selection, opts: ValidateOptions = ValidateOptions(), **ref):
    refs = references.parse([ref], "test")
    (check,) = [c for c in validate(sel, refs, opts).checks if c.kind == "reference"]
    return check


# --- references: bounds, fraction of peak, unjudged, skipped ---------------------------------

@pytest.mark.parametrize("bounds, status, text", [
    (dict(lower=2900.0), "pass", "6 row(s) pass"),
    (dict(lower=3100.0), "fail", "< lower 3100"),
    (dict(upper=3100.0), "pass", "row(s) pass"),
    (dict(upper=2900.0), "fail", "> upper 2900"),          # a value above an upper bound fails
    (dict(lower=2900.0, upper=3100.0), "pass", "row(s) pass"),
])
def test_bounds_in_both_directions(healthy, bounds, status, text):
    check = _ref_check(healthy, benchmark="membw", metric="gbps", **bounds)
    assert check.status == status and text in check.message
    if status == "fail":
        assert "6 of 6 failed" in check.message


def test_nominal_value_is_reported_as_a_percentage(healthy):
    check = _ref_check(healthy, benchmark="membw", metric="gbps", lower=2500.0, value=3000.0)
    pct = float(re.search(r"\((\d+\.\d) % of nominal 3000\)", check.message).group(1))
    assert pct == pytest.approx(100 * check.value / 3000.0, abs=0.051) and 98 < pct < 102


def test_fraction_of_peak_fails_below_and_passes_above(healthy):
    low = _ref_check(healthy, benchmark="gemm", metric="tflops", params={"m": 4096}, fraction_of_peak=0.75)
    assert low.status == "fail" and re.search(r"= 70\.\d % of peak 989 < 75 %", low.message)
    ok = _ref_check(healthy, benchmark="gemm", metric="tflops", params={"m": 4096}, fraction_of_peak=0.65)
    assert ok.status == "pass" and re.search(r"= 70\.\d % of peak 989", ok.message)


def test_fraction_of_peak_without_a_peak_is_unjudged_not_passed(healthy):
    check = _ref_check(healthy, benchmark="membw", metric="gbps", fraction_of_peak=0.5)
    assert check.status == "skip" and "no datasheet peak" in check.message


def test_reference_with_nothing_to_judge_is_skipped_and_strict_fails_it(healthy):
    big = dict(benchmark="membw", metric="gbps", params_min={"size_bytes": 1 << 50}, lower=1.0)  # planned, not run
    check = _ref_check(healthy, **big)
    assert check.status == "skip" and "none of the run's" in check.message
    strict = _ref_check(healthy, ValidateOptions(strict=True), **big)
    assert strict.status == "fail" and "not judged" in strict.message


def test_reference_to_a_benchmark_the_run_did_not_plan_is_not_the_runs_to_meet(healthy):
    check = _ref_check(healthy, benchmark="hostlink", metric="link_gbps", lower=1.0)
    assert check.status == "skip" and check.message == "not planned: the run planned no hostlink case"
    strict = _ref_check(healthy, ValidateOptions(strict=True), benchmark="hostlink", metric="link_gbps", lower=1.0)
    assert strict.status == "skip"  # --strict fails what the run planned and left unjudged, not this


# --- outliers: slow fails, fast passes, for higher- and lower-is-better metrics ---------------

def _outliers(sel: Selection, metric: str):
    return [c for c in validate(sel, [], ValidateOptions()).checks
            if c.kind == "outliers-gpu" and c.name.endswith(metric)]


def test_healthy_run_has_no_outlier(healthy):
    assert {c.status for c in validate(healthy, [], ValidateOptions()).checks} == {"pass"}


def test_slow_gpu_fails(tmp_path):
    sel = _sel(tmp_path, factor={4: 1.25})               # rank 4 takes 25 % longer
    (tf,) = _outliers(sel, "tflops")
    assert tf.status == "fail" and "slow rank 4" in tf.message and tf.message.count("rank") == 1
    high = [c for c in _outliers(sel, "time_s")]
    assert high and high[0].status == "fail" and "high rank 4" in high[0].message  # lower-is-better metric


def test_fast_gpu_does_not_fail(tmp_path):
    sel = _sel(tmp_path, factor={4: 0.75})               # rank 4 a third faster than the others
    report = validate(sel, [], ValidateOptions())
    assert report.exit_code == 0, [c.message for c in report.failed]
    assert [c.status for c in _outliers(sel, "tflops")] == ["pass"]
    assert [c.status for c in _outliers(sel, "time_s")] == ["pass"]


# --- ran: failed and skipped cases -------------------------------------------------------------

def test_failed_case_fails_and_skipped_case_is_skipped(tmp_path):
    failed = validate(_sel(tmp_path, status={2: "failed"}), [], ValidateOptions())
    assert {c.status for c in failed.checks if c.kind == "ran"} == {"fail"} and failed.exit_code == 1
    skipped = validate(_sel(tmp_path, run_id="20260105T120000Z-pin-00000b", status={r: "skipped" for r in range(6)}),
                       [], ValidateOptions())
    assert {c.status for c in skipped.checks if c.kind == "ran"} == {"skip"} and skipped.exit_code == 0


# --- drift and compare against a baseline: worse fails, better passes ---------------------------

@pytest.fixture(scope="module")
def drift(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    base = write_run(root / "results", RunSpec(run_id="20260105T100000Z-base-0000b", nodes=NODES, gpus_per_node=2,
                                               cases=[CASES[0], CASES[2]], seed=1))  # no membw
    runs = {}
    for i, (name, factor) in enumerate([("slower", 1.15), ("faster", 0.85), ("same", 1.0)]):
        spec = RunSpec(run_id=f"20260105T1{i + 1}0000Z-{name}-0000{i}", nodes=NODES, gpus_per_node=2, cases=CASES,
                       factor={r: factor for r in range(6)}, seed=10 + i)
        runs[name] = write_run(root / "results", spec)
    return root / "results", base, runs


def _drift(drift, name):
    _, base, runs = drift
    checks = drift_checks(Selection(load_runs([runs[name]])), load_runs([base]), "baseline b", ValidateOptions())
    # name: "drift vs baseline b: <benchmark> <params...> <metric>" -> key "<metric>/<benchmark>"
    return {f"{c.name.split()[-1]}/{c.name.split(': ', 1)[1].split()[0]}": c for c in checks}


def test_drift_worse_fails(drift):
    checks = _drift(drift, "slower")
    assert checks["tflops/gemm"].status == "fail" and "worse" in checks["tflops/gemm"].message


def test_drift_better_passes(drift):
    checks = _drift(drift, "faster")
    assert checks["tflops/gemm"].status == "pass" and "better" in checks["tflops/gemm"].message


def test_drift_without_a_baseline_case_is_skipped(drift):
    checks = _drift(drift, "same")
    assert checks["gbps/membw"].status == "skip" and "baseline has no gbps" in checks["gbps/membw"].message
    assert checks["tflops/gemm"].status == "pass" and "same" in checks["tflops/gemm"].message


def test_compare_verdict_follows_the_metric_direction(drift):
    _, base, runs = drift
    for name, want in (("slower", "worse"), ("faster", "better")):
        t = compare(Selection(load_runs([runs[name]])), CompareOptions(metrics=("tflops", "time_s")),
                    baseline=load_runs([base]))
        t = t[t["case"].str.contains("4096")].set_index("metric")
        assert t.loc["tflops", "verdict"] == want and t.loc["time_s", "verdict"] == want
        ratio = 1 / 1.15 if name == "slower" else 1 / 0.85   # throughput scales with 1 / time
        assert t.loc["tflops", "vs_baseline_pct"] == pytest.approx((ratio - 1) * 100, abs=1.5)
        assert t.loc["time_s", "vs_baseline_pct"] < 0 if name == "faster" else t.loc["time_s", "vs_baseline_pct"] > 0


def test_baseline_check_exits_1_only_when_worse(drift, tmp_path):
    root, base, runs = drift
    assert main(["baseline", "save", base.name, "--name", "b", "--results", str(root), "--force"]) == 0
    assert main(["baseline", "check", runs["faster"].name, "--name", "b", "--results", str(root)]) == 0
    assert main(["baseline", "check", runs["slower"].name, "--name", "b", "--results", str(root)]) == 1


# --- compare normalisation: job-wide throughput per GPU, per node, per watt -----------------

def test_per_gpu_per_node_per_watt_by_hand(tmp_path):
    from tests._analysis_data import train

    spec = RunSpec(run_id="20260105T120000Z-norm-0000a", nodes=("n1",), gpus_per_node=2, cases=[train()],
                   power_w=500.0)
    sel = Selection(load_runs([write_run(tmp_path / "results", spec)]))
    m = sel.metrics.set_index(["metric", "stat", "rank"])["value"]
    t = compare(sel, CompareOptions(metrics=("tokens_per_s", "tokens_per_s_per_device"))).set_index("metric")
    job = (m["tokens_per_s", "median", 0] + m["tokens_per_s", "median", 1]) / 2   # median of two ranks
    assert t.loc["tokens_per_s", "median"] == pytest.approx(job)
    assert t.loc["tokens_per_s", "per_gpu"] == pytest.approx(job / 2)          # job-wide: / world size 2
    assert t.loc["tokens_per_s", "per_node"] == pytest.approx(job)             # x 2 GPUs on the node
    assert t.loc["tokens_per_s", "per_w"] == pytest.approx(job / 2 / 500.0)
    dev = (m["tokens_per_s_per_device", "median", 0] + m["tokens_per_s_per_device", "median", 1]) / 2
    assert t.loc["tokens_per_s_per_device", "per_gpu"] == pytest.approx(dev)  # already per device


def test_one_slow_gpu_does_not_make_its_node_slow(tmp_path):
    """A node's value is the median of its GPUs: one GPU at half speed is a slow GPU, not a slow node."""
    sel = _sel(tmp_path, nodes=("n1", "n2", "n3", "n4"), gpus_per_node=3, factor={3: 2.0})  # rank 3: first of n2
    checks = validate(sel, [], ValidateOptions()).checks
    (gpu,) = [c for c in checks if c.kind == "outliers-gpu" and c.name.endswith("tflops")]
    (node,) = [c for c in checks if c.kind == "outliers-node" and c.name.endswith("tflops")]
    assert gpu.status == "fail" and "slow rank 3" in gpu.message
    assert node.status == "pass", node.message


def test_spread_is_the_iqr_of_the_raw_samples_in_percent_of_the_median(tmp_path):
    spec = RunSpec(run_id="20260105T120000Z-sprd-0000a", cases=[TIME_ONLY], noise=0.05)  # one rank, 9 repeats
    sel = Selection(load_runs([write_run(tmp_path / "results", spec)]))
    raw = sel.results.tables["samples"]["value"].to_numpy()
    q1, median, q3 = np.percentile(raw, [25, 50, 75])  # numpy as the independent reference
    (row,) = compare(sel, CompareOptions(metrics=("time_s",))).itertuples(index=False)
    assert row.median == pytest.approx(median) and (row.q1, row.q3) == (pytest.approx(q1), pytest.approx(q3))
    assert row.spread_pct == pytest.approx((q3 - q1) / median * 100) and 1 < row.spread_pct < 20


def test_an_incomplete_run_is_left_out_of_pooled_figures_unless_asked(tmp_path):
    """sysA lost rank 1's shards (a lost array task): its run is incomplete, and compare pools only
    complete runs unless include_incomplete; a run with every rank present is compared."""
    root = tmp_path / "results"
    lost = write_run(root, RunSpec(run_id="20260105T120000Z-lost-0000a", system="sysA", gpus_per_node=2,
                                   cases=[gemm(4096)]))
    for shard in lost.glob("*.rank00001.*"):
        shard.unlink()
    write_run(root, RunSpec(run_id="20260105T130000Z-full-0000b", system="sysB", gpus_per_node=2, cases=[gemm(4096)]))
    sel = Selection(load_runs([root / "20260105T120000Z-lost-0000a", root / "20260105T130000Z-full-0000b"]))
    assert set(compare(sel, CompareOptions())["group"]) == {"sysB"}
    assert set(compare(sel, CompareOptions(include_incomplete=True))["group"]) == {"sysA", "sysB"}
    # a run whose plan was not stored (older runs): the missing rank alone makes it incomplete
    for shard in lost.glob("runs.*.parquet"):
        df = pd.read_parquet(shard)
        df.assign(config="{}").to_parquet(shard, index=False)
    sel = Selection(load_runs([root / "20260105T120000Z-lost-0000a", root / "20260105T130000Z-full-0000b"]))
    assert set(compare(sel, CompareOptions())["group"]) == {"sysB"}


def test_no_gpu_below_pct_of_median_fails_a_slow_gpu_not_a_fast_one(tmp_path):
    fast = _sel(tmp_path, factor={4: 0.8})                               # rank 4 at 125 % of the median
    check = _ref_check(fast, benchmark="gemm", metric="tflops", params={"m": 4096}, min_pct_of_median=90.0)
    assert check.status == "pass", check.message
    slow = _sel(tmp_path, run_id="20260105T120000Z-pin-00000c", factor={4: 1.25})  # 80 % of the median
    check = _ref_check(slow, benchmark="gemm", metric="tflops", params={"m": 4096}, min_pct_of_median=90.0)
    assert check.status == "fail" and "rank 4" in check.message
