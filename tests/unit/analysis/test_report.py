"""report: one self-contained HTML file; every plot present exactly when its data is; opened in Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from aifbench.analysis import report
from aifbench.analysis.data import select
from aifbench.cli import main
from tests._analysis_data import A100, RunSpec, allreduce, decode, gemm, membw, train, write_run

IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
PROBE_ID = "aifbench-probe"
# Injected into a copy of the report: records load errors (capture phase), console.error and
# uncaught errors, then writes what it saw into the DOM for --dump-dom to return.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'failed to load ' + t.tagName : 'uncaught ' + e.message);
}, true);
(function () { var orig = console.error;
  console.error = function () { window.__errors.push('console.error ' + Array.prototype.join.call(arguments, ' '));
                                orig.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var r = {images: imgs.length, widths: imgs.map(function (i) { return i.complete ? i.naturalWidth : -1; }),
           errors: window.__errors, viewport: window.innerWidth, page: document.documentElement.scrollWidth,
           tables: Array.prototype.slice.call(document.querySelectorAll('table')).map(function (t) {
             return Math.ceil(t.getBoundingClientRect().right); })};
  var p = document.createElement('pre'); p.id = '%s'; p.textContent = JSON.stringify(r);
  document.body.appendChild(p);
});
</script>""" % PROBE_ID
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                  "--window-size=1366,768"]  # a laptop screen


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    """Two systems and a reference run with every kind of data the report plots."""
    root = tmp_path_factory.mktemp("full") / "results"
    cases = ([gemm(m, dt, tflops=t * m / 8192, peak=pk) for m in (2048, 8192)
              for dt, t, pk in (("bf16", 750, 989.0), ("fp32", 50, 66.9))]
             + [membw(s, gbps=3000 * s / (1 << 30)) for s in (1 << 24, 1 << 27, 1 << 30)]
             + [allreduce(s, busbw=160 * s / (1 << 28)) for s in (1 << 20, 1 << 24, 1 << 28)]
             + [train("llama3-1b", 45, 30000), train("llama3-8b", 40, 5000)]
             + [decode(b) for b in (1, 8, 32)])
    write_run(root, RunSpec(run_id="20260105T120000Z-full-00000a", system="sysA", nodes=("a1",), gpus_per_node=2,
                            power_w=650.0, cases=cases, repeats=5))
    write_run(root, RunSpec(run_id="20260105T130000Z-full-00000b", system="sysB", device=A100, repeats=5,
                            cases=[gemm(8192, "bf16", 260, 312.0), membw(1 << 30, 1700, 2039.0), train("llama3-8b", 38, 1900)]))
    write_run(root / "reference", RunSpec(run_id="20250101T000000Z-ref-00000r", system="jupiter", repeats=5,
                                          cases=[gemm(8192, "bf16", 800)]))
    return root


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """A real run of the smoke suite on this CPU."""
    root = tmp_path_factory.mktemp("smoke") / "results"
    assert main(["run", "smoke", "--results", str(root), "--set", "timing.repeats=3"]) == 0  # in-process: no second torch import
    return root


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _sections(text: str) -> dict[str, str]:
    """h2 id -> the HTML up to the next h2."""
    parts = re.split(r'(?=<h2 id=")', text)
    return {re.match(r'<h2 id="([a-z]+)"', p).group(1): p for p in parts if p.startswith('<h2 id="')}


def test_every_plot_present_with_data(full, tmp_path):
    out = tmp_path / "r.html"
    images = report.write(select([full], reference_dir=full / "reference"), out)
    text = out.read_text()
    sections = _sections(text)
    assert images == 7 and set(sections) == {"gemm", "bandwidth", "busbw", "training", "decode", "energy", "roofline",
                                             "distribution"}  # distribution: not drawn, too few ranks
    for key, html in sections.items():
        if key == "distribution":
            assert "needs a run with at least 3 ranks" in html
            continue
        assert IMG_RE.search(html), f"plot {key} missing"
        assert "Not shown" not in html
    for b64 in IMG_RE.findall(text):
        w, h = _png_size(base64.b64decode(b64))
        assert w > 300 and h > 200
    # self-contained: nothing fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:)', text) and "<link" not in text and "<script" not in text
    # every run is listed with its system; only the reference run is marked as one
    runs = text[text.index("<h2>Runs</h2>"):text.index('<h2 id="gemm">')]
    head = re.findall(r"<th>([^<]*)</th>", runs)
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr><td.*?</tr>", runs)]
    col = {name: head.index(name) for name in ("run", "system", "reference")}
    marked = {c[col["run"]]: (c[col["system"]], c[col["reference"]]) for c in cells}
    assert marked == {"20250101T000000Z-ref-00000r": ("jupiter", "yes"), "20260105T120000Z-full-00000a": ("sysA", ""),
                      "20260105T130000Z-full-00000b": ("sysB", "")}


