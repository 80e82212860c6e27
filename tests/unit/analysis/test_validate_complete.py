"""validate says PASS only for a complete run: every case of the stored plan on every rank.

Real runs on this CPU: an interrupted run (the runner stopped by an interrupt after its first
case) and a 2-rank run whose second rank's metrics shard is deleted, truncated or emptied.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from aifbench.cli import main
from aifbench.config import load_suite
from aifbench.plan import build_plan
from aifbench.results.store import load
from aifbench.runner import execute
from aifbench.telemetry.config import TelemetryConfig

from tests.conftest import write

SUITE = """
[suite]
name = "three"
[timing]
warmup = 1
repeats = 2
[[case]]
benchmark = "membw"
params = { op = "copy", gpu_only = false }
sweep = { size_bytes = [4096, 8192, 16384] }
"""


def _validate(root: Path, *extra: str) -> int:
    return main(["validate", "--results", str(root), "--system", "local", *extra])


def test_interrupted_run_is_incomplete(tmp_path, capsys):
    """The runner stops after its first case (as Ctrl-C would): 2 of 3 cases never ran."""
    suite = load_suite(str(write(tmp_path / "three.toml", SUITE)))
    plan = build_plan(suite, run_id="20261204T200000Z-three-00000a", device="cpu",
                      results_root=tmp_path / "res", telemetry=TelemetryConfig(interval_s=0))

    def stop_after_first(case, status, reason):
        assert status == "ok", reason
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(plan, on_case=stop_after_first)
    assert list(load([plan.run_dir]).runs["status"]) == ["interrupted"]
    assert _validate(tmp_path / "res", "--format", "markdown") == 1
    out, err = capsys.readouterr()
    assert "INCOMPLETE" in err and "PASS" not in err
    missing = [c.case_id for c in plan.cases[1:]]
    assert "| incomplete | complete: every case of the plan on every rank | 2 of 3 case(s) missing on some rank; " \
           "run status interrupted on rank(s) 0 |" in out
    for case_id in missing:  # each missing case named, with its id
        assert f"never ran: no rows from any of its 1 rank(s) ({case_id})" in out
    assert out.count("| incomplete | complete: membw") == 2


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """A real 2-process run (gloo collectives, GEMM on both ranks): its run directory."""
    root = tmp_path_factory.mktemp("two_ranks") / "res"
    proc = subprocess.run([sys.executable, "-m", "aifbench", "run", "smoke", "--nproc", "2", "--only",
                           "collectives,gemm", "--telemetry-hz", "0", "--results", str(root)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = root.iterdir()
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the run with each rank's own shards, as the ranks wrote them before the launcher
    compacted the run into one file per table (results/compact.py): the same rows, per rank."""
    from aifbench.results.store import ShardWriter

    target = tmp_path / "res" / run_dir.name
    shutil.copytree(run_dir, target)
    tables = load([target]).tables
    for compacted in target.glob("*.compact-*.parquet"):
        compacted.unlink()
    for rank in (0, 1):
        writer = ShardWriter(target.parent, target.name, rank, "main")
        for name in ("metrics", "samples", "runs"):
            df = tables[name]
            writer.replace(name, df[df["rank"] == rank].to_dict("records"))
        writer.flush()
    return target


def test_complete_two_rank_run_passes(two_ranks, tmp_path, capsys):
    run_dir = _copy(two_ranks, tmp_path)
    assert _validate(run_dir.parent) == 0
    err = capsys.readouterr().err
    assert "PASS" in err and "references: 0 of 10 judged, 10 for other GPUs" in " ".join(err.split())


def test_truncated_compacted_file_is_incomplete(two_ranks, tmp_path, capsys):
    """After the launcher's compaction, one file holds every rank's metrics: truncated, every case is missing."""
    run_dir = tmp_path / "res" / two_ranks.name
    shutil.copytree(two_ranks, run_dir)
    cases = load([run_dir]).metrics["case_id"].nunique()
    (compacted,) = run_dir.glob("metrics.compact-*.parquet")
    compacted.write_bytes(compacted.read_bytes()[:100])
    assert _validate(run_dir.parent, "--format", "markdown") == 1
    out = capsys.readouterr().out
    assert f"{cases} of {cases} case(s) missing on some rank" in out and compacted.name in out
    assert out.count("never ran: no rows from any of its 2 rank(s)") == cases


@pytest.mark.parametrize("damage", ["deleted", "truncated", "empty"])
def test_missing_rank_shard_is_incomplete(two_ranks, tmp_path, capsys, damage):
    run_dir = _copy(two_ranks, tmp_path)
    shard = run_dir / "metrics.rank00001.main.parquet"
    metrics = load([run_dir]).metrics
    cases, ok = metrics["case_id"].nunique(), metrics.loc[metrics["status"] == "ok", "case_id"].nunique()
    if damage == "deleted":
        shard.unlink()
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    else:
        shard.write_bytes(b"")
    junit = tmp_path / "junit.xml"
    assert _validate(run_dir.parent, "--format", "markdown", "--junit", str(junit)) == 1
    out, err = capsys.readouterr()
    assert "INCOMPLETE" in err
    assert f"| incomplete | complete: every case of the plan on every rank | {cases} of {cases} case(s) missing" in out
    assert out.count("no rows from rank(s) 1 of 2") == cases  # every case named, rank 1 missing
    assert out.count("| ok on 1 of 2 rank(s) |") == ok and "ok on 2 of 2" not in out  # (fp8 GEMM: skipped on CPU)
    if damage != "deleted":  # an unreadable shard is named
        assert "unreadable shard(s), counted as missing: metrics.rank00001.main.parquet" in out
    root = ET.parse(junit).getroot()
    errors = root.findall(".//error")
    assert int(root.get("errors")) == len(errors) == cases + 1 and int(root.get("failures")) == 0
    assert all(e.get("type") == "incomplete" for e in errors)
    assert sum("no rows from rank(s) 1 of 2" in (e.text or "") for e in errors) == cases
    assert ": INCOMPLETE (" in root.get("name") and "references: 0 of 10 judged" in root.get("name")


