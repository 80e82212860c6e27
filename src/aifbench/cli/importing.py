"""`aifbench import --from TOOL FILE...`: each file one run, or refused with one line (exit 2)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from aifbench.errors import ConfigError, one_of


def _system_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.")
    return name or "imported"


def import_files(tool: str, files: list[Path], root: Path, system: str | None, partition: str) -> int:
    """Parse and store every file on its own: a file that does not parse writes nothing and is named
    on stderr (file:line: what was expected); the others are imported. Exit 2 when any was refused."""
    from aifbench import importers
    from aifbench.cli.output import console
    from aifbench.importers import store

    if tool != importers.AUTO and tool not in importers.TOOLS:
        raise one_of("tool (--from)", tool, [*importers.TOOLS, importers.AUTO])
    if system is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", system):
        raise ConfigError(f"--system {system!r}: letters, digits, '.', '_' and '-' only")
    refused = 0
    for path in files:
        try:
            if not path.is_file():
                raise ConfigError(f"{path}: no such file" + ("; give the files (e.g. DIR/*)" if path.is_dir() else ""))
            text = importers.read_text(path)
            parsed = importers.parse(tool, path, text)
            outcome = store.write(parsed, path=path, data=path.read_bytes(), root=root,
                                  system=system or _system_name(path), partition=partition)
        except ConfigError as exc:
            refused += 1
            print(f"aifbench import: refused {exc}", file=sys.stderr)
            continue
        if not outcome.added:
            console.print(f"{path}: nothing new (already in {root} as {outcome.run_id})", highlight=False, soft_wrap=True)
            continue
        console.print(f"{path}: {parsed.tool} -> run {outcome.run_id} ({outcome.rows} rows)", highlight=False, soft_wrap=True)
        for note in outcome.notes:
            console.print(f"  {note}", highlight=False, soft_wrap=True)
    return 2 if refused else 0
