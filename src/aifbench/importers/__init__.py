"""Importers: the outputs of tools operators already run, read into aifbench's one results schema.

`parse(tool, path)` reads one file into a `records.Parsed` (pure parsing, one module per tool);
`aifbench.importers.store.write` turns it into one run of the store. `detect(path, text)` names
the tool from the content (`--from auto`). docs/importing.md has the commands and the mapping.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from aifbench.errors import ConfigError, one_of
from aifbench.importers import dcgm, mlperf, nccl_tests, nvbandwidth, stream
from aifbench.importers.records import Parsed, ParseError

Parser = Callable[[Path, str], Parsed]
TOOLS: dict[str, Parser] = {
    "nccl-tests": lambda path, text: nccl_tests.parse(path, text, "nccl-tests"),
    "rccl-tests": lambda path, text: nccl_tests.parse(path, text, "rccl-tests"),
    "nvbandwidth": nvbandwidth.parse,
    "stream": stream.parse_stream,
    "babelstream": stream.parse_babelstream,
    "dcgm-diag": dcgm.parse,
    "mlperf": mlperf.parse,
}
AUTO = "auto"
MAX_BYTES = 64 * 1024 * 1024
"""larger files are refused: every format read here is a few MB at most"""


def detect(path: Path, text: str) -> str:
    """The tool whose output `text` is, by the lines each tool always prints; ParseError if none."""
    head = text[:200_000]
    if re.search(r"^\s*:::(MLLOG|SYSJSON)\s*\{", head, re.M) or re.search(r'"system_name"\s*:', head) \
            and re.search(r'"accelerator_model_name"\s*:', head):
        return "mlperf"
    if re.search(r'"DCGM GPU Diagnostic"\s*:', head) or re.search(r"^\|\s*Diagnostic\s*\|\s*Result\s*\|", head, re.M):
        return "dcgm-diag"
    if re.search(r'^\s*\{\s*"nvbandwidth"\s*:', head) or re.search(r"^nvbandwidth Version:", head, re.M) \
            or re.search(r"^Running \w+_(?:ce|sm)\.\s*$", head, re.M) \
            or re.search(r"^memcpy (?:CE|SM) (?:CPU|GPU)\(row\)", head, re.M):
        return "nvbandwidth"
    if re.search(r"^STREAM version \$Revision", head, re.M) or re.search(r"^Function\s+Best Rate MB/s", head, re.M):
        return "stream"
    if re.search(r"^BabelStream\s*$", head, re.M) or re.search(r"^Function\s+MBytes/sec\s+Min \(sec\)", head, re.M):
        return "babelstream"
    if re.search(r"^rccl-tests: Version|^RCCL version", head, re.M) or "AMD Instinct" in head \
            and re.search(r"^#\s+size\s+count\s+type", head, re.M):
        return "rccl-tests"
    if re.search(r"^#\s+size\s+count\s+type\b", head, re.M) or re.search(r"^#\s*nThread\s+\d+\s+nGpus", head, re.M) \
            or re.search(r'^\s*\{\s*"version"\s*:\s*\d+\s*,\s*"start_time"', head) \
            or re.search(r'"average_bus_bandwidth"\s*:', head):
        return "nccl-tests"
    raise ParseError(path, 1, "output of one of " + ", ".join(TOOLS) + " (no line any of them always prints "
                                                                      "was found; name the tool with --from)")


def read_text(path: Path) -> str:
    """The file's text (UTF-8, undecodable bytes replaced); a one-line ConfigError when unreadable."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BYTES // 2**20} MiB; not a tool output this importer reads")
        return path.read_bytes().decode("utf-8-sig", errors="replace")  # a BOM is not content
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give the files (e.g. DIR/*)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def parse(tool: str, path: Path, text: str | None = None) -> Parsed:
    """Read one file as `tool` (or `auto`: detect it)."""
    if tool != AUTO and tool not in TOOLS:
        raise one_of("tool", tool, [*TOOLS, AUTO])
    text = read_text(path) if text is None else text
    if not text.strip():
        raise ParseError(path, 1, "the tool's output; the file is empty")
    chosen = detect(path, text) if tool == AUTO else tool
    return TOOLS[chosen](path, text)
