"""Suites: loading, sweeps, overrides, and every bad-input path (one clear ConfigError)."""

import pytest

from aifbench.config import load_suite, parse_value
from aifbench.errors import ConfigError
from tests.conftest import write

SUITE = """
[suite]
name = "t"
[timing]
repeats = 3
[[case]]
benchmark = "gemm"
params = { m = 16, n = 16, k = 16 }
sweep = { dtype = ["fp32", "bf16"] }
[[case]]
benchmark = "membw"
params = { size_bytes = 65536 }
"""


@pytest.fixture
def suite_file(tmp_path):
    return write(tmp_path / "t.toml", SUITE)


def test_sweep_expands_to_cases_with_defaults_filled(suite_file):
    s = load_suite(str(suite_file))
    assert [c.benchmark for c in s.cases] == ["gemm", "gemm", "membw"]
    assert [c.params["dtype"] for c in s.cases[:2]] == ["fp32", "bf16"]
    assert s.cases[0].params["check_size"] == 64  # default filled in
    assert s.timing.repeats == 3 and s.timing.warmup == 3


def test_case_ids_are_stable_and_distinct(suite_file):
    a, b = load_suite(str(suite_file)), load_suite(str(suite_file))
    assert [c.case_id for c in a.cases] == [c.case_id for c in b.cases]
    assert len({c.case_id for c in a.cases}) == 3
    assert a.config_hash == b.config_hash


def test_overrides_change_params_sweeps_and_timing(suite_file):
    s = load_suite(str(suite_file), ["gemm.m=32", 'gemm.dtype=["fp16"]', "timing.repeats=7"])
    gemms = [c for c in s.cases if c.benchmark == "gemm"]
    assert len(gemms) == 1 and gemms[0].params["m"] == 32 and gemms[0].params["dtype"] == "fp16"
    assert s.timing.repeats == 7
    assert s.config_hash != load_suite(str(suite_file)).config_hash


def test_only_filters_benchmarks(suite_file):
    assert {c.benchmark for c in load_suite(str(suite_file), only=["membw"]).cases} == {"membw"}


def test_parse_value_reads_toml_literals_or_strings():
    assert parse_value("3") == 3 and parse_value("2.5") == 2.5 and parse_value("true") is True
    assert parse_value('[1, 2]') == [1, 2] and parse_value("bf16") == "bf16"


@pytest.mark.parametrize("overrides, message", [
    (["gemm.m=abc"], "gemm.m must be an integer >= 1, got 'abc'"),
    (["gemm.m=0"], "below the minimum 1"),
    (["gemm.dtype=int8"], "allowed: fp64, fp32, tf32, bf16, fp16, fp8"),
    (["gemm.mm=3"], "unknown parameter of gemm 'mm'; allowed: ab_round_s, ab_rounds, bare_loop, buffers, burst, burst_idle_s"),
    (["nosuch.m=3"], "unknown benchmark in --set 'nosuch'"),
    (["timing.repeat=3"], "unknown timing field 'repeat'; allowed: inner, repeats, warmup"),
    (["timing.repeats=0"], "--set timing.repeats=0: repeats must be >= 1"),
    (["m=3"], "expected KEY=VALUE"),
])
def test_bad_overrides_name_what_is_allowed(suite_file, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_suite(str(suite_file), overrides)


def test_unknown_suite_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"unknown suite 'nosuch'; allowed: .*smoke"):
        load_suite("nosuch")


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "broken.toml", '[suite]\nname = "x"\n[[case]]\nbenchmark = gemm\n')
    with pytest.raises(ConfigError, match=r"broken.toml: TOML syntax error: .*line 4"):
        load_suite(str(path))


@pytest.mark.parametrize("text, message", [
    ('[[case]]\nbenchmark = "nosuch"\n', "unknown benchmark 'nosuch'; allowed: .*gemm"),
    ('[[case]]\nbenchmark = "gemm"\nparams = { size = 3 }\n', "unknown parameter for gemm 'size'"),
    ('[[case]]\nbenchmark = "gemm"\nsweep = { m = 3 }\n', "bad.toml: case #1.sweep.m must be a non-empty list"),
    ('[[case]]\nparams = {}\n', "bad.toml: case #1.benchmark is required"),
    ('[suite]\nname = "x"\n', "needs at least one"),
    ('[sweet]\n[[case]]\nbenchmark = "gemm"\n', "unknown key in bad.toml 'sweet'; allowed: case, suite, timing"),
    ('[suite]\nbogus = 1\n[[case]]\nbenchmark = "gemm"\n', "unknown key in \\[suite\\].*allowed: description, name"),
])
def test_bad_suite_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(str(write(tmp_path / "bad.toml", text)))


def test_a_binary_suite_file_is_one_clear_error(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ConfigError, match=r"binary.toml: not a TOML file \(not UTF-8"):
        load_suite(str(path))
