"""The runner: failures mid-suite are recorded and the rest runs; resume keeps completed cases."""

from dataclasses import dataclass

import pytest

from aifbench.benchmarks import registry
from aifbench.benchmarks.base import Benchmark, Measurement, Metric, param
from aifbench.cli import main
from aifbench.config import load_suite
from aifbench.errors import CorrectnessError
from aifbench.plan import build_plan
from aifbench.results.store import load
from aifbench.runner import execute
from aifbench.telemetry.config import TelemetryConfig
from tests.conftest import write

CALLS: list[str] = []


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeConfig:
    behaviour: str = param("ok", "what the probe does", choices=("ok", "crash", "wrong", "skip"))


@registry.register
class Probe(Benchmark):
    """A benchmark whose behaviour the suite chooses: the runner is what is under test."""

    name = "test_probe"
    description = "test double for runner behaviour"
    Config = ProbeConfig
    emits = ("time_s",)

    def skip_reason(self):
        return "probe asked to skip" if self.config.behaviour == "skip" else None

    def check(self):
        if self.config.behaviour == "wrong":
            raise CorrectnessError("result differs from reference")

    def measure(self, timer):
        CALLS.append(self.config.behaviour)
        if self.config.behaviour == "crash":
            raise MemoryError("CUDA out of memory (simulated)")
        stats = timer.time(lambda: sum(range(100)), warmup=0, repeats=3)
        return Measurement([Metric("time_s", stats.median_s, n_samples=stats.n)], {"time_s": stats.samples_s})


SUITE = """
[suite]
name = "probe"
[[case]]
benchmark = "test_probe"
sweep = { behaviour = ["ok", "crash", "wrong", "skip", "ok"] }
"""


def test_failure_in_the_middle_is_recorded_and_the_suite_goes_on(tmp_path, capsys):
    suite = write(tmp_path / "probe.toml", SUITE)
    code = main(["run", str(suite), "--results", str(tmp_path / "res"), "--telemetry-hz", "0"])
    assert code == 1  # a failed case makes the command exit 1 at the end
    res = load([tmp_path / "res"])
    by_case = res.metrics.drop_duplicates("case_id").set_index("case_id").sort_index()
    assert list(by_case["status"]) == ["ok", "failed", "failed", "skipped", "ok"]
    reasons = list(by_case["reason"])
    assert "MemoryError: CUDA out of memory" in reasons[1]
    assert "CorrectnessError: result differs" in reasons[2]
    assert reasons[3] == "probe asked to skip"
    assert res.runs.iloc[0]["status"] == "failed"


def test_resume_keeps_completed_cases_and_reruns_failed_ones(tmp_path):
    suite = load_suite(str(write(tmp_path / "probe.toml", SUITE)))
    plan = build_plan(suite, run_id="resume-run", device="cpu", results_root=tmp_path, telemetry=TelemetryConfig(interval_s=0))
    CALLS.clear()
    execute(plan)
    first = load([tmp_path]).metrics
    assert CALLS == ["ok", "crash", "ok"]
    CALLS.clear()
    execute(plan)  # as after a requeue: same run, same rank, same shard
    assert CALLS == ["crash"]  # only the failed case runs again
    second = load([tmp_path]).metrics
    assert len(second) == len(first)  # nothing duplicated
    assert set(second["case_id"]) == set(first["case_id"])


def _agree_worker(rank, init_file, out_dir):
    import json as _json

    import torch.distributed as dist

    from aifbench.runner import _agree_on_kept

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    kept = {"a": "ok", "b": "ok"} if rank == 0 else {"a": "ok", "c": "skipped"}
    (out_dir / f"{rank}.json").write_text(_json.dumps(_agree_on_kept(kept)))
    dist.destroy_process_group()


def test_ranks_resume_only_the_cases_every_rank_kept(tmp_path):
    import json as _json

    import torch.multiprocessing as tmp_mp

    tmp_mp.spawn(_agree_worker, args=(str(tmp_path / "init"), tmp_path), nprocs=2, join=True)
    assert _json.loads((tmp_path / "0.json").read_text()) == {"a": "ok"}
    assert _json.loads((tmp_path / "1.json").read_text()) == {"a": "ok"}


def test_rank_device_follows_gpu_binding():
    from aifbench.errors import LaunchError
    from aifbench.runner import rank_device

    assert rank_device("cpu", 3) == "cpu"
    assert rank_device("cuda", 2, visible=4) == "cuda:2"
    assert rank_device("cuda", 3, visible=1) == "cuda:0"  # one GPU bound per task by the scheduler
    with pytest.raises(LaunchError, match="local rank 5 has no GPU"):
        rank_device("cuda", 5, visible=4)


def test_interrupted_run_and_empty_measurement_are_not_ok(tmp_path, monkeypatch):
    from aifbench.runner import _run_case

    suite = load_suite(str(write(tmp_path / "probe.toml", SUITE)))
    plan = build_plan(suite, run_id="int-run", device="cpu", results_root=tmp_path, telemetry=TelemetryConfig(interval_s=0))
    monkeypatch.setattr(Probe, "measure", lambda self, timer: Measurement())
    calls = []

    def stop_after_two(case, *args):
        calls.append(case)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a preemption signal would
        return _run_case(case, *args)

    monkeypatch.setattr("aifbench.runner._run_case", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        execute(plan)
    res = load([tmp_path])
    assert res.runs.iloc[0]["status"] == "interrupted"
    first = res.metrics[res.metrics["case_id"] == plan.cases[0].case_id].iloc[0]
    assert first["status"] == "failed" and first["reason"] == "benchmark returned no metrics"
