"""analysis/outliers.py on both sides of every boundary: the robust z threshold and the minimum
deviation (on it, just inside), the median (not the mean) as the centre, a node named only when
more than half of its GPUs are slow, nodes judged from 3, partitions from 3 ranks, lower-is-better
metrics, below_median's percentage. The partitions are built here; every z, MAD and deviation is
worked out by hand in the test (z = 0.6745 (x - median) / MAD)."""

from __future__ import annotations

import pandas as pd
import pytest

from aifbench.analysis import outliers as O


def rows(values_by_node: dict[str, list[float]], metric: str = "tflops") -> pd.DataFrame:
    out, rank = [], 0
    for node, values in values_by_node.items():
        for g, v in enumerate(values):
            out.append({"case_id": "c1", "label": "gemm", "metric": metric, "unit": "u", "rank": rank, "node": node,
                        "device": f"cuda:{g}", "value": v})
            rank += 1
    return pd.DataFrame(out)


def part(values_by_node, metric="tflops", rule=O.Rule()):
    return O.partition(rows(values_by_node, metric), {(7, "n1"): "GPU-seven"}, rule)


def test_the_centre_is_the_median_not_the_mean():
    """Ranks 100 110 90 100 110 90 100 40: median 100 (mean 92.5); |x - 100| sorted
    0 0 0 10 10 10 10 60 -> MAD 10; z(40) = 0.6745 x -60 / 10 = -4.047 < -3.5; -60 % <= -5 %."""
    summary, found = part({"n0": [100.0, 110.0, 90.0, 100.0], "n1": [110.0, 90.0, 100.0, 40.0]})
    assert summary["median"].tolist() == [100.0] and summary["mad"].tolist() == [10.0]
    assert found[["kind", "rank", "node", "device", "gpu_index", "gpu_uuid"]].values.tolist() == [
        ["gpu", 7, "n1", "cuda:3", 3, "GPU-seven"]]
    assert found["dev_pct"].iloc[0] == pytest.approx(-60.0) and found["median"].iloc[0] == 100.0
    assert found["z"].iloc[0] == pytest.approx(-4.047)
    assert summary["slow_gpus"].tolist() == [1] and summary["min"].tolist() == [40.0]
    assert summary["max"].tolist() == [110.0]
    assert summary["spread_pct"].iloc[0] == pytest.approx(14.826)  # 100 x 1.4826 x MAD 10 / median 100


def test_a_large_deviation_inside_a_wide_spread_is_not_slow():
    """As above with 60 in place of 40: |x - 100| sorted 0 0 0 10 10 10 10 40 -> MAD 10,
    z(60) = 0.6745 x -40 / 10 = -2.698 > -3.5: -40 % but not an outlier."""
    summary, found = part({"n0": [100.0, 110.0, 90.0, 100.0], "n1": [110.0, 90.0, 100.0, 60.0]})
    assert len(found) == 0 and summary["slow_gpus"].tolist() == [0]


@pytest.mark.parametrize("value, slow", [(95.0, True), (95.01, False)])
def test_minimum_deviation_on_and_just_inside(value, slow):
    """100 100.5 99.5 100 | 100.5 99.5 100 x: median 100, |x - 100| sorted 0 0 0 .5 .5 .5 .5 5 ->
    MAD 0.5; z(95) = 0.6745 x -5 / 0.5 = -6.745 (an outlier by z). Deviation -5 % is on the
    5 % minimum: slow; 95.01 is -4.99 %: not slow, whatever its z."""
    _, found = part({"n0": [100.0, 100.5, 99.5, 100.0], "n1": [100.5, 99.5, 100.0, value]})
    assert (list(found["rank"]) == [7]) is slow and len(found) == (1 if slow else 0)


def test_the_minimum_deviation_is_a_rule_setting():
    _, found = part({"n0": [100.0, 100.5, 99.5, 100.0], "n1": [100.5, 99.5, 100.0, 95.0]},
                    rule=O.Rule(min_deviation_pct=5.5))
    assert len(found) == 0  # -5 % is not 5.5 % below


def test_a_fast_gpu_of_a_higher_is_better_metric_is_not_slow():
    _, found = part({"n0": [100.0, 100.5, 99.5, 100.0], "n1": [100.5, 99.5, 100.0, 200.0]})
    assert len(found) == 0


def test_a_slow_latency_is_high_and_a_low_latency_is_not_flagged():
    """ttft_s (lower is better): 2.0 s among ~1.0: median 1.0, MAD 0.005, z = +134.9, +100 %."""
    _, found = part({"n0": [1.0, 1.005, 0.995, 1.0], "n1": [1.005, 0.995, 1.0, 2.0]}, metric="ttft_s")
    assert list(found["rank"]) == [7] and found["dev_pct"].iloc[0] == pytest.approx(100.0)
    _, found = part({"n0": [1.0, 1.005, 0.995, 1.0], "n1": [1.005, 0.995, 1.0, 0.5]}, metric="ttft_s")
    assert len(found) == 0


def test_a_node_with_all_its_gpus_slow_is_named_as_the_node():
    """Nodes of 2 GPUs: n0 99 99, n1 100 100, n2 101 101, n3 100 100, n4 50 50. Ranks: median 100,
    MAD 1 -> both GPUs of n4 slow (2 of 2). Node medians 99 100 101 100 50: median 100, MAD 1,
    z(50) = -33.7: the node n4 is named, its GPUs are not listed again."""
    summary, found = part({"n0": [99.0, 99.0], "n1": [100.0, 100.0], "n2": [101.0, 101.0], "n3": [100.0, 100.0],
                           "n4": [50.0, 50.0]})
    assert found[["kind", "node", "slow_gpus_on_node", "gpus_on_node"]].values.tolist() == [["node", "n4", 2, 2]]
    assert found["value"].iloc[0] == 50.0 and found["median"].iloc[0] == 100.0
    assert found["dev_pct"].iloc[0] == pytest.approx(-50.0)
    assert summary["slow_nodes"].tolist() == [1] and summary["slow_gpus"].tolist() == [0]


