"""A Plan: everything a worker needs to run its share of a suite, serialisable to JSON.

The CLI builds one from a validated Suite; launchers (in-process, local processes, Slurm)
hand it to every rank unchanged, so all ranks and array tasks agree on run id and cases.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifbench.atomic import atomic_write_text
from aifbench.config import Case, Suite
from aifbench.timing import TimingConfig


@dataclass(frozen=True, kw_only=True)
class Plan:
    run_id: str
    suite: str
    suite_config: dict[str, Any]
    """Suite.config_dict(): path, overrides, timing, cases"""
    config_hash: str
    device: str
    """'cpu' or 'cuda' (each rank uses cuda:<local rank>)"""
    results_root: str
    system: str = "local"
    partition: str = ""
    launcher: str = "inprocess"
    telemetry_interval_s: float = 0.1
    """sampling interval of the telemetry thread (0 disables telemetry)"""
    case_indices: tuple[int, ...] | None = None
    """the subset of cases this worker runs (a Slurm array task); None = all"""
    part: str = "main"
    """shard part name: 'main', or 'a<N>' for array task N"""
    dist_timeout_s: float = 300.0
    """torch.distributed rendezvous and collective timeout"""

    @classmethod
    def from_suite(cls, suite: Suite, *, run_id: str, device: str, results_root: str | Path, **kw: Any) -> "Plan":
        return cls(run_id=run_id, suite=suite.name, suite_config=suite.config_dict(),
                   config_hash=suite.config_hash, device=device, results_root=str(results_root), **kw)

    @property
    def timing(self) -> TimingConfig:
        return TimingConfig(**self.suite_config["timing"])

    @property
    def cases(self) -> list[Case]:
        cases = [Case(index=i, benchmark=c["benchmark"], params=c["params"])
                 for i, c in enumerate(self.suite_config["cases"])]
        if self.case_indices is not None:
            wanted = set(self.case_indices)
            cases = [c for c in cases if c.index in wanted]
        return cases

    def replace(self, **changes: Any) -> "Plan":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        if data.get("case_indices") is not None:
            data["case_indices"] = tuple(data["case_indices"])
        return cls(**data)

    def save(self, path: Path) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Plan":
        return cls.from_json(Path(path).read_text())

    @property
    def run_dir(self) -> Path:
        return Path(self.results_root) / self.run_id
