"""compare: statistics on raw samples, groupings, normalisations, baselines, formats, bad input."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests._analysis_data import A100, RunSpec, allreduce, gemm, membw, write_run
from aifbench.analysis import samples as samp
from aifbench.analysis.compare import CompareOptions, compare
from aifbench.analysis.data import select
from aifbench.analysis.stats import bootstrap_median_ratio, compare_samples, mann_whitney, robust_z
from aifbench.cli import main
from aifbench.errors import ConfigError

AIFBENCH = [sys.executable, "-m", "aifbench"]


# --- statistics -----------------------------------------------------------------------------

def _brute_force_p(a, b) -> float:
    """Two-sided exact p of U by enumerating every split of the pooled sample."""
    pooled = list(a) + list(b)
    n_a, mu = len(a), len(a) * len(b) / 2

    def u(idx):
        xs = [pooled[i] for i in idx]
        ys = [pooled[i] for i in range(len(pooled)) if i not in idx]
        return sum(x > y for x in xs for y in ys)

    observed = abs(u(range(n_a)) - mu)
    splits = list(itertools.combinations(range(len(pooled)), n_a))
    return sum(abs(u(s) - mu) >= observed - 1e-12 for s in splits) / len(splits)


@pytest.mark.parametrize("a,b", [([3.1, 4.7, 5.2, 6.0, 8.8], [1.0, 2.2, 2.9, 7.5]),
                                 ([1.5, 2.5, 3.5], [4.0, 5.0, 6.0, 7.0, 8.0]),
                                 ([10.0, 1.0, 7.0, 3.0], [2.0, 9.0, 4.0, 8.0])])
def test_mann_whitney_exact_matches_enumeration(a, b):
    u, p, method = mann_whitney(np.array(a), np.array(b))
    assert method == "exact"
    assert p == pytest.approx(_brute_force_p(a, b), abs=1e-12)


def test_mann_whitney_matches_scipy_values():
    # expected values computed once with scipy.stats.mannwhitneyu (scipy 1.17.1), not a dependency
    assert mann_whitney([19, 22, 16, 29, 24], [20, 11, 17, 12])[:2] == pytest.approx((17.0, 0.1111111111111111))
    ties = mann_whitney([1, 2, 2, 3, 3, 3, 4, 5, 5, 6], [3, 4, 4, 5, 6, 6, 7, 7, 8, 9, 9])  # asymptotic, tie-corrected
    assert ties[2] == "normal" and ties[:2] == pytest.approx((15.5, 0.005625214779700691))
    assert mann_whitney([1.1, 2.5, 3.3, 4.8, 5.0, 6.2, 7.7, 8.1],
                        [2.0, 9.5, 10.1, 11.3, 12.0, 3.9])[:2] == pytest.approx((12.0, 0.14185814185814188))


def test_mann_whitney_all_equal_is_no_evidence():
    assert mann_whitney(np.ones(30), np.ones(30))[1] == 1.0


def test_bootstrap_interval_covers_the_true_ratio_and_is_seeded():
    rng = np.random.default_rng(1)
    b = rng.lognormal(0.0, 0.05, 200)
    a = 1.25 * rng.lognormal(0.0, 0.05, 200)
    low, high = bootstrap_median_ratio(a, b)
    assert low < 1.25 < high and high - low < 0.05
    assert (low, high) == bootstrap_median_ratio(a, b)
    same = compare_samples(rng.normal(10, 1, 50), rng.normal(10, 1, 50))
    assert same.ci_low < 1 < same.ci_high and not same.significant()
    assert compare_samples(a, b).significant()


def test_robust_z_names_the_outlier_and_survives_zero_mad():
    z = robust_z([100, 101, 99, 100, 70, 100.5, 99.5, 100])
    assert np.argmin(z) == 4 and z[4] < -3.5 and (abs(np.delete(z, 4)) < 3.5).all()
    z = robust_z([5, 5, 5, 5, 5, 4])  # MAD = 0: mean absolute deviation stands in
    assert z[5] < -3.5
    assert (robust_z([2, 2, 2]) == 0).all()


# --- compare on stored runs -----------------------------------------------------------------

@pytest.fixture
def two_systems(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_run(root, RunSpec(run_id="20260105T120000Z-a-000001", system="sysA", nodes=("a1", "a2"),
                            gpus_per_node=4, power_w=600.0, cases=[gemm(4096, tflops=700), membw(1 << 30)]))
    write_run(root, RunSpec(run_id="20260105T120000Z-b-000002", system="sysB", device=A100, nodes=("b1",),
                            gpus_per_node=2, seed=3,
                            cases=[gemm(4096, tflops=250, peak=312.0), membw(1 << 30, gbps=1700, peak=2039.0)]))
    return root


def test_rate_samples_follow_the_time_samples(two_systems):
    sel = select([two_systems], include_reference=False)
    idx = samp.index(sel.results.tables["samples"])
    maxes = samp.max_index(sel.metrics)
    row = sel.metrics[(sel.metrics["metric"] == "tflops") & (sel.metrics["stat"] == "median")].iloc[0]
    s = samp.for_row(idx, maxes, row.run_id, row.case_id, row["rank"], "tflops", row.value, row.n_samples)
    t = idx[(row.run_id, row.case_id, int(row["rank"]), "time_s")]
    assert s == pytest.approx(2.0 * 4096 ** 3 / t * 1e-12)  # exactly work / t_i
    assert np.median(s) == pytest.approx(row.value, rel=0.02)
    # a rate whose max row disagrees with the time samples is not given samples it did not come from
    assert samp.for_row(idx, {k: v * 1.1 for k, v in maxes.items()}, row.run_id, row.case_id, row["rank"],
                        "tflops", row.value, row.n_samples) is None


def test_compare_by_system_normalises_per_gpu_node_watt_and_peak(two_systems):
    out = compare(select([two_systems], include_reference=False), CompareOptions(by="system"))
    g = out[(out["metric"] == "tflops")].set_index("group")
    assert set(out["group"]) == {"sysA", "sysB"}
    assert g.loc["sysA", "median"] == pytest.approx(700, rel=0.02)
    assert g.loc["sysA", "per_node"] == pytest.approx(4 * g.loc["sysA", "per_gpu"])
    assert g.loc["sysB", "per_node"] == pytest.approx(2 * g.loc["sysB", "per_gpu"])
    assert g.loc["sysA", "per_w"] == pytest.approx(700 / 600, rel=0.02)
    assert math.isnan(g.loc["sysB", "per_w"])  # no power recorded there
    assert g.loc["sysA", "pct_of_peak"] == pytest.approx(100 * 700 / 989, rel=0.02)
    assert g.loc["sysB", "pct_of_peak"] == pytest.approx(100 * 250 / 312, rel=0.02)
    assert (g.loc["sysA", "n_ranks"], g.loc["sysA", "n_samples"]) == (8, 8 * 9)
    assert 0 < g.loc["sysA", "spread_pct"] < 5
    assert "time_s" not in set(out["metric"]) and "power_mean_w" not in set(out["metric"])


def test_compare_by_node_and_gpu(two_systems):
    sel = select([two_systems], include_reference=False)
    by_node = compare(sel, CompareOptions(by="node", metrics=("gbps",)))
    assert list(by_node["group"]) == ["a1", "a2", "b1"] and (by_node["n_ranks"] == [4, 4, 2]).all()
    by_gpu = compare(sel, CompareOptions(by="gpu", metrics=("tflops",)))
    assert set(by_gpu["group"]) == {"NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"}


def test_job_wide_metric_is_divided_per_gpu(tmp_path):
    from tests._analysis_data import train

    write_run(tmp_path, RunSpec(run_id="r-train", nodes=("n1", "n2"), gpus_per_node=4,
                                cases=[train(tps=40000.0)]))
    out = compare(select([tmp_path], include_reference=False), CompareOptions(metrics=("tokens_per_s",)))
    assert out["per_gpu"].iloc[0] == pytest.approx(out["median"].iloc[0] / 8)
    assert out["per_node"].iloc[0] == pytest.approx(out["median"].iloc[0] / 2)


def test_baseline_difference_is_tested_on_raw_samples(tmp_path):
    cases = [gemm(4096, tflops=700), membw(1 << 30, gbps=3000), allreduce(1 << 26)]
    write_run(tmp_path, RunSpec(run_id="base", nodes=("n1",), gpus_per_node=4, cases=cases, seed=1))
    write_run(tmp_path, RunSpec(run_id="same", nodes=("n1",), gpus_per_node=4, cases=cases, seed=2, system="sysB"))
    slow = [gemm(4096, tflops=600), membw(1 << 30, gbps=3000), allreduce(1 << 26, busbw=180)]
    write_run(tmp_path, RunSpec(run_id="slow", nodes=("n1",), gpus_per_node=4, cases=slow, seed=3, system="sysC"))
    from aifbench.analysis import baseline

    _, base = baseline.load(tmp_path, "base")
    out = compare(select([tmp_path], include_reference=False), CompareOptions(), baseline=base)
    assert "base" not in set(out["group"])
    v = out.set_index(["group", "metric"])
    assert (v.xs("sysB")["verdict"] == "same").all()
    assert v.loc[("sysC", "tflops"), "verdict"] == "worse"
    assert v.loc[("sysC", "tflops"), "vs_baseline_pct"] == pytest.approx(-100 / 7, abs=1.0)
    assert v.loc[("sysC", "tflops"), "ci_high_pct"] < 0 and v.loc[("sysC", "tflops"), "p_value"] < 1e-6
    assert v.loc[("sysC", "busbw_gbps"), "verdict"] == "better"
    assert v.loc[("sysC", "gbps"), "verdict"] == "same"


# --- the command line -----------------------------------------------------------------------

def test_cli_formats(two_systems, capsys):
    assert main(["compare", str(two_systems), "--format", "json", "--no-reference"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["group"] for r in rows} == {"sysA", "sysB"} and all("per_node" in r for r in rows)
    assert main(["compare", str(two_systems), "--format", "csv", "--by", "partition", "--no-reference"]) == 0
    from io import StringIO

    df = pd.read_csv(StringIO(capsys.readouterr().out))
    assert set(df["group"]) == {"booster"} and set(df["metric"]) == {"tflops", "gbps", "tflops_per_w", "gbps_per_w"}
    assert main(["compare", str(two_systems), "--format", "markdown", "--metric", "tflops", "--no-reference"]) == 0
    md = capsys.readouterr().out
    assert "| group | case | metric |" in md and md.count("\n| sys") == 2
    assert main(["compare", str(two_systems), "--no-reference"]) == 0
    assert "sysA" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["--by", "rack"], "allowed: gpu, node, partition, system"),
    (["--metric", "flops"], "metrics in the selection: gbps, gbps_per_w, power_mean_w"),
    (["--metric", "busbw_gbps"], "defined but not in the selected results"),
    (["--format", "xml"], "allowed: table, json, csv, markdown"),
    (["--baseline", "nope"], "no baseline or run 'nope'"),
])
def test_cli_bad_input_exits_2_and_lists_choices(two_systems, capsys, argv, needle):
    assert main(["compare", str(two_systems), "--no-reference", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_cli_empty_selection_and_missing_path(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--no-reference"]) == 2
    assert "no results found" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "absent")]) == 2
    assert "no such results directory" in capsys.readouterr().err


def test_corrupt_and_newer_shards_are_skipped_and_named(two_systems):
    run = two_systems / "20260105T120000Z-b-000002"
    (run / "metrics.rank00001.main.parquet").write_bytes(b"PAR1 not really parquet")
    df = pd.read_parquet(run / "samples.rank00000.main.parquet")
    df["schema_version"] = 99
    df.to_parquet(run / "samples.rank00000.main.parquet")
    # rank 1's metrics are lost, so run b is incomplete (its plan is stored): pooled only when asked
    proc = subprocess.run(AIFBENCH + ["compare", str(two_systems), "--no-reference", "--format", "csv",
                                      "--include-incomplete"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "metrics.rank00001.main.parquet" in err and "unreadable Parquet" in err
    assert "samples.rank00000.main.parquet" in err and "newer" in err
    assert "sysB" in proc.stdout  # the rest of the run is still compared


def test_reference_runs_are_included_by_default(two_systems, tmp_path, capsys):
    ref = tmp_path / "reference"
    write_run(ref, RunSpec(run_id="20250101T000000Z-ref-00000a", system="jupiter", seed=9))
    assert main(["compare", str(two_systems), "--reference-dir", str(ref), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["group"] for r in rows if r["reference"]} == {"jupiter"}
    assert main(["compare", str(two_systems), "--reference-dir", str(ref), "--no-reference", "--format", "json"]) == 0
    assert "jupiter" not in {r["group"] for r in json.loads(capsys.readouterr().out)}
    # the default store layout: results/reference is found without a flag, baselines are not read twice
    shutil.copytree(ref / "20250101T000000Z-ref-00000a", two_systems / "reference" / "20250101T000000Z-ref-00000a")
    assert main(["baseline", "save", "20260105T120000Z-a", "--name", "a", "--results", str(two_systems)]) == 0
    capsys.readouterr()
    sel = select([two_systems], reference_dir=two_systems / "reference")
    assert sel.reference_runs == {"20250101T000000Z-ref-00000a"}
    assert not sel.metrics.duplicated(["run_id", "case_id", "rank", "metric", "stat"]).any()


def test_empty_metrics_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no results found"):
        select([tmp_path], include_reference=False)


def test_real_two_rank_run(tmp_path):
    """A real 2-process run on this CPU (gloo collectives, GEMM on both ranks) through compare."""
    proc = subprocess.run(AIFBENCH + ["run", "smoke", "--nproc", "2", "--only", "collectives,gemm",
                                      "--results", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = compare(select([tmp_path], include_reference=False), CompareOptions(by="node"))
    bus = out[out["metric"] == "busbw_gbps"]
    assert len(bus) >= 5 and (bus["n_ranks"] == 2).all()
    assert (bus["n_samples"] > 2).all()  # the raw time samples of both ranks, not just two medians
    assert bus["per_node"].isna().all()  # a link bandwidth is not added up over a node
    g = out[out["metric"] == "tflops"]
    assert np.allclose(g["per_node"], 2 * g["per_gpu"]) and (g["median"] > 0).all()
