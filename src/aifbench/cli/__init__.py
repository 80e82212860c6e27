"""The command line: the only place that parses argv, prints, and chooses exit codes.

Each command group is a module of this package with `register(subparsers)`; a handler
returns the exit code. Exit codes: 0 ok, 1 a measurement or job failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from aifbench import __version__
from aifbench.errors import AifbenchError

COMMANDS = ("run", "results", "telemetry", "analysis", "hardware", "jobs", "slurm", "usage")


class Parser(argparse.ArgumentParser):
    """argparse with bad input as one line (what is wrong, where to read what is allowed), exit 2;
    subcommand parsers are of this class too (add_subparsers takes the parent's class)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="aifbench",
        description="How fast and how healthy is this AI-factory partition for LLM work?",
        epilog="Run 'aifbench COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"aifbench {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"aifbench.cli.{name}").register(sub)
    return parser


def _configure_logging(verbosity: int) -> None:
    """Log records as single lines on stderr (stdout is left to data: tables, JSON, CSV)."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("aifbench: %(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    from aifbench import arrow_memory

    arrow_memory.prefer()  # before the first pyarrow import (the parser's modules import it)
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    from aifbench.cli import output

    output.configure()
    try:
        from aifbench.cli.args import check_format

        check_format(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except AifbenchError as exc:
        print(f"aifbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `aifbench show | head`: the reader stopped; not an error of ours
        # the Python docs' recipe: point stdout at devnull so the interpreter's final flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # a path that cannot be read or written is the user's input (exit 2); other OS errors, 1
        logging.getLogger(__name__).debug("OS error", exc_info=True)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"aifbench: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2 if exc.filename else 1
    except KeyboardInterrupt:
        print("aifbench: interrupted", file=sys.stderr)
        return 130
