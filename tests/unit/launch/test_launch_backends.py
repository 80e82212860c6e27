"""The launcher interface: one backend table, one way into the runner, a CLI that does not
branch on the scheduler, and operations a backend lacks refused in one line (exit 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aifbench import launch
from aifbench.errors import ConfigError
from aifbench.launch.base import ForegroundLauncher, Launcher, NotSupported
from aifbench.launch.jobspec import Submission, TaskRecord
from aifbench.systems import SCHEDULERS, load_system

SRC = Path(__file__).resolve().parents[3] / "src" / "aifbench"


def _trees():
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def test_profile_schedulers_are_the_backend_table():
    """One table: what a profile's `scheduler` may name is what `aifbench submit` can launch."""
    assert launch.BACKENDS is SCHEDULERS
    assert set(SCHEDULERS) == {"slurm", "local"}


@pytest.mark.parametrize("key", [*launch.BACKENDS, *launch.HERE])
def test_every_table_entry_is_a_launcher_named_by_its_key(key):
    launcher = launch.backend(key) if key in launch.BACKENDS else launch._load(launch.HERE[key])
    assert isinstance(launcher, Launcher) and launcher.name == key and launcher.label
    assert launcher.foreground == (key in launch.HERE)


def test_unknown_scheduler_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown scheduler 'pbs'; allowed: local, slurm"):
        launch.backend("pbs")


def test_runner_execute_is_called_only_by_worker_run_plan():
    """One way from any launcher into the runner."""
    callers = []
    for name, tree in _trees():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "execute":
                    callers.append(f"{name}:{fn.name}")
    assert sorted(set(callers)) == ["worker.py:run_plan"]
    imports = [name for name, tree in _trees() for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module == "aifbench.runner"
               and any(a.name == "execute" for a in node.names)]
    assert imports == ["worker.py"]


def test_nothing_branches_on_a_scheduler_name():
    """The backend that owns a difference overrides a hook; nobody compares `.scheduler` (or
    submitit's `.cluster`) with a name."""
    found = []
    for name, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                named = any(isinstance(s, ast.Attribute) and s.attr in ("scheduler", "cluster") for s in sides)
                if named and any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides):
                    found.append(f"{name}:{node.lineno}")
    assert found == []


@pytest.mark.parametrize("module", ["cli/run.py", "cli/jobs.py", "cli/slurm.py"])
def test_cli_reaches_launchers_through_the_interface_only(module):
    specs = [*(s.launcher for s in SCHEDULERS.values()), *launch.HERE.values()]
    backends = {spec.partition(":")[0] for spec in specs if isinstance(spec, str)}
    backends |= {"aifbench.launch.submitit_base", "aifbench.launch.collect"}
    tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
    used = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not used & backends


def test_foreground_launchers_refuse_what_they_do_not_have(tmp_path):
    record = Submission(run_id="r1", system="local", partition="local", scheduler="inprocess", mode="single",
                        folder=str(tmp_path), results_root=str(tmp_path),
                        jobs=[TaskRecord(job_id="1", part="main", case_indices=[0], ranks=1)])
    for launcher in (launch.here(1), launch.here(2)):
        assert isinstance(launcher, ForegroundLauncher)
        for op in (launcher.cancel, launcher.collect):
            with pytest.raises(NotSupported, match="foreground") as err:
                op(record)
            assert err.value.exit_code == 2
        with pytest.raises(NotSupported, match="did not run in this process"):
            launcher.states([record])


@pytest.mark.parametrize("nproc, message", [(0, "--nproc must be >= 1, got 0"), (65, "--nproc 65 on CPU: allowed 1..64")])
def test_local_processes_resolve_refuses_bad_nproc(nproc, message):
    with pytest.raises(ConfigError, match=message):
        launch.here(nproc).resolve(load_system("local"), {"tasks_per_node": nproc}, device="cpu")


