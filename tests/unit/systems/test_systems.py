"""System profiles: every shipped profile loads, names catalog SKUs, cites sources; bad profiles are refused."""

from __future__ import annotations

import sys

import pytest

from aifbench.errors import ConfigError
from aifbench.hardware import catalog
from aifbench.systems import SYSTEMS_DIR, list_systems, load_system, parse_system

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REQUIRED = {"jupiter-booster", "alps-gh200", "marenostrum5-acc", "leonardo-booster", "lumi-g",
            "meluxina-gpu", "karolina-gpu", "vega-gpu", "local", "local-slurm"}
# (system, GPU SKU, torch devices per node, arch) as the issue and the sites state them
EXPECTED = [
    ("jupiter-booster", "gh200-96gb", 4, "aarch64"), ("alps-gh200", "gh200-96gb", 4, "aarch64"),
    ("marenostrum5-acc", "h100-64gb", 4, "x86_64"), ("leonardo-booster", "a100-sxm4-64gb", 4, "x86_64"),
    ("lumi-g", "mi250x", 8, "x86_64"), ("meluxina-gpu", "a100-sxm4-40gb", 4, "x86_64"),
    ("karolina-gpu", "a100-sxm4-40gb", 8, "x86_64"), ("vega-gpu", "a100-sxm4-40gb", 4, "x86_64"),
]


def test_every_required_profile_is_shipped():
    assert REQUIRED <= set(list_systems())


@pytest.mark.parametrize("name,sku,gpus,arch", EXPECTED)
def test_factory_profiles_match_hardware(name, sku, gpus, arch):
    s = load_system(name)
    assert (s.node.gpu_sku, s.node.gpus, s.node.arch, s.node.device) == (sku, gpus, arch, "cuda")
    assert s.node.gpu_sku in catalog.load().ids()
    assert s.scheduler == "slurm" and s.slurm.default_tasks_per_node == gpus  # one task per GPU
    assert s.sources and all(u.startswith("https://") for u in s.sources)
    assert s.unconfirmed, f"{name}: say what could not be confirmed"
    assert s.queue().name == s.slurm.default_queue


def test_profiles_hold_no_private_values():
    for name in list_systems():
        text = (SYSTEMS_DIR / f"{name}.toml").read_text()
        raw = tomllib.loads(text)
        assert "account" not in raw.get("slurm", {}) and "reservation" not in raw.get("slurm", {})


def test_unknown_system_and_partition_list_the_known_ones():
    with pytest.raises(ConfigError, match="unknown system 'nosuch'.*jupiter-booster.*lumi-g"):
        load_system("nosuch")
    with pytest.raises(ConfigError, match="allowed: dev-g, small-g, standard-g"):
        load_system("lumi-g").queue("gpu")


def test_marenostrum_routes_by_qos_without_partition():
    q = load_system("marenostrum5-acc").queue("acc_debug")
    assert (q.partition, q.qos) == ("", "acc_debug")


def _minimal(**changes):
    raw = tomllib.loads((SYSTEMS_DIR / "local-slurm.toml").read_text())
    for dotted, value in changes.items():
        table = raw
        *path, last = dotted.split(".")
        for key in path:
            table = table.setdefault(key, {})
        table[last] = value
    return raw


@pytest.mark.parametrize("changes,message", [
    ({"node.gpu_sku": "h100"}, "node.gpu_sku: 'h100' is not a hardware catalog id; allowed: .*h100-sxm5-80gb"),
    ({"slurm.partitions.debug.partition": "debug; rm -rf /"}, "refused: only letters"),
    ({"slurm.partitions.debug.qos": "$(id)"}, "refused: only letters"),
    ({"slurm.constraint": "a100`x`"}, "refused"),
    ({"slurm.srun_args": ["--mpi=pmix && evil"]}, "refused"),
    ({"environment.vars": {"BAD-NAME": "1"}}, "not a valid identifier"),
    ({"environment.setup": ["module load x\nrm -rf /"]}, "one line"),
    ({"slurm.gpu_request": "magic"}, "slurm.gpu_request: 'magic' not allowed; allowed: gpus_per_node, gres, none"),
    ({"slurm.default_partition": "nosuch"}, "unknown default_partition.*debug"),
    ({"scheduler": "pbs"}, "scheduler: 'pbs' not allowed; allowed: slurm, local"),
    ({"slurm.account": "proj123"}, "unknown key in .*slurm"),
    ({"node.device": "tpu"}, "node.device: 'tpu' not allowed; allowed: cuda, cpu, auto"),
    ({"slurm.time_min": "30; reboot"}, "test.toml: slurm.time_min must be an integer >= 0"),
    ({"slurm.partitions.debug.max_nodes": 2.5}, "max_nodes must be an integer >= 0"),
    ({"node.gpus": -1}, "node.gpus: -1 is below the minimum 0"),
    ({"site": ""}, "site must not be empty"),
    ({"slurm.exclusive": "yes"}, "exclusive must be true or false"),
    ({"node.memory_gb": "lots"}, "memory_gb must be a number"),
    ({"python": 'python3 "unclosed'}, "No closing quotation"),
])
def test_bad_profiles_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        parse_system(_minimal(**changes), "test.toml")


def test_env_values_with_shell_characters_are_kept_for_quoting():
    s = parse_system(_minimal(**{"environment.vars": {"NCCL_NET": "AWS Libfabric; $(x)"}}), "t.toml")
    assert ("NCCL_NET", "AWS Libfabric; $(x)") in s.env  # quoted when written (test_slurm_jobspec)


def test_python_command_from_a_profile_is_requoted_word_by_word(tmp_path):
    import subprocess

    marker = tmp_path / "pwned"
    s = parse_system(_minimal(python=f"echo run; touch {marker}"), "t.toml")
    assert s.python == f"echo 'run;' touch {marker}"  # the ';' is now a literal argument
    out = subprocess.run(["bash", "-c", s.python], check=True, capture_output=True, text=True).stdout
    assert out == f"run; touch {marker}\n" and not marker.exists()
    container = parse_system(_minimal(python="singularity exec --nv /img/pt.sif python3"), "t.toml")
    assert container.python == "singularity exec --nv /img/pt.sif python3"


def test_profile_file_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((SYSTEMS_DIR / "vega-gpu.toml").read_text().replace('name = "vega-gpu"', 'name = "mine"'))
    assert load_system(str(path)).name == "mine"
    with pytest.raises(ConfigError, match="not found"):
        load_system(str(tmp_path / "absent.toml"))


def test_a_scheduler_without_the_table_its_backend_reads_is_refused():
    raw = _minimal()
    del raw["slurm"]
    with pytest.raises(ConfigError, match=r"test.toml: scheduler 'slurm' needs a \[slurm\] table"):
        parse_system(raw, "test.toml")
    assert parse_system({**raw, "scheduler": "local"}, "test.toml").slurm is None
