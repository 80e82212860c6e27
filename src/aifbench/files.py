"""Files: the shipped data folders and TOML reading, with one-line errors. A leaf module:
it imports nothing of aifbench but errors, so systems, the hardware catalog, job files and
references read TOML without pulling in the benchmark registry (and torch)."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from aifbench.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir(kind: str) -> Path:
    """Shipped data folder: 'suites' (repo benchmarks/) or 'jobs' (repo jobs/).

    A wheel carries them as aifbench/suites and aifbench/jobs (hatch force-include); an
    editable install or a checkout reads the repository's folders directly.
    """
    packaged = Path(str(resources.files("aifbench"))) / kind
    if packaged.is_dir():
        return packaged
    return REPO_ROOT / {"suites": "benchmarks", "jobs": "jobs"}[kind]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error becomes a ConfigError naming file and line."""
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)  # tomli (Python 3.10) has no stubs here
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; a binary or Latin-1 file lands here
        raise ConfigError(f"{path}: not a TOML file (not UTF-8 text: byte {exc.start})") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise ConfigError(f"{path}: a value this cannot read: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