def test_in_process_launcher_runs_a_plan_and_reports_its_state(tmp_path):
    from aifbench.config import load_suite
    from aifbench.plan import build_plan
    from aifbench.results.store import load
    from aifbench.telemetry.config import TelemetryConfig

    launcher = launch.here(1)
    req = launcher.resolve(load_system("local"), {"tasks_per_node": 1}, device="cpu")
    plan = build_plan(load_suite("smoke", ["timing.repeats=2", "timing.warmup=1"], ["membw"]), run_id="ip1",
                      device="cpu", results_root=tmp_path, system="local", launcher=launcher.label,
                      telemetry=TelemetryConfig(interval_s=0))
    seen: list[tuple[str, str]] = []
    record = launcher.submit(plan, req, on_case=lambda case_id, what: seen.append((case_id, what)))
    assert [c for c, _ in seen] == [c.case_id for c in plan.cases] and {w for _, w in seen} == {"ok"}
    (info,) = launcher.states([record])["ip1"].values()
    assert info.state == "COMPLETED" and info.final
    runs = load([tmp_path / "ip1"]).runs
    assert list(runs["launcher"]) == ["inprocess"] and list(runs["status"]) == ["ok"]


def test_submit_backends_resolve_their_own_profile_table():
    slurm, local = launch.backend("slurm"), launch.backend("local")
    req = slurm.resolve(load_system("local-slurm"), {"nodes": 2, "partition": None}, env={})
    assert (req.nodes, req.queue.partition) == (2, "debug")
    with pytest.raises(ConfigError, match="has no scheduler: partition does not apply"):
        local.resolve(load_system("local"), {"partition": "debug"}, env={}, device="cpu")
    with pytest.raises(ConfigError, match="unknown job option 'nodez'"):
        slurm.resolve(load_system("local-slurm"), {"nodez": 2}, env={})
    script = local.script(_plan(), local.resolve(load_system("local"), {}, env={}, device="cpu"))
    assert "submitit's local executor" in script and "#SBATCH" not in script


def test_slurm_notes_a_missing_account_and_local_has_none():
    from aifbench.systems import list_systems

    needy = [s for s in map(load_system, list_systems()) if s.slurm and s.slurm.account_required]
    assert needy, "no shipped profile requires an account: this test checks nothing"
    slurm = launch.backend("slurm")
    notes = slurm.notes(slurm.resolve(needy[0], {}, env={}))
    assert "needs a Slurm account" in notes[0]
    # with an account, only the note that the site environment names no venv is left (docs/sites.md)
    assert [n for n in slurm.notes(slurm.resolve(needy[0], {}, env={"AIFBENCH_ACCOUNT": "p1"}))
            if "venv" not in n] == []
    assert launch.backend("local").notes(launch.backend("local").resolve(load_system("local"), {}, device="cpu")) == []


def test_states_of_mixed_runs_go_to_their_own_backends(tmp_path):
    """A submitit-local run whose controller is gone, with no result: FAILED, decided without Slurm."""
    record = Submission(run_id="gone1", system="local", partition="local", scheduler="local", mode="single",
                        folder=str(tmp_path), results_root=str(tmp_path),
                        jobs=[TaskRecord(job_id="999999999", part="main", case_indices=[0], ranks=1)])
    (info,) = launch.states([record])["gone1"].values()
    assert info.state == "FAILED" and "gone" in info.raw_state
    stray = Submission(**{**record.__dict__, "run_id": "x", "scheduler": "pbs"})
    with pytest.raises(ConfigError, match="unknown scheduler 'pbs'"):
        launch.states([record, stray])


def _plan():
    from aifbench.config import load_suite
    from aifbench.plan import build_plan
    from aifbench.telemetry.config import TelemetryConfig

    return build_plan(load_suite("smoke", only=["membw"]), run_id="d1", device="cpu", results_root="/tmp/x",
                      telemetry=TelemetryConfig())
