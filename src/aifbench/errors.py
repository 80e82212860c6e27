"""The exception hierarchy. User mistakes map to exit code 2 in the CLI, failures to 1."""

from __future__ import annotations

from collections.abc import Iterable


class AifbenchError(Exception):
    """Base class; `exit_code` is what the CLI returns when this escapes a command."""

    exit_code = 1


class ConfigError(AifbenchError):
    """Bad input from the user: unknown name, wrong type, out of range, bad file."""

    exit_code = 2


class UnsupportedHardwareError(AifbenchError):
    """The requested device or feature is absent (e.g. --device cuda without a GPU)."""

    exit_code = 2


class LaunchError(AifbenchError):
    """Starting work failed: a worker, a scheduler call, a rendezvous."""

    exit_code = 1


class SchemaError(AifbenchError):
    """A result table does not match the schema (missing column, wrong type, newer version)."""

    exit_code = 2


class SkipCase(AifbenchError):
    """Raised by a benchmark when a case cannot run here (dtype absent, too big): recorded as skipped."""


class CorrectnessError(AifbenchError):
    """A benchmark's result disagreed with its reference before timing: the case fails."""


def one_of(kind: str, value: object, allowed: Iterable[object]) -> ConfigError:
    """A ConfigError naming the bad value and every allowed choice, sorted."""
    choices = ", ".join(sorted(str(a) for a in allowed)) or "(none)"
    return ConfigError(f"unknown {kind} {value!r}; allowed: {choices}")


def no_results(path: object) -> ConfigError:
    """The one error for a results store or file that does not exist (every command says this)."""
    return ConfigError(f"no such results directory: {path}; start one with 'aifbench run smoke' "
                       f"or name one with --results DIR")
