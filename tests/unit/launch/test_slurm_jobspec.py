"""Job requests and sbatch parameters: precedence, limits, private values, shell safety, modes."""

from __future__ import annotations

import subprocess

import pytest

from aifbench.files import data_dir
from aifbench.errors import ConfigError
from aifbench.launch import jobspec, slurm
from aifbench.systems import list_systems, load_system

from tests.conftest import write


def test_profile_defaults_one_task_per_gpu():
    req = jobspec.resolve("jupiter-booster", {}, env={})
    assert (req.queue.name, req.nodes, req.tasks_per_node, req.gpus_per_node, req.time_min) == ("booster", 1, 4, 4, 30)
    assert req.device == "cuda" and req.world_size == 4 and req.account == ""


def test_flags_override_job_values_and_env_gives_private_values():
    req = jobspec.resolve("lumi-g", {"partition": "small-g", "nodes": 2, "tasks_per_node": 2, "time_min": 45},
                          env={"AIFBENCH_ACCOUNT": "project_465000000", "AIFBENCH_RESERVATION": "bench"})
    assert (req.queue.partition, req.nodes, req.tasks_per_node, req.gpus_per_node) == ("small-g", 2, 2, 2)
    assert (req.account, req.reservation) == ("project_465000000", "bench")
    assert jobspec.resolve("lumi-g", {"account": "mine"}, env={"AIFBENCH_ACCOUNT": "env"}).account == "mine"


@pytest.mark.parametrize("system,options,message", [
    ("lumi-g", {"partition": "gpu"}, r"unknown partition of lumi-g 'gpu'; allowed: dev-g, small-g, standard-g"),
    ("lumi-g", {"partition": "small-g", "nodes": 5}, r"nodes 5 is more than partition small-g of lumi-g allows; allowed: 1..4"),
    ("local-slurm", {"nodes": 3}, r"allowed: 1..2"),
    ("alps-gh200", {"partition": "debug", "time_min": 91}, r"time_min 91 .* allowed: 1..90"),
    ("vega-gpu", {"tasks_per_node": 5}, r"tasks_per_node 5 .*one task per GPU.*allowed: 1..4"),
    ("vega-gpu", {"nodes": 0}, r"--nodes \(nodes in a job file\) must be >= 1"),
    ("vega-gpu", {"nodes": "2"}, r"nodes in a job file\) must be an integer"),
    ("vega-gpu", {"mode": "batch"}, r"unknown mode 'batch'; allowed: array, packed, single"),
    ("vega-gpu", {"account": "p1; rm -rf /"}, r"--account 'p1; rm -rf /' refused"),
    ("vega-gpu", {"account": "$(whoami)"}, r"refused"),
    ("vega-gpu", {"qos": "a b"}, r"refused"),
    ("vega-gpu", {"reservation": "`id`"}, r"refused"),
    ("vega-gpu", {"name": "x;y"}, r"job name 'x;y' refused"),
    ("vega-gpu", {"colour": "red"}, r"unknown job option 'colour'"),
    ("local", {"partition": "debug"}, r"no scheduler: partition does not apply"),
    ("local", {"nodes": 2}, r"allowed: 1..1"),
])
def test_bad_requests(system, options, message):
    with pytest.raises(ConfigError, match=message):
        jobspec.resolve(system, options, env={})


def test_bad_account_from_environment_is_refused():
    with pytest.raises(ConfigError, match="refused"):
        jobspec.resolve("vega-gpu", {}, env={"AIFBENCH_ACCOUNT": "a&b"})


def test_sbatch_parameters_gres_and_srun_cpus():
    params = slurm.sbatch_parameters(jobspec.resolve("jupiter-booster", {"nodes": 2}, env={"AIFBENCH_ACCOUNT": "jsc"}))
    assert params["gres"] == "gpu:4" and "gpus_per_node" not in params
    assert (params["nodes"], params["ntasks_per_node"], params["cpus_per_task"]) == (2, 4, 72)
    assert "--cpus-per-task=72" in params["srun_args"]  # Slurm 22.05-23.02 srun does not inherit it
    assert params["account"] == "jsc" and params["partition"] == "booster" and params["exclusive"] is True
    assert params["additional_parameters"] == {"requeue": True}
    assert params["wckey"] is None  # None: submitit writes no --wckey line (its default is 'submitit')


def test_sbatch_parameters_qos_only_system_and_reservation():
    req = jobspec.resolve("marenostrum5-acc", {}, env={"AIFBENCH_RESERVATION": "r1"})
    params = slurm.sbatch_parameters(req)
    assert "partition" not in params and params["qos"] == "acc_ehpc"  # production QoS by default
    assert params["additional_parameters"]["reservation"] == "r1"


