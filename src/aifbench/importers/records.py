"""What an importer reads from a peer tool's output file: typed records, no store columns yet.

Every importer (one module per tool) turns text into a `Parsed`: the devices of the file's own
device block, the measured `Row`s (already on the metric dictionary), the provenance the file
prints, and what the file lacks (`missing`: planned sizes or parts a cut or edited file does not
hold; `notes`: lines skipped or rows broken by interleaved output). aifbench.importers.store
turns a Parsed into the store's rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aifbench.errors import ConfigError

NOT_PRINTED = "(not printed)"
"""what a required text column holds when the file does not print it"""


class ParseError(ConfigError):
    """A file that does not read as the tool's output: names the file, the line and what was expected (exit 2)."""

    def __init__(self, path: Path | str, line: int, expected: str):
        self.path, self.line, self.expected = Path(path), line, expected
        super().__init__(f"{path}:{line}: {expected}")


@dataclass(frozen=True, slots=True)
class Device:
    """One rank (or GPU) of the file's device block."""

    rank: int
    node: str = NOT_PRINTED
    device: str = "cuda:0"
    """as torch would name it (the store's device column): 'cuda:3' (ROCm GPUs too), 'cpu'"""
    name: str = NOT_PRINTED
    """the GPU or CPU model exactly as printed"""
    bus_id: str = ""
    pci_device_id: str | None = None


@dataclass(slots=True)
class Row:
    """One figure of one case: benchmark + params name the case (as aifbench's own benchmarks do)."""

    benchmark: str
    params: dict[str, Any]
    metric: str
    value: float
    stat: str = "value"
    status: str = "ok"
    """ok | failed (the tool's own check failed: kept, value in detail) | skipped (no figure to judge)"""
    reason: str = ""
    detail: str = ""
    n_samples: int = 1
    peak_kind: str = ""
    """hardware catalog peak kind the value is a fraction of ('hbm_gbps'); empty: none"""

    def __post_init__(self) -> None:
        if self.status == "ok" and (self.value is None or not math.isfinite(self.value)):
            raise ValueError(f"{self.metric}: an ok row needs a finite value, got {self.value!r}")


@dataclass(slots=True)
class Parsed:
    """Everything one file says (see the module docstring)."""

    tool: str
    """nccl-tests, rccl-tests, nvbandwidth, stream, babelstream, dcgm-diag, mlperf"""
    rows: list[Row] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    world_size: int = 1
    version: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    """nccl, cuda, driver, rocm, ... as printed"""
    args: str = ""
    """the command arguments where the file prints them"""
    started: datetime | None = None
    ended: datetime | None = None
    missing: list[str] = field(default_factory=list)
    """parts the tool's own header announces (or its format always holds) that the file lacks"""
    notes: list[str] = field(default_factory=list)
    """lines skipped and rows not used, with their line numbers"""
    extra: dict[str, Any] = field(default_factory=dict)
    """tool-specific provenance kept in the run's config (JSON)"""

    @property
    def nodes(self) -> list[str]:
        return sorted({d.node for d in self.devices})
