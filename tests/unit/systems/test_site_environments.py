"""The sites' software environments in the scripts `submit` writes, the rule for each option's
source (command line > job file > suite > profile), --wckey, production QoS by default, and the
profiles' limits against their own text and the README. No Slurm needed: what `sbatch --test-only`
judges on a real cluster is tests/e2e/test_slurm_sites.py; what it cannot judge (modules, images) is
here, compared with the profiles' TOML read independently."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from aifbench.files import tomllib
from aifbench.provenance import software_environment
from aifbench.systems import SYSTEMS_DIR, list_systems, load_system

REPO = Path(__file__).resolve().parents[3]
SITES = [n for n in list_systems() if load_system(n).scheduler == "slurm" and n != "local-slurm"]


@pytest.fixture
def dry_run(tmp_path, monkeypatch, capsys):
    """`aifbench submit ... --dry-run` in this process: (args...) -> (exit code, script, stderr)."""
    from aifbench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("AIFBENCH_ACCOUNT", raising=False)
    monkeypatch.delenv("AIFBENCH_RESERVATION", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["submit", *args, "--dry-run", "--results", "res"])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def setup_block(script: str) -> list[str]:
    """The script's lines between '# setup' and '# command', without comments and blank lines."""
    body = script.split("# setup\n", 1)[1].split("\n# command\n", 1)[0]
    return [ln for ln in body.splitlines() if ln.strip() and not ln.startswith("#")]


