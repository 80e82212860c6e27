"""Options that several commands share, declared once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from aifbench.errors import ConfigError

STORE = Path("results")
"""the default results store, relative to the working directory"""


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """`--results DIR`: the results store a command reads or writes (default: results)."""
    parser.add_argument("--results", type=Path, default=STORE, metavar="DIR", help="results store (default: results)")


def check_store(path: Path) -> Path:
    """Refuse, before any work, a results store that cannot hold a run: a file, or a directory
    that cannot be written (or created below its nearest existing parent)."""
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--results {path}: {existing} is not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--results {path}: {existing} is not writable")
    return path