def test_smoke_run_report_notes_what_is_missing(smoke, tmp_path, capsys):
    out = tmp_path / "smoke.html"
    assert main(["report", str(smoke), "-o", str(out), "--no-reference"]) == 0
    m = select([smoke], include_reference=False).metrics
    have = set(m.loc[m["status"] == "ok", "metric"])
    expected = {"gemm", "bandwidth", "roofline"}  # the smoke suite always measures gemm and membw on CPU
    expected |= {"training"} if have & {"mfu_pct", "tokens_per_s"} else set()
    expected |= {"decode"} if "decode_tokens_per_s" in have else set()
    expected |= {"busbw"} if "busbw_gbps" in have else set()  # collectives skip on one rank
    expected |= {"energy"} if have & {"power_mean_w", "tflops_per_w", "gbps_per_w", "tokens_per_j"} else set()
    assert f"{len(expected)} plot(s)" in capsys.readouterr().out
    sections = _sections(out.read_text())
    assert {k for k, v in sections.items() if IMG_RE.search(v)} == expected
    for key in set(sections) - expected:
        assert "Not shown: no " in sections[key]
    assert len(set(sections) - expected) >= 1


def test_report_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--no-reference", "-o", str(tmp_path / "x.html")]) == 2
    assert "no results found" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _open_in_chromium(html_path: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """(probe result, console lines on stderr) of a copy of the page with the probe injected."""
    probed = tmp_path / ("probed-" + html_path.name)
    probed.write_text(html_path.read_text().replace("<head>", "<head>" + PROBE, 1))
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", probed.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ, LANG="C"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(rf'<pre id="{PROBE_ID}">([^<]*)</pre>', proc.stdout)
    assert m, "the page did not finish loading in Chromium: " + proc.stdout[-500:] + proc.stderr[-1000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")), console


@pytest.fixture
def chromium():
    if _chromium() is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed; CI must install Debian's chromium (see .ci/run)")
        pytest.skip("chromium not installed (apt-get install chromium)")


def test_report_opens_in_chromium_with_every_image_decoded(chromium, full, tmp_path):
    out = tmp_path / "report.html"
    report.write(select([full], reference_dir=full / "reference"), out)
    probe, console = _open_in_chromium(out, tmp_path)
    assert probe["images"] == 7
    assert all(w > 0 for w in probe["widths"]), probe
    assert probe["errors"] == [] and console == [], (probe, console)


def test_chromium_probe_catches_a_broken_image_and_console_error(chromium, full, tmp_path):
    """The check above can fail: a page with a corrupt image and a console error is caught."""
    out = tmp_path / "broken.html"
    report.write(select([full], include_reference=False), out)
    text = out.read_text().replace("</body>", '<img src="data:image/png;base64,iVBORw0KGgoAAAAbroken">'
                                              '<script>console.error("boom")</script></body>')
    out.write_text(text)
    probe, console = _open_in_chromium(out, tmp_path)
    assert probe["widths"][-1] == 0 and all(w > 0 for w in probe["widths"][:-1])
    assert "console.error boom" in probe["errors"] and "failed to load IMG" in probe["errors"]
    assert any("boom" in line for line in console)


def test_reference_report_fits_a_laptop_screen_in_chromium(chromium, tmp_path):
    """Every table of the report of the committed runs (88 figures of merit) fits a 1366 px wide
    window: nothing scrolls sideways."""
    out = tmp_path / "reference.html"
    reference = Path(__file__).resolve().parents[3] / "results" / "reference"
    report.write(select([reference], reference_dir=reference), out)
    probe, _ = _open_in_chromium(out, tmp_path)
    assert probe["viewport"] == 1366 and probe["tables"], probe
    assert probe["page"] <= probe["viewport"] and max(probe["tables"]) <= probe["viewport"], probe
