"""Tables as a person sees them in a terminal: the real commands in a pseudo-terminal (util-linux
`script`) at 80, 120 and 200 columns. Every case id, value and status must be on the screen,
whole: no line may be wider than the terminal (a terminal would wrap it and split an id)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aifbench.cli.output import fmt_value

pytestmark = pytest.mark.skipif(shutil.which("script") is None, reason="util-linux `script` is not installed")

SRC = Path(__file__).resolve().parents[2] / "src"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
WIDTHS = (80, 120, 200)


def on_screen(cwd: Path, width: int, *args: str) -> tuple[int, str]:
    """(exit code, the text a `width`-column terminal shows) of `aifbench ARGS` run in a pty."""
    cmd = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "aifbench", *args))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    proc = subprocess.run(["script", "-qec", f"stty cols {width} rows 50; {cmd}", "/dev/null"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return proc.returncode, ANSI.sub("", proc.stdout)


def json_rows(cwd: Path, *args: str) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "aifbench", *args, "--format", "json"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def assert_fits(screen: str, width: int) -> None:
    wide = [line for line in screen.splitlines() if len(line) > width]
    assert not wide, f"{len(wide)} line(s) wider than {width} columns, e.g. {wide[0]!r}"


def assert_rows_shown(screen: str, rows: list[dict]) -> None:
    for r in rows:
        assert r["case_id"] in screen, r["case_id"]
        if r["value"] is not None:
            assert fmt_value(r["value"]) in screen, (r["case_id"], r["metric"], fmt_value(r["value"]))
    for status in {r["status"] for r in rows}:
        words = re.findall(rf"(?<![\w-]){status}(?![\w-])", screen)
        assert len(words) >= sum(r["status"] == status for r in rows), status


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, str, list[dict]]:
    """`aifbench run smoke` at 80 columns, as the README's first command; (cwd, screen, rows)."""
    cwd = tmp_path_factory.mktemp("terminal")
    code, screen = on_screen(cwd, 80, "run", "smoke", "--device", "cpu")
    assert code == 0, screen[-2000:]
    return cwd, screen, json_rows(cwd, "show")


def test_run_smoke_at_80_columns_shows_every_case_value_and_status(smoke):
    _, screen, rows = smoke
    summary = screen[screen.index("run 2"):]  # the summary after the progress lines
    assert_fits(summary, 80)
    assert_rows_shown(summary, rows)
    assert "1/s" not in summary and "tokens/s" in summary
    assert "telemetry_window_s" not in summary and "telemetry_insufficient" not in summary
    assert re.search(r"ok: \d+\s+skipped: \d+", summary)


@pytest.mark.parametrize("width", WIDTHS)
def test_show_fits_every_width(smoke, width):
    cwd, _, rows = smoke
    code, screen = on_screen(cwd, width, "show")
    assert code == 0, screen
    assert_fits(screen, width)
    assert_rows_shown(screen, rows)


@pytest.mark.parametrize("width", (80, 200))
def test_show_all_fits_every_width(smoke, width):
    cwd, _, _ = smoke
    rows = json_rows(cwd, "show", "--all")
    code, screen = on_screen(cwd, width, "show", "--all")
    assert code == 0, screen
    assert_fits(screen, width)
    assert_rows_shown(screen, rows)
    assert "telemetry_window_s" in screen


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_compare_and_validate_fit_every_width(smoke, width):
    cwd, _, rows = smoke
    run_id = rows[0]["run_id"]
    code, screen = on_screen(cwd, width, "runs")
    assert code == 0 and run_id in screen and "ok" in screen, screen
    assert_fits(screen, width)
    listed = json_rows(cwd, "runs")
    for r in listed:
        assert r["run_id"] in screen and str(r["ok"]) in screen
    code, screen = on_screen(cwd, width, "compare", "--no-reference")
    assert code == 0, screen
    assert_fits(screen, width)
    for r in json_rows(cwd, "compare", "--no-reference"):
        assert r["metric"] in screen
    code, screen = on_screen(cwd, width, "validate", run_id, "--system", "local")
    assert_fits(screen, width)
    for r in json_rows(cwd, "validate", run_id, "--system", "local")["checks"]:
        assert r["status"] in screen and r["check"].split(" ")[0] in screen


def test_off_a_terminal_nothing_is_cut_whatever_columns_says(smoke):
    cwd, _, rows = smoke
    env = dict(os.environ, COLUMNS="60", PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "aifbench", "show"], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300).stdout
    assert "…" not in out
    lines = out.splitlines()
    for r in rows:  # one line per row: its case id, metric, value and status on one line
        value = "" if r["value"] is None else fmt_value(r["value"])
        assert any(r["case_id"] in line and r["metric"] in line and value in line and r["status"] in line
                   for line in lines), (r["case_id"], r["metric"], value)


def test_telemetry_notes_are_never_flags_and_its_table_fits(smoke):
    cwd, _, _ = smoke
    rows = json_rows(cwd, "telemetry", "--no-plot")
    assert rows and all("telemetry_insufficient" not in r["flags"] for r in rows)
    assert any("telemetry_insufficient" in r["notes"] for r in rows)  # a CPU run's short windows: a note
    code, screen = on_screen(cwd, 80, "telemetry", "--no-plot")
    assert code == 0, screen
    assert_fits(screen, 80)
    assert all(r["case_id"] in screen for r in rows)


def test_list_at_80_columns_keeps_every_metric_name_whole(smoke):
    cwd, _, _ = smoke
    code, screen = on_screen(cwd, 80, "list")
    assert code == 0, screen
    assert_fits(screen, 80)
    words = set(re.findall(r"[\w-]+", screen))
    for r in json_rows(cwd, "list"):
        for metric in r["metrics"] or []:
            assert metric in words, metric
