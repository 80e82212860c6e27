"""typed_toml: one mechanism builds a frozen dataclass from a TOML table, and every bad key or
value is one ConfigError line (exit 2) naming the file, the table path, the key and what is
allowed. System profiles, job files, the hardware catalog, references and benchmark configs
(config.build_config) all read through it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import pytest

from aifbench.errors import ConfigError
from aifbench.typed_toml import build, field_names, spec


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    max_nodes: int | None = spec(None, min=0)
    note: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    name: str
    nodes: int = spec(1, min=1, max=64)
    rate_hz: float = 10.0
    exclusive: bool = False
    mode: str = spec("single", choices=("single", "array", "packed"))
    level: Literal["low", "high"] = "low"
    tags: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    stages: tuple[Limits, ...] = ()
    env: Mapping[str, Any] = spec(default_factory=dict, keys=("A", "B"))
    upper: str = spec("", check=lambda loc, v: v.upper())


def _raw(text: str) -> dict:
    return tomllib.loads(text)


def test_a_good_table_becomes_the_dataclass_with_converted_values():
    job = build(Job, _raw('name = "x"\nnodes = 4\nrate_hz = 5\ntags = ["a", "b"]\nupper = "q"\n'
                          '[limits]\nmax_nodes = 2\n[[stages]]\nnote = "s1"\n[[stages]]\n[env]\nA = 1\n'), "j.toml")
    assert job == Job(name="x", nodes=4, rate_hz=5.0, tags=("a", "b"), upper="Q", limits=Limits(max_nodes=2),
                      stages=(Limits(note="s1"), Limits()), env={"A": 1})
    assert isinstance(job.rate_hz, float)  # an integer where a number is declared becomes a float
    assert build(Job, {"name": "y"}, "j.toml") == Job(name="y")  # defaults fill what is absent


@pytest.mark.parametrize("text, message", [
    ('name = "x"\ncolour = 1\n', "unknown key in j.toml 'colour'; allowed: env, exclusive, level, limits, mode, name, "
                                 "nodes, rate_hz, stages, tags, upper"),
    ('nodes = 2\n', "j.toml: name is required"),
    ('name = 3\n', "j.toml: name must be text, got 3"),
    ('name = "x"\nnodes = "2"\n', "j.toml: nodes must be an integer in [1, 64], got '2'"),
    ('name = "x"\nnodes = true\n', "j.toml: nodes must be an integer in [1, 64], got True"),
    ('name = "x"\nnodes = 0\n', "j.toml: nodes: 0 is below the minimum 1"),
    ('name = "x"\nnodes = 65\n', "j.toml: nodes: 65 is above the maximum 64"),
    ('name = "x"\nrate_hz = "fast"\n', "j.toml: rate_hz must be a number, got 'fast'"),
    ('name = "x"\nexclusive = "yes"\n', "j.toml: exclusive must be true or false, got 'yes'"),
    ('name = "x"\nmode = "batch"\n', "j.toml: mode: 'batch' not allowed; allowed: single, array, packed"),
    ('name = "x"\nlevel = "mid"\n', "j.toml: level: 'mid' not allowed; allowed: low, high"),
    ('name = "x"\ntags = "a"\n', "j.toml: tags must be a list of text, got 'a'"),
    ('name = "x"\ntags = ["a", 2]\n', "j.toml: tags[1] must be text, got 2"),
    ('name = "x"\nlimits = 3\n', "j.toml: limits must be a table, got 3"),
    ('name = "x"\n[limits]\nmax_nodes = -1\n', "j.toml: limits.max_nodes: -1 is below the minimum 0"),
    ('name = "x"\n[limits]\nnodes = 1\n', "unknown key in [limits] of j.toml 'nodes'; allowed: max_nodes, note"),
    ('name = "x"\n[[stages]]\n[[stages]]\nnote = 1\n', "j.toml: stages #2.note must be text, got 1"),
    ('name = "x"\nstages = 1\n', "j.toml: stages must be an array of tables, got 1"),
    ('name = "x"\n[env]\nC = 1\n', "unknown key in [env] of j.toml 'C'; allowed: A, B"),
])
def test_each_bad_table_is_one_line_naming_file_key_and_what_is_allowed(text, message):
    with pytest.raises(ConfigError) as err:
        build(Job, _raw(text), "j.toml")
    assert str(err.value) == message and "\n" not in message and err.value.exit_code == 2


def test_a_table_at_a_path_and_given_and_skipped_keys():
    with pytest.raises(ConfigError, match=r"^unknown key in \[slurm.limits\] of p.toml 'x'; allowed: max_nodes, note$"):
        build(Limits, {"x": 1}, "p.toml", "slurm.limits")
    # `given` fields are the caller's (never read from the file); `skip` keys are read by the caller
    built = build(Job, {"nodes": 2, "extra": [1]}, "j.toml", given={"name": "from caller"}, skip=("extra",))
    assert (built.name, built.nodes) == ("from caller", 2)
    with pytest.raises(ConfigError, match="unknown key in j.toml 'name'; allowed: .*extra"):
        build(Job, {"name": "n"}, "j.toml", given={"name": "from caller"}, skip=("extra",))
    assert "name" in field_names(Job) and "extra" not in field_names(Job)


def test_benchmark_configs_profiles_and_job_files_share_the_messages(tmp_path):
    """config.build_config, a system profile and a job file: the same wording for the same mistake."""
    from aifbench.benchmarks.configs import GemmConfig
    from aifbench.config import build_config
    from aifbench.launch import jobspec
    from aifbench.systems import SYSTEMS_DIR, parse_system

    with pytest.raises(ConfigError, match=r"^gemm.m must be an integer >= 1, got 'big'$"):
        build_config(GemmConfig, {"m": "big"}, "gemm")
    with pytest.raises(ConfigError, match=r"^unknown parameter for gemm 'size'; allowed: .*dtype"):
        build_config(GemmConfig, {"size": 3}, "gemm")
    profile = tomllib.loads((SYSTEMS_DIR / "local-slurm.toml").read_text())
    profile["node"]["gpus"] = "four"
    with pytest.raises(ConfigError, match=r"^p.toml: node.gpus must be an integer >= 0, got 'four'$"):
        parse_system(profile, "p.toml")
    job = tmp_path / "j.toml"
    job.write_text('[job]\nsuite = "smoke"\nsystem = "local"\nexclusive = "yes"\n')
    with pytest.raises(ConfigError, match=r"^j.toml: job.exclusive must be true or false, got 'yes'$"):
        jobspec.load_job_file(job)


def test_a_bad_catalog_file_is_exit_2_and_one_line(tmp_path, monkeypatch, capsys):
    from aifbench.cli import main
    from aifbench.hardware import catalog

    site = tmp_path / "site.toml"
    site.write_text('[sources]\ns = "a source"\n[[device]]\nid = "x"\nmemory_gb = "lots"\n')
    monkeypatch.setenv(catalog.ENV_VAR, str(site))
    assert main(["hardware"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{site}: device #1.memory_gb must be a number, got 'lots'" in err

