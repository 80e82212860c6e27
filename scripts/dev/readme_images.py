#!/usr/bin/env python3
"""The README's pictures, made from the shipped data only (no GPU, no network):

- docs/images/show-100cols.svg: `aifbench show` of the shipped H200 GEMM run as a 100-column
  terminal shows it (run in a pseudo-terminal through util-linux `script`, its ANSI output drawn
  by rich's SVG export);
- docs/images/report.png: the HTML report of the shipped H200 runs beside imported peer logs
  (tests/data/peers: GH200 on Alps, H100, A100, MI300X), as headless chromium draws it at 1366 px.

    python scripts/dev/readme_images.py            # writes both (chromium needed for the PNG)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "docs" / "images"
REFERENCE = REPO / "results" / "reference"
KERNELS_RUN = "20261204T183449Z-gpu-kernels-14a3a2"
PEERS = [("alps-gh200", "nccl-allreduce-gh200-2node-cscs-nccldoc-cxi.txt"),
         ("oci-h100", "nccl-allreduce-h100-2node-oci-ocitutorials.txt"),
         ("oci-a100", "nccl-allreduce-a100-2node-oci-ocitutorials.txt"),
         ("aac-mi300x", "rccl-allreduce-mi300x-2node-16rank-hisohara.txt")]
WIDTH = 100


def aifbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "aifbench", *args]


def terminal_svg(out: Path) -> None:
    """`aifbench show` in a WIDTH-column pseudo-terminal, saved as SVG."""
    cmd = shlex.join(aifbench("show", KERNELS_RUN, "--results", str(REFERENCE)))
    env = {**os.environ, "COLUMNS": str(WIDTH), "TERM": "xterm-256color"}
    proc = subprocess.run(["script", "-qec", f"stty cols {WIDTH} rows 60; {cmd}", "/dev/null"],
                          capture_output=True, text=True, env=env, cwd=REPO, check=True)
    console = Console(record=True, width=WIDTH, force_terminal=True, file=open(os.devnull, "w"))
    console.print(Text.from_ansi(proc.stdout.replace("\r\n", "\n")))
    console.save_svg(str(out), title=f"aifbench show (a {WIDTH}-column terminal)")


def report_png(out: Path) -> None:
    """The report of the shipped runs beside imported peer logs, screenshotted by chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium): report.png not made")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "peers"
        for system, name in PEERS:
            subprocess.run(aifbench("import", "--from", "auto", str(REPO / "tests" / "data" / "peers" / name),
                                    "--system", system, "--results", str(store)), check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)
        html = Path(tmp) / "report.html"
        subprocess.run(aifbench("report", "-o", str(html), "--results", str(store), "--results", str(REFERENCE)),
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp}/profile", "--window-size=1366,2400", f"--screenshot={out}",
                        html.as_uri()], check=True, capture_output=True, timeout=120)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    terminal_svg(IMAGES / "show-100cols.svg")
    report_png(IMAGES / "report.png")
    for p in sorted(IMAGES.iterdir()):
        print(f"wrote {p.relative_to(REPO)} ({p.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
