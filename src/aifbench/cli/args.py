"""Options that several commands share, declared once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from aifbench.errors import ConfigError

if TYPE_CHECKING:
    from aifbench.telemetry.config import TelemetryConfig

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


def add_format_option(parser: argparse.ArgumentParser, extra: tuple[str, ...] = ()) -> None:
    """`--format table|json|csv|markdown` (plus `extra`, e.g. junit): one declaration for every
    command that prints a table. json rows carry ids and full parameters as fields."""
    from aifbench.cli.output import FORMATS

    allowed = (*FORMATS, *extra)
    parser.add_argument("--format", default="table", metavar="FMT", help=" | ".join(allowed) + " (default: table)")
    parser.set_defaults(format_choices=allowed)


def check_format(args: argparse.Namespace) -> None:
    """One line naming the allowed formats (exit 2), before any work; called by cli.main."""
    allowed = getattr(args, "format_choices", None)
    if allowed and args.format not in allowed:
        raise ConfigError(f"unknown format {args.format!r}; allowed: {', '.join(allowed)}")
    for option in ("output", "junit"):  # a file to write goes into a directory that exists: never a new tree
        path = getattr(args, option, None)
        if isinstance(path, Path) and not path.parent.is_dir():
            raise ConfigError(f"--{option} {path}: directory {path.parent} does not exist (create it first)")


def add_results_selection(parser: argparse.ArgumentParser) -> None:
    """`--results DIR` (repeatable: stores, run directories or shard files) for commands that read
    several; the older positional spelling (a compatibility shim) stays until release 0.2.0, with a warning."""
    parser.add_argument("--results", dest="results_opt", action="append", type=Path, default=[], metavar="DIR",
                        help="results store, run directory or shard file (repeatable; default: results)")
    parser.add_argument("legacy_results", nargs="*", type=Path, metavar="RESULTS", help=argparse.SUPPRESS)


def selected_results(args: argparse.Namespace) -> list[Path]:
    """The paths of add_results_selection(); a one-line deprecation notice for positional ones."""
    if args.legacy_results:
        import sys

        given = " ".join(str(p) for p in args.legacy_results)
        print(f"aifbench: warning: positional results paths are deprecated (gone in release 0.2.0); use --results {given.split()[0]}"
              f"{' (once per path)' if len(args.legacy_results) > 1 else ''}", file=sys.stderr)
    return [*args.results_opt, *args.legacy_results]


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """`--set`, `--only`, `--telemetry-hz`: how a suite is planned, for `run` and `submit` alike."""
    from aifbench.telemetry.config import DEFAULT_HZ

    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override: timing.repeats=3, gemm.m=256, 'gemm.dtype=[\"fp32\",\"bf16\"]' (repeatable)")
    parser.add_argument("--only", type=lambda s: [x for x in s.split(",") if x], default=None,
                        metavar="B1,B2", help="run only these benchmarks of the suite")
    parser.add_argument("--telemetry-hz", default=DEFAULT_HZ, metavar="HZ",  # checked by interval_from_hz, not argparse
                        help=f"telemetry sampling rate during timed regions; 0 disables (default: {DEFAULT_HZ:g})")


def telemetry_settings(args: argparse.Namespace) -> "TelemetryConfig":
    """The run's TelemetryConfig from --telemetry-hz and the AIFBENCH_TELEMETRY* environment,
    read here once: the plan carries it to every rank. A bad value is a ConfigError (exit 2)."""
    from aifbench.telemetry.config import TelemetryConfig, interval_from_hz

    interval_s = interval_from_hz(args.telemetry_hz, f"--telemetry-hz {args.telemetry_hz}")
    return TelemetryConfig.from_env(os.environ, interval_s=interval_s)