def test_setup_exports_are_shell_quoted_and_inert(tmp_path):
    import dataclasses

    assert "export NCCL_NET='AWS Libfabric'" in slurm.setup_lines(jobspec.resolve("alps-gh200", {}, env={}))
    hostile = f"$(touch {tmp_path / 'pwned'}); `touch {tmp_path / 'pwned2'}` && echo hi"
    vega = load_system("vega-gpu")
    sysp = dataclasses.replace(vega, environment=dataclasses.replace(vega.environment, vars={"X": hostile}, modules=()))
    lines = slurm.setup_lines(jobspec.resolve(sysp, {}, env={}))
    out = subprocess.run(["bash", "-c", "\n".join(lines) + '\nprintf %s "$X"'], capture_output=True, text=True,
                         check=True)
    assert out.stdout == hostile  # a value stays a value
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_every_shipped_job_file_resolves():
    names = jobspec.job_names()
    systems = set()
    for name in names:
        job = jobspec.find_job(name)
        options = {k: v for k, v in job.items() if k not in ("suite", "system", "set", "only", "environment")}
        req = jobspec.resolve(job["system"], options, env={})
        systems.add(req.system.name)
    factory = {s for s in list_systems() if load_system(s).scheduler == "slurm"}
    assert factory <= systems, f"systems without a job file: {factory - systems}"
    assert "jupiter-acceptance" in names and data_dir("jobs").is_dir()


@pytest.mark.parametrize("body,message", [
    ('[job]\nsuite = "smoke"\nsystem = "local-slurm"\naccount = "p1"\n', "'account' is private"),
    ('[job]\nsuite = "smoke"\nsystem = "local-slurm"\nreservation = "r"\n', "'reservation' is private"),
    ('[job]\nsuite = "smoke"\nsystem = "local-slurm"\nnodez = 2\n', "unknown key in \\[job\\].*nodes"),
    ('[job]\nsystem = "local-slurm"\n', "j.toml: job.suite is required"),
    ('[job]\nsuite = "smoke"\nsystem = "local-slurm"\nset = "timing.repeats=3"\n', "job.set must be a list of text"),
    ('[job]\nsuite = "smoke"\nsystem = "local-slurm"\n[extra]\n', "unknown top-level table"),
])
def test_bad_job_files(tmp_path, body, message):
    path = write(tmp_path / "j.toml", body)
    with pytest.raises(ConfigError, match=message):
        jobspec.load_job_file(path)


def test_a_suite_file_is_not_a_job_file(tmp_path):
    assert jobspec.find_job(str(data_dir("suites") / "smoke.toml")) is None
    assert jobspec.find_job("smoke") is None and jobspec.find_job("local-slurm-smoke") is not None


def test_task_plans_per_mode():
    from aifbench.config import load_suite
    from aifbench.launch.submitit_base import task_plans
    from aifbench.plan import build_plan
    from aifbench.telemetry.config import TelemetryConfig

    suite = load_suite("smoke", only=["membw"])
    plan = build_plan(suite, run_id="r1", device="cpu", results_root="/tmp/x", telemetry=TelemetryConfig())
    array = jobspec.resolve("local-slurm", {"mode": "array", "cases_per_task": 3}, env={})
    parts = task_plans(plan, array)
    assert [p for p, _ in parts] == ["a0", "a1"]
    # a case keeps its index in the suite under --only (membw's are the smoke suite's 3rd, 6th, 7th, 8th)
    assert [c.index for c in plan.cases] == [2, 5, 6, 7]
    assert [[c.index for c in q.cases] for _, q in parts] == [[2, 5, 6], [7]]
    assert all(q.part == p for p, q in parts)
    assert array.jobs_for(len(plan.cases)) == len(parts) == 2  # what `submit` reports as the array size
    packed = jobspec.resolve("local-slurm", {"mode": "packed", "nodes": 2}, env={})
    assert [p for p, _ in task_plans(plan, packed)] == ["p"]
    record = jobspec.Submission(run_id="r1", system="local-slurm", partition="debug", scheduler="slurm",
                              mode="packed", folder="/f", results_root="/tmp/x",
                              jobs=[jobspec.TaskRecord(job_id="7", part="p", case_indices=[0, 1, 2, 3], ranks=2)])
    assert [(part, rank, task, cases) for _, part, rank, task, cases in record.expected()] == [
        ("p0", 0, 0, [0, 2]), ("p1", 0, 1, [1, 3])]
    assert str(record.log_path("7", 1)) == "/f/7_1_log.err"


def test_stderr_tail_reads_only_the_end_of_a_big_log(tmp_path):
    from aifbench.launch.collect import STDERR_CHARS, stderr_tail

    log = tmp_path / "7_0_log.err"
    log.write_text("noise\n" * 200_000 + "\n  \nTraceback (most recent call last):\nRuntimeError: CUDA error: out of memory\n")
    tail = stderr_tail(log, lines=2)
    assert tail == "Traceback (most recent call last): | RuntimeError: CUDA error: out of memory"
    assert len(stderr_tail(log)) <= STDERR_CHARS and stderr_tail(tmp_path / "absent.err") == "(no stderr file absent.err)"
    (tmp_path / "empty.err").write_text("")
    assert stderr_tail(tmp_path / "empty.err") == "(stderr empty)"