def test_a_node_with_half_its_gpus_slow_is_not_named():
    """n4 50 100: its median 75 is an outlier among the nodes (z = 0.6745 x -25 / 1), but only 1 of
    its 2 GPUs is slow (not more than half): rank 8 is named as a GPU instead."""
    summary, found = part({"n0": [99.0, 99.0], "n1": [100.0, 100.0], "n2": [101.0, 101.0], "n3": [100.0, 100.0],
                           "n4": [50.0, 100.0]})
    assert found[["kind", "rank", "node", "slow_gpus_on_node", "gpus_on_node"]].values.tolist() == [["gpu", 8, "n4", 1, 2]]
    assert summary["slow_nodes"].tolist() == [0]


def test_three_nodes_are_enough_to_judge_a_node():
    """Node medians 100 101 50: median 100, |d| 0 1 50 -> MAD 1, z(50) = -33.7: n2 (2 of 2 slow)."""
    _, found = part({"n0": [100.0, 100.0], "n1": [101.0, 101.0], "n2": [50.0, 50.0]})
    assert found[["kind", "node"]].values.tolist() == [["node", "n2"]]


def test_with_two_nodes_only_gpus_are_named():
    """n1's 2 GPUs at 50 among n0's 100s: 2 nodes judge no node; ranks 6 and 7 are slow GPUs."""
    _, found = part({"n0": [100.0, 100.0, 100.0, 100.0, 101.0, 99.0], "n1": [50.0, 50.0]})
    assert found[["kind", "rank"]].values.tolist() == [["gpu", 6], ["gpu", 7]]


def test_fewer_than_three_ranks_are_not_a_partition():
    summary, found = part({"n0": [100.0, 10.0]})
    assert len(summary) == 0 and len(found) == 0
    summary, _ = part({"n0": [100.0, 10.0, 100.0]})
    assert summary["n_gpus"].tolist() == [3]


@pytest.mark.parametrize("value, listed", [(89.0, True), (90.0, False), (91.0, False)])
def test_below_median_percentage_on_both_sides(value, listed):
    """Values 100 100 x: median 100; below 90 % of it: 89 is listed, 90 (exactly 90 %) is not."""
    r = rows({"n0": [100.0, 100.0, value]})
    out = O.below_median(r, 90.0)
    assert (list(out["rank"]) == [2]) is listed
    if listed:
        assert out["pct_of_median"].iloc[0] == pytest.approx(89.0) and out["median"].iloc[0] == 100.0


@pytest.mark.parametrize("value, listed", [(1.25, True), (1.1328125, True), (1.125, False)])
def test_below_median_for_latencies_is_above_200_minus_pct(value, listed):
    """ttft_s 1 1 x, pct 87.5: listed above 200 - 87.5 = 112.5 % of the median: 125 % and
    113.28125 % yes, 112.5 % (exactly on it; binary fractions, so exact) no."""
    out = O.below_median(rows({"n0": [1.0, 1.0, value]}, metric="ttft_s"), 87.5)
    assert (len(out) == 1) is listed


def test_worst_orders_by_absolute_deviation():
    df = pd.DataFrame({"dev_pct": [-10.0, 30.0, -20.0], "rank": [0, 1, 2]})
    assert O.worst(df, 2)["rank"].tolist() == [1, 2]


def test_worst_lists_ten_by_default():
    df = pd.DataFrame({"dev_pct": [-float(i) for i in range(12)], "rank": list(range(12))})
    assert O.worst(df)["rank"].tolist() == list(range(11, 1, -1))  # 11 .. 2: the ten farthest


def test_for_selection_per_run_with_uuids(tmp_path):
    """A 5-rank run without noise, rank 4 at half speed (tflops x, x, x, x, x/2: MAD 0, so the mean
    |deviation| x/10 stands in: z = -(x/2) / (1.253314 x/10) = -3.99 < -3.5, -50 %) and a 2-rank run
    (too few ranks): the slow rank of the first is named with its GPU's UUID; the second gets no summary."""
    from aifbench.analysis.data import load_runs
    from tests._analysis_data import RunSpec, gemm, write_run

    three = write_run(tmp_path, RunSpec(run_id="20260105T120000Z-sel-00000a", gpus_per_node=5, cases=[gemm(1024)],
                                        factor={4: 2.0}, noise=0.0))
    two = write_run(tmp_path, RunSpec(run_id="20260105T120000Z-sel-00000b", gpus_per_node=2, cases=[gemm(1024)]))
    run = load_runs([three, two])
    summary, found = O.for_selection(run.metrics, run.runs)
    assert summary["run_id"].unique().tolist() == ["20260105T120000Z-sel-00000a"]
    slow = found[found["metric"] == "tflops"]
    assert slow[["run_id", "kind", "rank", "gpu_uuid"]].values.tolist() == [
        ["20260105T120000Z-sel-00000a", "gpu", 4, "GPU-000a-n1-4"]]
    s2, f2 = O.for_selection(load_runs([two]).metrics, load_runs([two]).runs)
    assert len(s2) == 0 and len(f2) == 0