def sbatch_options(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?$", script, re.M))


def srun_line(script: str) -> str:
    return next(ln for ln in script.splitlines() if ln.startswith("srun "))


def expected_setup(raw_env: dict) -> list[str]:
    """What a profile's [environment] table must become in the script, from the TOML itself."""
    lines = ["module purge"] if raw_env.get("module_purge") else []
    if raw_env.get("modules"):
        lines += ["module load " + " ".join(raw_env["modules"]), "module list 2>&1"]
    lines += list(raw_env.get("setup", []))
    return lines + [f"export {k}={shlex.quote(str(v))}" for k, v in raw_env.get("vars", {}).items()]


def test_every_site_profile_is_covered():
    assert len(SITES) == 8 and {"jupiter-booster", "alps-gh200", "lumi-g", "leonardo-booster"} <= set(SITES)


@pytest.mark.parametrize("name", SITES)
def test_acceptance_script_sets_up_exactly_the_profiles_environment(dry_run, name):
    raw = tomllib.loads((SYSTEMS_DIR / f"{name}.toml").read_text())
    env = raw["environment"]
    code, script, err = dry_run("acceptance", "--system", name)
    assert code == 0, err
    lines = setup_block(script)
    assert lines[0].startswith("export AIFBENCH_ENVIRONMENT=")  # what provenance records the job asked for
    assert lines[1:] == expected_setup(env)
    srun = srun_line(script)
    python = env.get("python", "python3")
    if env.get("uenv"):
        assert f"--uenv={env['uenv']} --view={env['uenv_view']} " in srun
    if env.get("apptainer_image"):
        binds = ",".join(env["container_mounts"])
        assert f" singularity exec --bind {binds} {env['apptainer_image']} {python} -u -m submitit" in srun
    else:
        assert f" {python} -u -m submitit.core._submit " in srun
    assert sys.executable not in script  # never the submitting machine's interpreter
    opts = sbatch_options(script)
    assert "wckey" not in opts and opts["time"] == "60"  # the acceptance suite's time_min
    assert "(the suite)" not in err and re.search(r"time_min\s+60\s+<- suite", err), err


def test_every_site_environment_is_cited():
    for name in SITES:
        s = load_system(name)
        text = " ".join(s.unconfirmed)
        kinds = [k for k in ("modules", "uenv", "apptainer_image", "container_image", "container_environment")
                 if s.environment.describe().get(k)]
        assert kinds, f"{name}: no modules, uenv or container declared"
        for kind in kinds:  # each part either comes from a listed source or is said to be unconfirmed
            assert f"environment.{kind}" in text, f"{name}: environment.{kind} neither confirmed nor flagged"


def test_default_queue_of_every_site_is_a_production_one():
    for name in SITES:
        q = load_system(name).queue()
        words = f"{q.name} {q.partition} {q.qos}".lower()
        assert not re.search(r"debug|dbg|dev|exp|short|test", words), f"{name} defaults to {q}"


def test_option_sources_command_line_over_job_file_over_suite_over_profile(dry_run, tmp_path):
    job = tmp_path / "mine.toml"
    job.write_text('[job]\nsuite = "acceptance"\nsystem = "jupiter-booster"\ntime_min = 45\n')
    cases = [(["acceptance", "--system", "jupiter-booster"], "60", "suite"),
             ([str(job)], "45", "job file"),
             ([str(job), "--time", "20"], "20", "command line"),
             (["smoke", "--system", "jupiter-booster"], "30", "profile")]  # smoke names no time: the profile's
    for args, minutes, source in cases:
        code, script, err = dry_run(*args)
        assert code == 0, err
        assert sbatch_options(script)["time"] == minutes, args
        assert re.search(rf"time_min\s+{minutes}\s+<- {source}$", err, re.M), (args, err)
        assert f"#   time_min = {minutes}  <- {source}" in script  # the record in the script itself


def test_shipped_jupiter_job_file_and_suite_agree_on_time(dry_run):
    for args in (["jupiter-acceptance"], ["acceptance", "--system", "jupiter-booster"]):
        code, script, err = dry_run(*args)
        assert code == 0 and sbatch_options(script)["time"] == "60", err


def test_wckey_only_where_asked(dry_run, tmp_path):
    code, script, _ = dry_run("smoke", "--system", "vega-gpu")
    assert "--wckey" not in script
    code, script, err = dry_run("smoke", "--system", "vega-gpu", "--wckey", "bench")
    assert code == 0 and sbatch_options(script)["wckey"] == "bench" and re.search(r"wckey\s+bench\s+<- command line", err)
    job = tmp_path / "j.toml"
    job.write_text('[job]\nsuite = "smoke"\nsystem = "vega-gpu"\nwckey = "fromjob"\n')
    assert sbatch_options(dry_run(str(job))[1])["wckey"] == "fromjob"


def test_job_file_overrides_each_part_of_the_environment(dry_run, tmp_path):
    job = tmp_path / "leo.toml"
    job.write_text('[job]\nsuite = "smoke"\nsystem = "leonardo-booster"\n\n[environment]\nmodules = []\n'
                   'apptainer_image = "$WORK/images/pytorch.sif"\ncontainer_mounts = ["$WORK", "$SCRATCH"]\n'
                   'venv = "$WORK/venvs/aifbench"\nexport = "NONE"\n[environment.vars]\nNCCL_DEBUG = "INFO"\n')
    code, script, err = dry_run(str(job))
    assert code == 0, err
    assert sbatch_options(script)["export"] == "NONE"
    assert setup_block(script)[1:] == ["export NCCL_IB_TIMEOUT=20", "export NCCL_DEBUG=INFO"]  # vars merged
    assert (" singularity exec --bind $WORK,$SCRATCH $WORK/images/pytorch.sif $WORK/venvs/aifbench/bin/python -u -m "
            "submitit.core._submit ") in srun_line(script)
    assert re.search(r"environment\.apptainer_image\s+\$WORK/images/pytorch.sif\s+<- job file", err), err
    assert "must be importable there" not in err  # a venv is named: no note about it


def test_alps_container_engine_replaces_the_uenv(dry_run, tmp_path):
    job = tmp_path / "ce.toml"
    job.write_text('[job]\nsuite = "smoke"\nsystem = "alps-gh200"\n[environment]\n'
                   'container_environment = "ngc-pytorch-25.06"\n')
    code, script, err = dry_run(str(job))
    assert code == 0, err
    srun = srun_line(script)
    assert "--environment=ngc-pytorch-25.06 " in srun and "--uenv" not in srun and "--view" not in srun


@pytest.mark.parametrize("body,message", [
    ('[environment]\nuenv = "a"\napptainer_image = "/b.sif"\n', "uenv and apptainer_image both given"),
    ('[environment]\nvenv = "my venv"\n', "environment.venv 'my venv' refused"),
    ('[environment]\nmodules = ["PyTorch; rm -rf /"]\n', "refused"),
    ('[environment]\nexport = "SOME"\n', "environment.export: 'SOME' not allowed; allowed: , ALL, NONE"),
    ('[environment]\ncontainer = "x"\n', "unknown key in .*environment"),
])
def test_bad_environment_in_a_job_file_exits_2(dry_run, tmp_path, body, message):
    job = tmp_path / "bad.toml"
    job.write_text('[job]\nsuite = "smoke"\nsystem = "lumi-g"\n' + body)
    code, script, err = dry_run(str(job))
    assert code == 2 and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and not script


def test_provenance_records_what_the_job_got():
    got = software_environment({"LOADEDMODULES": "Stages/2025:GCC/13.3.0:PyTorch/2.5.1",
                                "SINGULARITY_CONTAINER": "/appl/x.sif", "AIFBENCH_ENVIRONMENT": '{"system":"x"}',
                                "SECRET_TOKEN": "never"})
    assert got == {"modules": "Stages/2025:GCC/13.3.0:PyTorch/2.5.1", "container": "/appl/x.sif",
                   "environment": '{"system":"x"}'}
    assert software_environment({}) == {"modules": None, "container": None, "environment": None}


def test_jupiter_limits_agree_with_the_profile_text_and_the_readme(dry_run):
    s = load_system("jupiter-booster")
    text = (SYSTEMS_DIR / "jupiter-booster.toml").read_text()
    assert s.node.count == 6000 and "~6000" in text and s.queue("booster").max_nodes is None
    readme = (REPO / "README.md").read_text()
    examples = re.findall(r"^aifbench submit (acceptance --system jupiter-booster --nodes (\d+)[^#\n]*)", readme, re.M)
    assert examples, "the README's whole-partition example"
    for line, nodes in examples:
        assert int(nodes) <= s.node.count
        code, script, err = dry_run(*shlex.split(line))
        assert code == 0 and sbatch_options(script)["nodes"] == nodes, err
    code, _, err = dry_run("acceptance", "--system", "jupiter-booster", "--nodes", "6001")
    assert code == 2 and "allowed: 1..6000" in err


def test_systems_show_prints_the_environment_and_what_it_becomes(capsys, monkeypatch):
    from aifbench.cli import main

    monkeypatch.setenv("COLUMNS", "300")
    assert main(["systems", "show", "alps-gh200"]) == 0
    out = capsys.readouterr().out
    assert "environment (a job file's [environment] replaces any of these):" in out
    assert "uenv: pytorch/v2.8.0:v1" in out and "srun: --uenv=pytorch/v2.8.0:v1 --view=default" in out
    assert "script: export NCCL_NET='AWS Libfabric'" in out and "runs: python3 -m submitit" in out
    assert main(["systems", "show", "jupiter-booster"]) == 0
    out = capsys.readouterr().out
    assert "script: module load Stages/2025 GCC OpenMPI PyTorch" in out
