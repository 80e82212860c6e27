"""What a person reads: one label rule, stable case ids, units a person reads, every analysis
command on every committed reference run, JSON fields equal to the table headers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from aifbench.analysis.data import case_label, param_text
from aifbench.cli import main
from aifbench.config import load_suite

REPO = Path(__file__).resolve().parents[3]
REFERENCE = REPO / "results" / "reference"
TARGETS = REPO / "benchmarks" / "targets" / "h200-sxm-141gb.toml"
RUNS = sorted(p.name for p in REFERENCE.iterdir() if p.is_dir() and any(p.glob("*.parquet")))


# --- one label rule ---------------------------------------------------------------------------

def test_label_is_the_parameters_that_differ_from_the_defaults_in_declared_order():
    params = {"dtype": "fp32", "k": 128, "m": 128, "n": 128, "shape": "mnk", "bare_loop": True, "burst": False}
    assert param_text("gemm", params) == "m=128 n=128 k=128 dtype=fp32 bare_loop=true"
    assert case_label("gemm", json.dumps(params), limit=None) == "gemm m=128 n=128 k=128 dtype=fp32 bare_loop=true"
    assert param_text("gemm", {"m": 1024, "dtype": "bf16"}) == "defaults"  # every value the default
    assert param_text("my_plugin", {"b": False, "a": 1}) == "a=1 b=false"  # unknown config: all, by name


def test_labels_agree_across_run_summary_compare_and_validate(tmp_path, capsys):
    root = str(tmp_path / "res")
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\n[timing]\nrepeats = 2\nwarmup = 0\n[[case]]\nbenchmark = "gemm"\n'
                     'params = { m = 64, n = 64, k = 64, dtype = "fp32" }\n')
    assert main(["run", str(suite), "--device", "cpu", "--results", root, "--telemetry-hz", "0"]) == 0
    out = capsys.readouterr().out
    assert "m=64 n=64 k=64 dtype=fp32" in out  # a single-case benchmark: the same rule, n shown
    assert main(["compare", "--results", root, "--no-reference", "--format", "json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["metric"] == "tflops"]
    assert row["case"] == "gemm m=64 n=64 k=64 dtype=fp32"
    main(["validate", "--results", root, "--system", "local", "--format", "json"])
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert any(c["check"] == "ran: gemm m=64 n=64 k=64 dtype=fp32" for c in checks), [c["check"] for c in checks]
    assert not any("True" in c["check"] or "False" in c["check"] for c in checks)


def test_case_id_does_not_depend_on_the_other_cases_of_the_plan():
    every = {c.case_id for c in load_suite("smoke").cases}
    only = [c.case_id for c in load_suite("smoke", only=["membw"]).cases]
    assert only and set(only) <= every
    assert only == [c.case_id for c in load_suite("smoke").cases if c.benchmark == "membw"]


# --- units and the default summary ------------------------------------------------------------

def test_token_rates_read_tokens_per_second_also_for_runs_recorded_as_1_per_s(capsys):
    run = "20261204T183224Z-gpu-infer-647434"
    stored = pd.read_parquet(next((REFERENCE / run).glob("metrics.*.parquet")))
    assert "1/s" in set(stored["unit"])  # recorded before the unit said what it counts
    assert main(["show", run, "--results", str(REFERENCE), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    decode = next(r for r in rows if r["metric"] == "decode_tokens_per_s")
    assert decode["unit"] == "tokens/s"
    assert not any(r["unit"] == "1/s" for r in rows)


def test_default_summary_is_figures_of_merit_and_notes_are_never_flags(capsys):
    run = "20261204T182739Z-gpu-kernels-f495fd"
    assert main(["show", run, "--results", str(REFERENCE), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    from aifbench.metrics import is_merit

    assert rows and all(is_merit(r["metric"]) or r["status"] != "ok" for r in rows)
    assert main(["show", run, "--results", str(REFERENCE), "--all", "--format", "json"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert any(r["metric"] == "time_s" for r in every) and not any(r["metric"] == "time_s" for r in rows)
    for r in every:  # show --all carries every field of the table and the schema's detail columns
        assert {"n_samples", "peak", "peak_source", "detail", "node", "flags", "notes"} <= set(r)
        assert not {"telemetry_insufficient", "power_capped_legacy"} & set(r["flags"])


# --- every analysis command on every committed reference run (pandas 3 / pyarrow as installed) ---

@pytest.fixture(scope="module")
def reference_copy(tmp_path_factory) -> Path:
    """The committed runs copied (telemetry writes its PNG beside the run)."""
    dest = tmp_path_factory.mktemp("reference") / "results"
    shutil.copytree(REFERENCE, dest)
    return dest


@pytest.mark.parametrize("run", RUNS)
def test_every_analysis_command_runs_on_every_reference_run(reference_copy, run, tmp_path, capsys):
    store = str(reference_copy)
    assert main(["runs", "--results", store]) == 0
    assert run in capsys.readouterr().out
    assert main(["show", run, "--results", store]) == 0
    assert main(["show", run, "--results", store, "--all", "--format", "json"]) == 0
    assert main(["telemetry", run, "--results", store]) == 0
    assert (reference_copy / run / "telemetry.png").is_file()
    assert main(["validate", run, "--results", store, "--references", str(TARGETS)]) == 0  # the shipped example passes
    assert main(["compare", "--results", str(reference_copy / run), "--no-reference"]) == 0
    assert main(["report", "--results", str(reference_copy / run), "--no-reference", "-o",
                 str(tmp_path / "r.html")]) == 0
    assert run in (tmp_path / "r.html").read_text()


def test_validate_json_carries_the_verdict(reference_copy, capsys):
    run = RUNS[0]
    code = main(["validate", run, "--results", str(reference_copy), "--references", str(TARGETS), "--format", "json"])
    body = json.loads(capsys.readouterr().out)
    assert body["verdict"] == "PASS" and body["exit_code"] == code == 0 and "references:" in body["summary"]
    assert all(set(c) >= {"check", "status", "detail"} for c in body["checks"])


# --- the smaller defects a newcomer meets -------------------------------------------------------

@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    """A store with one tiny CPU run (two cases)."""
    root = tmp_path_factory.mktemp("one") / "res"
    suite = root.parent / "t.toml"
    suite.write_text('[suite]\nname = "t"\n[timing]\nrepeats = 2\nwarmup = 0\n[[case]]\nbenchmark = "gemm"\n'
                     'params = { m = 32, n = 32, k = 32, dtype = "fp32" }\nsweep = { m = [32, 48] }\n')
    assert main(["run", str(suite), "--device", "cpu", "--results", str(root), "--telemetry-hz", "0"]) == 0
    return root


def test_a_dangling_shard_link_is_skipped_and_named_not_fatal(one_run, tmp_path, caplog):
    store = tmp_path / "res"
    shutil.copytree(one_run, store)
    run = next(p for p in store.iterdir() if p.is_dir())
    (run / "metrics.rank00001.main.parquet").symlink_to(tmp_path / "gone.parquet")
    for args in (["runs"], ["show"], ["compare", "--no-reference"]):
        caplog.clear()
        assert main([*args, "--results", str(store)]) == 0, args
        assert "metrics.rank00001.main.parquet" in caplog.text, args
    assert main(["validate", "--results", str(store), "--system", "local"]) == 1  # judged, incomplete: not exit 2


def test_an_output_file_in_a_missing_directory_is_refused(one_run, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "r.html"
    assert main(["report", "--results", str(one_run), "--no-reference", "-o", str(target)]) == 2
    assert "directory" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_a_bad_value_in_a_suite_file_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[suite]\nname = "b"\n[[case]]\nbenchmark = "gemm"\nparams = { m = "abc" }\n')
    assert main(["run", str(bad), "--dry-run"]) == 2
    assert "bad.toml: gemm.m must be an integer" in capsys.readouterr().err


def test_latest_runs_are_named_newest_first(tmp_path, capsys):
    for stamp in ("20260101T000000Z-a-aaaaaa", "20260102T000000Z-a-bbbbbb"):
        (tmp_path / stamp).mkdir()
        (tmp_path / stamp / "metrics.rank00000.main.parquet").write_bytes(b"")
    from aifbench.errors import ConfigError
    from aifbench.results.store import resolve_run

    with pytest.raises(ConfigError, match="newest first\\): 20260102T000000Z-a-bbbbbb, 20260101T000000Z-a-aaaaaa"):
        resolve_run(tmp_path, "nope")


def _internal_issue_numbers(text: str) -> list[str]:
    """'issue 14' not preceded by a repository or project name (an external bug report is fine)."""
    import re

    return [m.group(0) for m in re.finditer(r"(\S+\s)?[Ii]ssue \d+", text)
            if not (m.group(1) and re.search(r"[/.]|nccl", m.group(1)))]


def test_user_facing_text_names_no_internal_issue_numbers(capsys):
    assert main(["list"]) == 0
    assert main(["schema"]) == 0
    text = capsys.readouterr().out
    for path in [*(REPO / "benchmarks").glob("*.toml"), *(REPO / "benchmarks" / "targets").glob("*.toml")]:
        text += path.read_text()
    assert _internal_issue_numbers(text) == []


def test_schema_markdown_escapes_pipes_inside_cells(capsys):
    import re

    assert main(["schema"]) == 0
    head = None
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith("|"):
            head = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        head = cells if head is None else head
        assert cells == head, line


def test_progress_bar_names_the_case_now_running():
    from types import SimpleNamespace

    from aifbench.cli.run import ProgressLines, _running

    cases = [SimpleNamespace(benchmark=b, case_id=f"000{i}-{b}-x") for i, b in enumerate(("gemm", "membw"))]
    plan = SimpleNamespace(suite="s", cases=cases)
    order = [c.case_id for c in cases]
    lines = ProgressLines(2)
    lines.enabled = False  # a terminal: the bar shows progress, no lines
    lines(1, "0000-gemm-x ok")
    assert lines.done == 1  # counted on a terminal too
    assert _running(plan, order, lines.done, "cpu") == "s on cpu: running membw (0001-membw-x)"
    assert _running(plan, order, 2, "cpu") == "s on cpu: done"
