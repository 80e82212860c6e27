"""Options that several commands share, declared once."""

from __future__ import annotations

import argparse
from pathlib import Path

STORE = Path("results")
"""the default results store, relative to the working directory"""


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """`--results DIR`: the results store a command reads or writes (default: results)."""
    parser.add_argument("--results", type=Path, default=STORE, metavar="DIR", help="results store (default: results)")
