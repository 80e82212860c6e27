"""A new scheduler backend is one module and one registration (the README's recipe): a toy
scheduler defined here only — a Launcher subclass and the dataclass of its profile table — is
registered, read from a system TOML written here with its own [toy] table, plans a job
(`submit --dry-run`), submits, and reports, cancels and lists job states through the same
commands as Slurm, with no line of the package naming it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

from aifbench import launch
from aifbench.cli import main
from aifbench.errors import ConfigError
from aifbench.launch.base import CaseDone, JobInfo, Launcher
from aifbench.launch.jobspec import JobRequest, Submission, TaskRecord, common_fields, int_opt
from aifbench.plan import Plan
from aifbench.results import schema
from aifbench.systems import SCHEDULERS, SchedulerTable, System, load_system, register
from aifbench.typed_toml import spec

SRC = Path(__file__).resolve().parents[3] / "src" / "aifbench"


# --- the backend: what its one module would hold ---------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class ToyTable(SchedulerTable):
    """The [toy] table of a profile: its partitions (SchedulerTable) and one setting of its own."""

    time_min: int = spec(10, min=1)
    """default time limit, minutes"""


TOY_STATES = {"Q": "PENDING", "R": "RUNNING", "D": "COMPLETED", "X": "CANCELLED"}
"""the toy scheduler's own job states -> launch.base.STATES"""
QUEUE_FILE = "toy-queue.json"
"""the toy scheduler's whole state: job id -> its letter, in the run directory"""


