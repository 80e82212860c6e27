"""A Plan: everything a worker needs to run its share of a suite, serialisable to JSON.

`build_plan` makes one from a validated Suite and the run's TelemetryConfig (for `run` and
`submit` alike); launchers (in-process, local processes, Slurm) hand it to every rank
unchanged, so all ranks and array tasks agree on run id, cases, timing and telemetry settings.
plan.json written before this form held `suite_config` (Suite.config_dict()) and
`telemetry_interval_s`; Plan.from_json still reads it (a compatibility shim that stays until release 0.2.0).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifbench.atomic import atomic_write_text
from aifbench.config import Case, Suite, suite_config
from aifbench.errors import ConfigError
from aifbench.telemetry.config import TelemetryConfig
from aifbench.timing import TimingConfig


@dataclass(frozen=True, kw_only=True)
class Plan:
    run_id: str
    suite: str
    """the suite's name"""
    suite_path: str = ""
    """the suite file it was read from"""
    overrides: tuple[str, ...] = ()
    """the --set overrides applied to it"""
    config_hash: str
    """Suite.config_hash: sha256 of the suite's config (not its path), 16 hex digits"""
    suite_cases: tuple[Case, ...]
    """every case of the suite, in order (index i at position i)"""
    timing: TimingConfig
    telemetry: TelemetryConfig = TelemetryConfig()
    device: str
    """'cpu' or 'cuda' (each rank uses cuda:<local rank>)"""
    results_root: str
    system: str = "local"
    partition: str = ""
    launcher: str = "inprocess"
    case_indices: tuple[int, ...] | None = None
    """the subset of cases this worker runs (a Slurm array task); None = all"""
    part: str = "main"
    """shard part name: 'main', or 'a<N>' for array task N"""
    dist_timeout_s: float = 300.0
    """torch.distributed rendezvous and collective timeout"""
    world_size: int = 1
    """ranks of one launch (a job, an array task; 1 for each task of a packed job): every rank checks
    it joined a world of this size. Plans written before this field read as 1."""

    def __post_init__(self) -> None:
        if isinstance(self.world_size, bool) or not isinstance(self.world_size, int) or self.world_size < 1:
            raise ConfigError(f"plan world_size must be an integer >= 1, got {self.world_size!r}")

    @property
    def cases(self) -> tuple[Case, ...]:
        """This plan's share of the suite's cases (all of them unless case_indices is set)."""
        if self.case_indices is None:
            return self.suite_cases
        wanted = set(self.case_indices)
        return tuple(c for c in self.suite_cases if c.index in wanted)

    def config_dict(self) -> dict[str, Any]:
        """The suite's config as Suite.config_dict() gives it (runs.config)."""
        return suite_config(self.suite, self.suite_path, self.overrides, self.timing, self.suite_cases)

    def replace(self, **changes: Any) -> "Plan":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(suite_cases=[_case_dict(c) for c in self.suite_cases], timing=dataclasses.asdict(self.timing),
                    telemetry=self.telemetry.to_dict(), overrides=list(self.overrides),
                    case_indices=None if self.case_indices is None else list(self.case_indices))
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        if "suite_config" in data:
            data = _from_suite_config(data)
        try:
            data.update(suite_cases=tuple(Case(index=c["index"], benchmark=c["benchmark"], params=c["params"])
                                          for c in data["suite_cases"]),
                        timing=TimingConfig(**data["timing"]), telemetry=TelemetryConfig.from_dict(data["telemetry"]),
                        overrides=tuple(data.get("overrides", ())))
            if data.get("case_indices") is not None:
                data["case_indices"] = tuple(data["case_indices"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a plan: {type(exc).__name__}: {exc}") from None

    def save(self, path: Path) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Plan":
        return cls.from_json(Path(path).read_text())

    @property
    def run_dir(self) -> Path:
        return Path(self.results_root) / self.run_id


def build_plan(suite: Suite, *, device: str, results_root: str | Path, telemetry: TelemetryConfig,
               run_id: str | None = None, system: str = "local", partition: str = "",
               launcher: str = "inprocess", world_size: int = 1) -> Plan:
    """The plan of a run of `suite` (for `run` and `submit`): its typed cases and timing, the
    telemetry settings every rank uses, and a new run id unless one is given."""
    if run_id is None:
        from aifbench.results.store import new_run_id

        run_id = new_run_id(suite.name)
    return Plan(run_id=run_id, suite=suite.name, suite_path=suite.path, overrides=tuple(suite.overrides),
                config_hash=suite.config_hash, suite_cases=tuple(suite.cases), timing=suite.timing,
                telemetry=telemetry, device=device, results_root=str(results_root), system=system,
                partition=partition, launcher=launcher, world_size=world_size)


def _case_dict(case: Case) -> dict[str, Any]:
    """A case in plan.json; case_id is derived (written for readers of the file, not read back)."""
    return {"index": case.index, "benchmark": case.benchmark, "params": case.params, "case_id": case.case_id}


def _from_suite_config(data: dict[str, Any]) -> dict[str, Any]:
    """A plan.json of the earlier form (suite_config: Suite.config_dict(), telemetry_interval_s)
    in this form's fields; its telemetry settings beyond the interval were the defaults. Stays until
    release 0.2.0."""
    data = dict(data)
    config = data.pop("suite_config")
    interval_s = data.pop("telemetry_interval_s", TelemetryConfig().interval_s)
    data.update(suite_path=config.get("path", ""), overrides=config.get("overrides", ()), timing=config["timing"],
                suite_cases=[dict(c, index=i) for i, c in enumerate(config["cases"])],
                telemetry={"interval_s": interval_s})
    return data
