"""analysis/completeness.py on its boundaries: a case on every rank, on all but one, on none; one
rank; unreadable shards alone make a run incomplete; the world size is the recorded one, not the
ranks present; a reference for a GPU model the run did not use need not judge. Each verdict is
checked with what it names (case, ranks, shard, reference)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aifbench.analysis import completeness as C
from aifbench.analysis.checks import Check
from aifbench.analysis.references import Reference

PLAN = C.RunPlan({"c1": "membw copy 4 KiB", "c2": "membw copy 8 KiB"}, 3)


def metrics(pairs: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame({"case_id": [c for c, _ in pairs], "rank": [r for _, r in pairs]})


def runs(statuses: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame({"rank": list(statuses), "status": list(statuses.values())})


ALL = [(c, r) for c in ("c1", "c2") for r in range(3)]


def test_every_case_on_every_rank_passes():
    checks = C.completeness_checks(PLAN, metrics(ALL), runs({0: "ok", 1: "ok", 2: "failed"}))
    assert [(c.status, c.message) for c in checks] == [("pass", "all 2 case(s) on all 3 rank(s)")]


def test_a_case_missing_on_one_rank_names_the_case_and_the_rank():
    have = [p for p in ALL if p != ("c2", 1)]
    assert C.missing_ranks(PLAN, metrics(have)) == {"c2": [1]}
    checks = C.completeness_checks(PLAN, metrics(have), runs({0: "ok", 1: "ok", 2: "ok"}))
    assert [(c.status, c.name, c.message) for c in checks] == [
        ("incomplete", "complete: every case of the plan on every rank", "1 of 2 case(s) missing on some rank"),
        ("incomplete", "complete: membw copy 8 KiB", "no rows from rank(s) 1 of 3 (c2)")]


def test_a_case_on_no_rank_never_ran():
    have = [p for p in ALL if p[0] == "c1"]
    checks = C.completeness_checks(PLAN, metrics(have), runs({0: "ok", 1: "ok", 2: "ok"}))
    assert checks[1].message == "never ran: no rows from any of its 3 rank(s) (c2)"


def test_ranks_without_a_runs_row_make_the_run_incomplete_and_are_named():
    """Every case on every rank, but ranks 1 and 2 left no runs (provenance) row: not complete."""
    checks = C.completeness_checks(PLAN, metrics(ALL), runs({0: "ok"}))
    assert [c.status for c in checks] == ["incomplete", "incomplete"]
    assert checks[0].message.endswith("; 2 rank(s) without a runs row")
    assert checks[1].message.startswith("no runs row from 2 of 3 rank(s): 1, 2")


def test_no_rows_at_all_misses_every_case_on_every_rank():
    assert C.missing_ranks(PLAN, metrics([])) == {"c1": [0, 1, 2], "c2": [0, 1, 2]}


def test_a_single_rank_run():
    plan = C.RunPlan({"c1": "x"}, 1)
    assert C.missing_ranks(plan, metrics([("c1", 0)])) == {}
    assert C.missing_ranks(plan, metrics([("c1", 1)])) == {"c1": [0]}  # a rank outside the world is not rank 0


def test_unreadable_shards_alone_make_the_run_incomplete_and_are_named():
    bad = [(Path("/r/metrics.rank00002.main.parquet"), "ArrowInvalid: not parquet")]
    checks = C.completeness_checks(PLAN, metrics(ALL), runs({0: "ok", 1: "ok", 2: "ok"}), bad)
    assert [c.status for c in checks] == ["incomplete"]
    assert checks[0].message == ("0 of 2 case(s) missing on some rank; unreadable shard(s), counted as missing: "
                                 "metrics.rank00002.main.parquet: ArrowInvalid: not parquet")


def test_an_interrupted_rank_is_noted():
    checks = C.completeness_checks(PLAN, metrics(ALL), runs({0: "ok", 1: "interrupted", 2: "interrupted"}))
    assert checks[0].status == "pass" and checks[0].message.endswith("; run status interrupted on rank(s) 1, 2")


def test_the_world_size_is_the_recorded_one_not_the_ranks_present():
    """Ranks 0 and 1 wrote runs rows of a 4-rank run: ranks 2 and 3 are missing, not absent from the plan."""
    cfg = '{"cases": [{"case_id": "c1", "benchmark": "membw", "params": {"size_bytes": 4096}}]}'
    r = pd.DataFrame({"rank": [0, 1], "world_size": [4, 4], "config": [cfg, cfg]})
    plan = C.read_plan(r, "run")
    assert plan.world_size == 4 and list(plan.cases) == ["c1"]
    assert C.missing_ranks(plan, metrics([("c1", 0), ("c1", 1)])) == {"c1": [2, 3]}


def _ref(gpu=None) -> Reference:
    return Reference(benchmark="gemm", metric="tflops", gpu=gpu, lower=1.0)


def test_references_that_apply_must_judge_and_others_need_not():
    """The run used H100s: the H100 reference skipped is unjudged; the B200 one skipped is fine."""
    refs = [_ref("h100-sxm"), _ref("b200"), _ref()]
    checks = [Check("reference", "reference: gemm h100", "skip", "no rows"),
              Check("reference", "reference: gemm b200", "skip", "no rows"),
              Check("reference", "reference: gemm any", "pass", "ok")]
    skus = {(0, "n1"): "h100-sxm"}
    got = C.references_judged_check(refs, checks, skus)
    assert (got.status, got.message) == ("incomplete", "1 of 2 reference(s) not judged: gemm h100: no rows")
    checks[0] = Check("reference", "reference: gemm h100", "pass", "ok")
    got = C.references_judged_check(refs, checks, skus)
    assert (got.status, got.message) == ("pass", "all 2 reference(s) that apply judged")


def test_without_runs_rows_the_plan_file_and_the_metrics_world_size_are_read(tmp_path):
    """Every rank died before writing its runs row: the cases come from plan.json, the world
    size from the metrics rows collect wrote (world_size 2)."""
    plan_file = tmp_path / "plan.json"
    plan_file.write_text('{"suite_cases": [{"case_id": "c1", "benchmark": "membw", "params": {"size_bytes": 4096}}]}')
    m = pd.DataFrame({"case_id": ["c1"], "rank": [0], "world_size": [2]})
    empty = pd.DataFrame({"rank": [], "world_size": [], "config": []})
    plan = C.read_plan(empty, "run", m, plan_file)
    assert (list(plan.cases), plan.world_size) == (["c1"], 2)
    assert C.missing_ranks(plan, m) == {"c1": [1]}