class ToyLauncher(Launcher):
    name = "toy"
    label = "toy"

    def resolve(self, system: System, options: Mapping[str, Any], env: Mapping[str, str] | None = None,
                device: str | None = None) -> JobRequest:
        table = system.table
        assert isinstance(table, ToyTable)
        queue = system.queue(options.get("partition"))
        nodes = int_opt(options, "nodes", 1, 1)
        if queue.max_nodes is not None and nodes > queue.max_nodes:
            raise ConfigError(f"--nodes {nodes}: toy partition {queue.name} allows 1..{queue.max_nodes}")
        return JobRequest(system=system, queue=queue, nodes=nodes, tasks_per_node=int_opt(options, "tasks_per_node", 1, 1),
                          gpus_per_node=0, cpus_per_task=None, time_min=int_opt(options, "time_min", table.time_min, 1),
                          **common_fields(options, "cpu"))

    def script(self, plan: Plan, req: JobRequest) -> str:
        return (f"toy-submit --queue {req.queue.name} --nodes {req.nodes} --time {req.time_min} "
                f"--run {plan.run_id} --cases {len(plan.cases)}\n")

    def submit(self, plan: Plan, req: JobRequest, on_case: CaseDone | None = None) -> Submission:
        record = Submission(run_id=plan.run_id, system=req.system.name, partition=req.queue.name, scheduler=self.name,
                            mode=req.mode, folder=str(plan.run_dir), results_root=str(plan.results_root),
                            jobs=[TaskRecord(job_id="toy-1", part="main", ranks=req.world_size,
                                             case_indices=[c.index for c in plan.cases])],
                            submitted_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        record.save()
        (record.run_dir / QUEUE_FILE).write_text(json.dumps({"toy-1": "Q"}))
        return record

    def states(self, records: Sequence[Submission], timeout_s: float | None = None) -> dict[str, dict[str, JobInfo]]:
        out = {}
        for record in records:
            queue = json.loads((record.run_dir / QUEUE_FILE).read_text())
            out[record.run_id] = {j: JobInfo(j, TOY_STATES.get(letter, "UNKNOWN"), letter, source="toy")
                                  for j, letter in queue.items()}
        return out

    def cancel(self, record: Submission) -> list[str]:
        path = record.run_dir / QUEUE_FILE
        queue = json.loads(path.read_text())
        live = [j for j, letter in queue.items() if letter in "QR"]
        path.write_text(json.dumps({j: "X" if j in live else letter for j, letter in queue.items()}))
        return live


# --- its registration, and a site's profile -------------------------------------------------

@pytest.fixture(params=["classes", "names"])
def toy(request):
    """Registered by its classes, or by 'module:Class' names (imported only when first needed)."""
    if request.param == "classes":
        register("toy", ToyLauncher, ToyTable)
    else:
        register("toy", f"{__name__}:ToyLauncher", f"{__name__}:ToyTable")
    yield
    del SCHEDULERS["toy"]


PROFILE = """
name = "toybox"
site = "a test"
scheduler = "toy"

[node]
arch = "x86_64"
gpu_sku = "cpu"
gpus = 0
device = "cpu"

[toy]
default_partition = "small"
time_min = 7

[toy.partitions.small]
max_nodes = 1

[toy.partitions.big]
max_nodes = 4
"""


@pytest.fixture
def profile(tmp_path, toy) -> Path:
    path = tmp_path / "toybox.toml"
    path.write_text(PROFILE)
    return path


def test_a_backend_fills_the_job_columns_through_the_neutral_variables():
    """The runs table's job columns (schema v2) read AIFBENCH_* first, then Slurm's."""
    from aifbench.provenance import job_ids

    toy_job = job_ids({"AIFBENCH_JOB_ID": "toy-1", "AIFBENCH_NODE_INDEX": "0", "SLURM_JOB_ID": "9"})
    assert (toy_job["job_id"], toy_job["node_index"], toy_job["array_task_id"]) == ("toy-1", "0", None)
    assert job_ids({"SLURM_JOB_ID": "9", "SLURM_ARRAY_TASK_ID": "3"})["job_id"] == "9"
    assert set(job_ids({})) == {c for c in schema.RUNS_TABLE.names if c in schema.RENAMED.values()}


def test_the_package_names_no_toy():
    """Nothing in the package was changed for this backend."""
    assert not [p for p in SRC.rglob("*.py") if "toy" in p.read_text(encoding="utf-8").lower()]


def test_a_registered_backend_parses_its_own_profile_table(profile):
    s = load_system(str(profile))
    assert s.scheduler == "toy" and isinstance(s.table, ToyTable) and s.table.time_min == 7
    assert s.queue_names == ["small", "big"] and s.queue().name == "small" and s.queue("big").max_nodes == 4
    assert s.slurm is None and isinstance(launch.backend("toy"), ToyLauncher)
    with pytest.raises(ConfigError, match=r"unknown key in \[toy\] of .*'slots'; allowed: .*time_min"):
        load_system(str(_write(profile, PROFILE.replace("time_min = 7", "slots = 2"))))
    with pytest.raises(ConfigError, match=r"scheduler 'toy' needs a \[toy\] table"):
        load_system(str(_write(profile, PROFILE.split("[toy]")[0])))


def test_an_unregistered_backend_is_refused_by_name(profile):
    entry = SCHEDULERS.pop("toy")
    try:
        with pytest.raises(ConfigError, match="scheduler: 'toy' not allowed; allowed: slurm, local"):
            load_system(str(profile))
    finally:
        SCHEDULERS["toy"] = entry


def _write(path: Path, text: str) -> Path:
    out = path.with_name("edited.toml")
    out.write_text(text)
    return out


def test_a_toy_job_is_planned_submitted_followed_and_cancelled(profile, tmp_path, capsys):
    results = tmp_path / "results"
    base = ["submit", "smoke", "--system", str(profile), "--only", "membw", "--results", str(results)]
    assert main([*base, "--dry-run", "--partition", "big", "--nodes", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("toy-submit --queue big --nodes 3 --time 7 --run ") and "--cases " in out
    assert "dry run:" in err and "on toybox/big" in err and not results.exists()
    assert main([*base, "--nodes", "2"]) == 2  # the toy's own limit, one line, exit 2
    assert "toy partition small allows 1..1" in capsys.readouterr().err

    assert main(base) == 0
    assert "submitted run" in capsys.readouterr().out
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    assert main(["jobs", "--results", str(results), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["job_id"], row["state"], row["source"], row["system"]) == ("toy-1", "PENDING", "toy", "toybox")

    (run_dir / QUEUE_FILE).write_text(json.dumps({"toy-1": "R"}))
    assert main(["cancel", run_dir.name, "--results", str(results)]) == 0
    assert "cancelled toy-1" in capsys.readouterr().out
    assert main(["jobs", run_dir.name, "--results", str(results), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "CANCELLED"
    assert main(["systems", "show", str(profile)]) == 0
    shown = capsys.readouterr().out
    assert "partition small (default)" in shown and "partition big" in shown