def test_run_whose_plan_cannot_be_read_exits_2(two_ranks, tmp_path, capsys):
    run_dir = _copy(two_ranks, tmp_path)
    for shard in run_dir.glob("runs.rank*.parquet"):
        shard.unlink()
    # the launcher's plan.json still names the cases; no rank's provenance: INCOMPLETE, not PASS
    assert _validate(run_dir.parent) == 1
    assert "no runs row from 2 of 2 rank(s)" in capsys.readouterr().out
    (run_dir / "plan.json").unlink()
    assert _validate(run_dir.parent) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its plan cannot be read" in err and "no runs rows" in err


def test_plan_that_is_not_a_plan_exits_2(two_ranks, tmp_path, capsys):
    run_dir = _copy(two_ranks, tmp_path)
    for shard in run_dir.glob("runs.rank*.parquet"):
        df = pd.read_parquet(shard)
        df["config"] = '{"suite": "smoke"}'  # no case list
        df.to_parquet(shard)
    junit = tmp_path / "junit.xml"
    assert _validate(run_dir.parent, "--junit", str(junit)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "runs.config is not a plan with cases: KeyError" in err
    assert not junit.exists()  # nothing half-written


def test_run_without_any_metrics_is_incomplete(two_ranks, tmp_path, capsys):
    """Stopped before its first case ended: no metrics shard at all, but the plan is readable."""
    run_dir = _copy(two_ranks, tmp_path)
    cases = load([run_dir]).metrics["case_id"].nunique()
    for shard in run_dir.glob("metrics.rank*.parquet"):
        shard.unlink()
    assert _validate(run_dir.parent, "--format", "markdown") == 1
    out = capsys.readouterr().out
    assert f"{cases} of {cases} case(s) missing on some rank" in out
    assert out.count("never ran: no rows from any of its 2 rank(s)") == cases


def test_no_runs_rows_reads_the_plan_file(tmp_path, capsys):
    """Slurm tasks that died before writing any runs row: `collect` wrote their (failed) metrics
    rows; the plan comes from the run's plan.json, the world size from the metrics rows."""
    import json

    from tests._analysis_data import RunSpec, case_ids, gemm, membw, write_run

    spec = RunSpec(run_id="20261204T210000Z-slurm-00000a", nodes=("n1",), gpus_per_node=2,
                   cases=[gemm(4096), membw(1 << 30)], status={1: "failed"})
    run_dir = write_run(tmp_path / "res", spec)
    for shard in run_dir.glob("runs.rank*.parquet"):
        shard.unlink()
    assert _validate(run_dir.parent) == 2  # no runs rows, no plan.json: the plan cannot be read
    assert "its plan cannot be read" in capsys.readouterr().err
    listed = [{"case_id": cid, "benchmark": c.benchmark, "params": c.params} for c, cid in zip(spec.cases, case_ids(spec))]
    third = {"case_id": "0002-hostlink-0000beef", "benchmark": "hostlink", "params": {"direction": "h2d"}}
    (run_dir / "plan.json").write_text(json.dumps({"suite_config": {"cases": listed + [third]}}))
    assert _validate(run_dir.parent, "--format", "markdown") == 1
    out = capsys.readouterr().out
    assert ("| incomplete | complete: every case of the plan on every rank | 1 of 3 case(s) missing on some rank; "
            "2 rank(s) without a runs row |") in out
    assert "never ran: no rows from any of its 2 rank(s) (0002-hostlink-0000beef)" in out
    assert out.count("| fail | ran: ") == 2  # rank 1's failed rows still fail their cases


def test_runs_listing_applies_validates_completeness_rule(two_ranks, tmp_path):
    """`aifbench runs` and validate share one rule (completeness.missing_ranks): with rank 1's
    metrics of one case gone (its runs row intact) both call the run incomplete; whole, both complete."""
    from aifbench.analysis import runs as run_list
    from aifbench.results.store import ShardWriter

    run_dir = _copy(two_ranks, tmp_path)
    assert run_list.summary(load([run_dir])).loc[0, "status"] == "ok"
    metrics = load([run_dir]).metrics
    rank1 = metrics[metrics["rank"] == 1]
    dropped = rank1["case_id"].iloc[0]
    writer = ShardWriter(run_dir.parent, run_dir.name, 1, "main")
    writer.replace("metrics", rank1[rank1["case_id"] != dropped].to_dict("records"))
    writer.flush()
    row = run_list.summary(load([run_dir])).iloc[0]
    assert row["status"] == "incomplete" and not row["complete"] and row["cases"] == metrics["case_id"].nunique()
    assert _validate(run_dir.parent) == 1
