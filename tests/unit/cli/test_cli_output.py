"""Output for batch logs, pipes and scripts (issue 13): --format everywhere, whole identifiers
off a TTY, progress lines, `aifbench runs`, one --results spelling, and the newcomer's defects.

One tiny CPU run (telemetry replayed from a recorded trace) serves every read-only test; tests
that need other runs make their own stores.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TRACE = Path(__file__).parents[2] / "data" / "telemetry" / "h100_node_4gpu.jsonl"
TINY = """
[suite]
name = "tiny"
description = "two GEMM shapes and one STREAM op"
[timing]
warmup = 1
repeats = 3
[[case]]
benchmark = "gemm"
params = { m = 64, n = 64, k = 64, dtype = "fp32" }
sweep = { m = [64, 96] }
[[case]]
benchmark = "membw"
params = { op = "copy", size_bytes = 1048576 }
"""
REFS = """
[[reference]]
benchmark = "gemm"
metric = "tflops"
lower = 0.000001
source = "test: any positive figure"
"""


def cli(cwd: Path, *args: str, columns: str = "", **env: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with stdout and stderr pipes (not a TTY); COLUMNS '' = unset."""
    full = dict(os.environ, COLUMNS=columns, **env)
    return subprocess.run([sys.executable, "-m", "aifbench", *args], cwd=cwd, capture_output=True, text=True,
                          env=full, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("cli_output")
    (cwd / "tiny.toml").write_text(TINY)
    (cwd / "refs.toml").write_text(REFS)
    return cwd


@pytest.fixture(scope="module")
def first(work) -> tuple[list[dict], str]:
    """`run --format json`: (rows on stdout, stderr) of one run with a replayed telemetry trace."""
    proc = ok(cli(work, "run", "tiny.toml", "--device", "cpu", "--results", "res", "--format", "json",
                  AIFBENCH_TELEMETRY_REPLAY=str(TRACE)))
    return json.loads(proc.stdout), proc.stderr


def test_a_script_drives_the_tour_from_json_alone(work, first):
    rows, _ = first
    run_id = rows[0]["run_id"]
    assert {r["case_id"] for r in rows} and all(isinstance(r["params"], dict) for r in rows)
    runs = json.loads(ok(cli(work, "runs", "--results", "res", "--format", "json")).stdout)
    mine = next(r for r in runs if r["run_id"] == run_id)
    assert (mine["status"], mine["suite"], mine["cases"], mine["ok"], mine["failed"]) == ("ok", "tiny", 3, 3, 0)
    shown = json.loads(ok(cli(work, "show", run_id, "--results", "res", "--format", "json")).stdout)
    gemm = [r for r in shown if r["benchmark"] == "gemm" and r["metric"] == "tflops"]
    assert sorted(r["params"]["m"] for r in gemm) == [64, 96] and all(r["value"] > 0 for r in gemm)
    compared = json.loads(ok(cli(work, "compare", "--results", "res", "--no-reference", "--format", "json")).stdout)
    by_m = {r["params"]["m"]: r for r in compared if r["benchmark"] == "gemm" and r["metric"] == "tflops"}
    assert set(by_m) == {64, 96}  # same label text would not tell them apart; params do
    assert all(r["run_ids"] == [run_id] and r["suites"] == ["tiny"] and len(r["case_ids"]) == 1 for r in by_m.values())
    verdict = json.loads(cli(work, "validate", run_id, "--results", "res", "--references", "refs.toml",
                             "--format", "json").stdout)
    assert verdict["verdict"] in ("PASS", "FAIL", "INCOMPLETE", "INCONCLUSIVE") and verdict["run_id"] == run_id
    checks = verdict["checks"]  # keys are the table's headers: check, status, detail
    assert checks and all(c["run_id"] == run_id and c["status"] in ("pass", "fail", "skip") and c["check"]
                          and "detail" in c for c in checks)
    assert any(c["kind"] == "reference" for c in checks)
    ok(cli(work, "report", "--results", "res", "--no-reference", "-o", "report.html"))
    html = (work / "report.html").read_text()
    assert run_id in html and "<th>status</th>" in html and "<th>suite</th>" in html and ">tiny<" in html


@pytest.mark.parametrize("args", [
    ["list"], ["list", "gemm"], ["systems"], ["hardware"], ["runs", "--results", "res"],
    ["show", "--results", "res"], ["compare", "--results", "res", "--no-reference"],
    ["telemetry", "--results", "res", "--no-plot"], ["baseline", "list", "--results", "res"],
    ["jobs", "--results", "res"], ["run", "tiny.toml", "--dry-run", "--device", "cpu"],
    ["validate", "--results", "res", "--references", "refs.toml"],
])
def test_every_table_command_prints_json_rows(work, first, args):
    proc = cli(work, *args, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr  # validate may fail a check; the JSON still parses
    rows = json.loads(proc.stdout)
    if args[0] == "validate":  # one object: the verdict and its checks
        assert rows["verdict"] and rows["exit_code"] == proc.returncode
        rows = rows["checks"]
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    csv = cli(work, *args, "--format", "csv")
    assert csv.returncode == proc.returncode and (not rows or len(pd.read_csv(io.StringIO(csv.stdout))) == len(rows))
    markdown = cli(work, *args, "--format", "markdown")
    assert markdown.returncode == proc.returncode and (not rows or "|---|" in markdown.stdout), markdown.stderr


@pytest.mark.parametrize("columns", ["", "60"])
def test_identifiers_are_whole_off_a_tty(work, first, columns):
    """`aifbench systems | cat`: the names a user types next are never cut, whatever COLUMNS says."""
    systems = ok(cli(work, "systems", columns=columns)).stdout
    for name in ("leonardo-booster", "local-slurm", "marenostrum5-acc", "jupiter-booster"):
        assert name in systems
    assert "…" not in systems
    hardware = ok(cli(work, "hardware", columns=columns)).stdout
    assert "h100-sxm5-80gb" in hardware and "gh200-96gb" in hardware and "…" not in hardware
    runs = ok(cli(work, "runs", "--results", "res", columns=columns)).stdout
    assert first[0][0]["run_id"] in runs
    shown = ok(cli(work, "show", "--results", "res", columns=columns)).stdout
    assert all(r["case_id"] in shown for r in first[0])
    if columns:  # free text wraps to COLUMNS; a line with an identifier may be longer, never cut
        assert any(len(line) <= 60 for line in systems.splitlines())


def test_progress_is_one_line_per_case_on_stderr(first):
    _, err = first
    lines = [line for line in err.splitlines() if line.startswith("aifbench: [")]
    assert len(lines) == 3
    assert "[1/3]" in lines[0] and "s elapsed, 2 cases left" in lines[0] and "0 cases left" in lines[-1]


def test_show_marks_noisy_figures_beside_the_value(work, first):
    run = Path(work / "res" / first[0][0]["run_id"])
    m = pd.read_parquet(next(run.glob("metrics.*.parquet")))
    shown = ok(cli(work, "show", "--results", "res")).stdout
    noisy = m[(m["metric"] == "tflops") & (m["stat"] == "median") & m["noisy"].fillna(False).astype(bool)]
    lines = [line for line in shown.splitlines() if " tflops " in line]
    assert sum("(noisy)" in line for line in lines) == len(noisy)


def test_telemetry_png_goes_beside_the_run(work, first):
    run_id = first[0][0]["run_id"]
    ok(cli(work, "telemetry", "--results", "res"))
    assert (work / "res" / run_id / "telemetry.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(work.glob("*.png"))


def test_telemetry_window_labels_do_not_overlap(tmp_path):
    """Many short windows (as a 29-case suite gives): the numbers drawn never overlap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from aifbench.telemetry import report

    start = pd.Timestamp("2026-12-04T10:00:00Z")
    cases, rows = [], []
    for i in range(30):
        length = 0.05 if i % 3 else 2.0
        t0 = start + pd.Timedelta(seconds=3 * (i // 3) + (i % 3) * 0.06)
        cases.append({"case_id": f"{i:04d}-gemm-deadbeef", "rank": 0, "started_utc": t0,
                      "ended_utc": t0 + pd.Timedelta(seconds=length)})
        rows += [{"case_id": f"{i:04d}-gemm-deadbeef", "rank": 0, "t_s": t, "field": "power_w", "value": 300.0 + i,
                  "gpu_index": 0, "source": "replay", "gpu_uuid": "GPU-0"} for t in (0.0, length / 2, length)]
    captured = {}
    real = report._label_windows

    def spy(fig, ax, spans):
        real(fig, ax, spans)
        captured["fig"], captured["ax"] = fig, ax

    report._label_windows = spy
    try:
        report.plot(pd.DataFrame(cases), pd.DataFrame(rows), tmp_path / "t.png", "t")
    finally:
        report._label_windows = real
    renderer = FigureCanvasAgg(captured["fig"]).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in captured["ax"].texts]
    assert len(boxes) >= 10
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)


def test_dry_run_names_skips_and_prints_no_reprs(work):
    out = ok(cli(work, "run", "smoke", "--only", "gemm", "--dry-run", "--device", "cpu")).stdout
    assert "TimingConfig(" not in out and "warmup=" in out and "would be skipped" in out
    rows = json.loads(ok(cli(work, "run", "smoke", "--only", "gemm", "--dry-run", "--device", "cpu",
                             "--format", "json")).stdout)
    fp8 = [r for r in rows if r["params"]["dtype"] == "fp8"]
    assert fp8 and all(r["would_skip"] and "fp8" in r["skip_reason"] for r in fp8)
    assert all(not r["would_skip"] for r in rows if r["params"]["dtype"] == "fp32")


def test_runs_on_a_missing_store(tmp_path):
    """The default store absent: an empty list (exit 0); a directory named by hand that does not
    exist: one line naming it, exit 2."""
    proc = cli(tmp_path, "runs")
    assert proc.returncode == 0 and "no runs under results" in proc.stdout
    proc = cli(tmp_path, "runs", "--results", "typo")
    one = ["aifbench: error: no such results directory: typo; start one with 'aifbench run smoke' or name one "
           "with --results DIR"]
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == one
    for command in (["show"], ["compare"], ["validate"], ["report", "-o", "r.html"], ["telemetry"]):  # one message
        proc = cli(tmp_path, *command, "--results", "typo")
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == one, (command, proc.stderr)


def test_a_run_whose_every_case_skips_stores_nothing_and_exits_0(tmp_path):
    proc = cli(tmp_path, "run", "acceptance", "--only", "gemm", "--device", "cpu", "--results", "res")
    assert proc.returncode == 0, proc.stderr
    assert "would be skipped on device cpu" in proc.stderr and "nothing was stored" in proc.stderr
    assert not (tmp_path / "res").exists()


def test_positional_results_still_work_with_one_deprecation_line(work, first):
    new = ok(cli(work, "compare", "--results", "res", "--no-reference", "--format", "json"))
    old = ok(cli(work, "compare", "res", "--no-reference", "--format", "json"))
    assert json.loads(old.stdout) == json.loads(new.stdout)
    warn = [line for line in old.stderr.splitlines() if "deprecated" in line]
    assert len(warn) == 1 and "--results res" in warn[0] and "deprecated" not in new.stderr


def test_export_refuses_an_existing_file_without_force(work, first):
    target = work / "bundle.parquet"
    target.write_text("precious")
    proc = cli(work, "export", "--results", "res", "-o", "bundle.parquet")
    assert proc.returncode == 2 and "--force" in proc.stderr and target.read_text() == "precious"
    ok(cli(work, "export", "--results", "res", "-o", "bundle.parquet", "--force"))
    assert target.read_bytes()[:4] == b"PAR1"
    target.unlink()


def test_load_leaves_baselines_out_unless_asked(work, first):
    from aifbench.analysis import load

    store = work / "res_b"
    shutil.copytree(work / "res", store)
    ok(cli(work, "baseline", "save", "--results", "res_b", "--name", "ref"))
    plain, withb = load([store]), load([store], baselines=True)
    assert plain.runs["run_id"].nunique() == 1 and len(plain.runs) == 1
    assert not plain.metrics.duplicated(["run_id", "case_id", "rank", "metric", "stat"]).any()
    assert len(withb.metrics) == len(plain.metrics)  # the frozen copy is the same run: deduplicated
    listed = json.loads(ok(cli(work, "baseline", "list", "--results", "res_b", "--format", "json")).stdout)
    assert [b["name"] for b in listed] == ["ref"] and listed[0]["run_id"] == first[0][0]["run_id"]


def test_interrupted_runs_are_marked_and_left_out_of_pooled_figures(work, first):
    """A copy of the run marked interrupted: runs/report/compare say so; compare pools it only when asked."""
    store = work / "res_i"
    shutil.copytree(work / "res", store)
    src = next(store.iterdir())
    broken = store / (src.name[:-6] + "zzzzzz")
    shutil.copytree(src, broken)
    shutil.rmtree(broken / "telemetry.png", ignore_errors=True)
    for table in ("runs", "metrics", "samples", "telemetry"):
        path = next(broken.glob(f"{table}.*.parquet"))
        df = pd.read_parquet(path)
        df["run_id"] = broken.name
        if table == "runs":
            df["status"] = "interrupted"
        df.to_parquet(path)
    runs = json.loads(ok(cli(work, "runs", "--results", "res_i", "--format", "json")).stdout)
    assert {r["run_id"]: r["status"] for r in runs}[broken.name] == "interrupted"
    proc = ok(cli(work, "compare", "--results", "res_i", "--no-reference", "--format", "json"))
    assert all(r["run_ids"] == [src.name] for r in json.loads(proc.stdout))
    assert broken.name in proc.stderr and "interrupted" in proc.stderr
    pooled = json.loads(ok(cli(work, "compare", "--results", "res_i", "--no-reference", "--format", "json",
                               "--include-incomplete")).stdout)
    assert any(broken.name in r["run_ids"] for r in pooled)
    table = ok(cli(work, "compare", "--results", "res_i", "--no-reference")).stdout
    assert "left out" in table and broken.name in table
    ok(cli(work, "report", "--results", "res_i", "--no-reference", "-o", "ri.html"))
    html = (work / "ri.html").read_text()
    assert "interrupted" in html and "left out of the plots" in html


@pytest.mark.parametrize("args, env, message", [
    (["run", "smoke", "--set", "timing.repeats=0", "--dry-run"], {}, "--set timing.repeats=0: repeats must be >= 1"),
    (["submit", "smoke", "--system", "meluxina-gpu", "--dry-run"], {"AIFBENCH_ACCOUNT": "a b"},
     "AIFBENCH_ACCOUNT (environment variable) 'a b' refused"),
])
def test_messages_name_the_real_source(tmp_path, args, env, message):
    proc = cli(tmp_path, *args, **env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_submit_dry_run_says_an_account_is_needed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AIFBENCH_ACCOUNT"}
    proc = subprocess.run([sys.executable, "-m", "aifbench", "submit", "smoke", "--system", "meluxina-gpu", "--dry-run"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "needs a Slurm account" in proc.stderr and "AIFBENCH_ACCOUNT" in proc.stderr


def test_spreads_and_dimensionless_units_read_plainly():
    from aifbench.analysis.compare import fmt_pct
    from aifbench.cli.output import with_unit

    assert fmt_pct(100.0) == "100 %" and fmt_pct(154.3) == "154 %" and fmt_pct(5.06) == "5.1 %"
    assert with_unit(2.2671, "1") == "2.267" and with_unit(12.5, "GB/s") == "12.5 GB/s"
