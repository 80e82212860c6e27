"""Slow GPUs and nodes named: the median/MAD rule, node vs GPU attribution, the reference kind
"no GPU below X % of the partition median", and the generator's planted outliers found again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aifbench.analysis import outliers
from aifbench.analysis.data import Selection, headline, load_runs
from aifbench.analysis.references import Reference
from aifbench.analysis.validate import ValidateOptions, validate
from aifbench.errors import ConfigError
from tests._analysis_data import RunSpec, gemm, membw, write_run

REPO = Path(__file__).resolve().parents[3]
SEED = REPO / "results" / "reference" / "20261204T182739Z-gpu-kernels-f495fd"  # the real H200 run, shipped


def _partition(tmp_path: Path, factor: dict[int, float], nodes: int = 8, gpus: int = 4):
    spec = RunSpec(run_id="20260105T120000Z-out-00000d", nodes=tuple(f"n{i}" for i in range(nodes)),
                   gpus_per_node=gpus, cases=[gemm(4096), membw(1 << 30)], factor=factor)
    run = load_runs([write_run(tmp_path / "res", spec)])
    uuids = {(int(r.rank), str(r.node)): str(r.gpu_uuid) for r in run.runs.itertuples(index=False)}
    return run, outliers.partition(headline(run.metrics), uuids)


def test_four_slow_gpus_of_one_node_point_at_the_node_one_slow_gpu_at_the_gpu(tmp_path):
    slow = {9: 1.25, **{r: 1.25 for r in range(20, 24)}}  # GPU 1 of n2; all 4 GPUs of n5 (time x 1.25)
    _, (summary, found) = _partition(tmp_path, slow)
    gemm_rows = found[found["metric"] == "tflops"]
    node = gemm_rows[gemm_rows["kind"] == "node"]
    gpu = gemm_rows[gemm_rows["kind"] == "gpu"]
    assert list(node["node"]) == ["n5"] and int(node["slow_gpus_on_node"].iloc[0]) == 4
    assert list(gpu["rank"]) == [9] and list(gpu["node"]) == ["n2"] and int(gpu["gpu_index"].iloc[0]) == 1
    assert gpu["gpu_uuid"].iloc[0] == "GPU-000d-n2-1"
    assert -21 < float(gpu["dev_pct"].iloc[0]) < -19  # 1 / 1.25 = -20 %
    s = summary[summary["metric"] == "tflops"].iloc[0]
    assert s.n_gpus == 32 and s.n_nodes == 8 and s.slow_gpus == 1 and s.slow_nodes == 1
    text = outliers.describe(next(gpu.itertuples(index=False)))
    assert text.startswith("slow rank 9 (n2 cuda:1 GPU-000d-n2-1): ") and "% vs median" in text


def test_rule_needs_both_a_robust_z_and_the_minimum_deviation(tmp_path):
    _, (summary, found) = _partition(tmp_path, {3: 1.03})  # 3 % slow: far in z, under 5 %
    assert not len(found) and set(summary["metric"]) >= {"tflops", "gbps"}
    rule = outliers.Rule(min_deviation_pct=2.0)
    run, _ = _partition(tmp_path / "c", {3: 1.03})
    uuids = {(int(r.rank), str(r.node)): str(r.gpu_uuid) for r in run.runs.itertuples(index=False)}
    _, found = outliers.partition(headline(run.metrics), uuids, rule)
    assert set(found["rank"].dropna().astype(int)) == {3}
    assert "robust z" in rule.text() and "2 %" in rule.text()


def test_reference_no_gpu_below_pct_of_partition_median(tmp_path):
    run, _ = _partition(tmp_path, {6: 1.15})  # rank 6: 1 / 1.15 = 87 % of the median
    ref = Reference(benchmark="gemm", metric="tflops", min_pct_of_median=90.0)
    report = validate(Selection(run), [ref], ValidateOptions())
    (check,) = [c for c in report.checks if c.kind == "reference"]
    assert check.status == "fail" and "rank 6 (n1 cuda:2" in check.message and "% of the partition median" in check.message
    assert "every GPU >= 90 % of the partition median" in check.name
    ok = validate(Selection(run), [Reference(benchmark="gemm", metric="tflops", min_pct_of_median=85.0)],
                  ValidateOptions())
    assert [c.status for c in ok.checks if c.kind == "reference"] == ["pass"]
    with pytest.raises(ConfigError, match="min_pct_of_median must be in"):
        Reference(benchmark="gemm", metric="tflops", min_pct_of_median=120.0)


@pytest.mark.skipif(not SEED.is_dir(), reason="the shipped H200 reference run is missing")
def test_generated_partition_names_the_planted_slow_gpus_and_nodes(tmp_path):
    """scripts/bench/gen_ranks.py on the real 21-case H200 run; validate finds exactly what was planted."""
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / "gen_ranks.py"), str(SEED), str(tmp_path),
                          "--ranks", "96", "--slow-gpus", "5,70", "--slow-nodes", "10", "--tables", "metrics,runs",
                          "--jobs", "1"], capture_output=True, text=True, timeout=600, check=True)
    info = json.loads(out.stdout)
    run = load_runs([Path(info["dir"])])
    report = validate(Selection(run), [], ValidateOptions(flags="ignore"))
    node_fails = [c for c in report.checks if c.kind == "outliers-node" and c.status == "fail"]
    gpu_fails = [c for c in report.checks if c.kind == "outliers-gpu" and c.status == "fail"]
    assert node_fails and all("slow node node00010 (4 of 4 GPUs slow)" in c.message for c in node_fails)
    assert gpu_fails and all("slow rank 5 (node00001 cuda:1 GPU-" in c.message and "slow rank 70 (node00017 cuda:2"
                                 in c.message for c in gpu_fails)
    assert all(c.message.count("slow rank") == 2 for c in gpu_fails)  # nothing else named


@pytest.mark.skipif(not SEED.is_dir(), reason="the shipped H200 reference run is missing")
def test_generated_compacted_run_is_the_loose_one(tmp_path):
    """gen_ranks.py --compacted writes what --compacted-less writes, merged: every table of the
    seed (its v1 column names renamed), so validate reads the same run either way."""
    def generate(where: Path, *extra: str) -> Path:
        out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / "gen_ranks.py"), str(SEED), str(where),
                              "--ranks", "16", "--slow-gpus", "5", "--tables", "metrics,runs", "--jobs", "1", *extra],
                             capture_output=True, text=True, timeout=600, check=True)
        return Path(json.loads(out.stdout)["dir"])

    loose, compacted = generate(tmp_path / "loose"), generate(tmp_path / "compacted", "--compacted")
    assert sorted(p.name.split(".")[1].split("-")[0] for p in compacted.glob("*.parquet")) == ["compact", "compact"]
    a, b = load_runs([loose]), load_runs([compacted])
    for name in ("metrics", "runs"):
        key = ["rank", "case_id", "metric", "stat"] if name == "metrics" else ["rank"]
        x = a.tables[name].sort_values(key).reset_index(drop=True)
        y = b.tables[name].sort_values(key).reset_index(drop=True)
        assert len(x) == len(y) > 0
        pd.testing.assert_frame_equal(x, y, check_categorical=False)
