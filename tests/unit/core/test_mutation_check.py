"""scripts/ci/mutation_check.py refuses a list that no longer fits the source (exit 2, naming the entry)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from tests.conftest import REPO, write

spec = importlib.util.spec_from_file_location("mutation_check", REPO / "scripts" / "ci" / "mutation_check.py")
mc = importlib.util.module_from_spec(spec)
sys.modules["mutation_check"] = mc  # dataclasses look their module up while the file executes
spec.loader.exec_module(mc)


def test_shipped_list_fits_the_source():
    mutations = mc.load(mc.DEFAULT_LIST)
    assert len(mutations) >= 25 and mc.misfits(mutations, REPO) == []


def test_missing_or_ambiguous_original_is_exit_2_naming_it(tmp_path: Path, capsys):
    lst = write(tmp_path / "m.toml", """
[[mutation]]
id = "gone"
file = "src/aifbench/timing.py"
original = "this text is not in timing.py"
replacement = "x"
tests = ["tests/pinned/test_pinned_timing.py"]

[[mutation]]
id = "twice"
file = "src/aifbench/timing.py"
original = "return"
replacement = "x"
tests = ["tests/pinned/test_pinned_timing.py"]

[[mutation]]
id = "no-such-test"
file = "src/aifbench/timing.py"
original = "mean_s=statistics.fmean(s),"
replacement = "mean_s=0.0,"
tests = ["tests/test_absent.py"]
""")
    assert mc.main(["--list", str(lst), "--no-baseline"]) == 2
    err = capsys.readouterr().err
    assert "gone: original text found 0 times" in err and "twice: original text found" in err
    assert "no-such-test: test file tests/test_absent.py does not exist" in err


def test_shipped_random_targets_and_equivalents_fit_the_source():
    targets, equivalent = mc.load_random(mc.DEFAULT_LIST)
    assert len(targets) >= 9 and mc.random_misfits(targets, equivalent, REPO) == []


def test_operator_mutants_of_each_kind_compile_and_change_one_thing(tmp_path: Path):
    src = write(tmp_path / "m.py", '''
"""doc 1"""
import statistics


def f(xs, lo, flag):
    """doc"""
    if lo < 3 and not flag:
        return max(xs) + 1
    return statistics.median(xs) - min(xs)
''')
    target = mc.RandomTarget(src.name, ("tests/x.py",))
    ops = mc.operators([target], tmp_path)
    names = [o.name.removeprefix("m.py::") for o in ops]
    for expected in ["f: lo < 3 -> lo <= 3", "f: lo < 3 -> lo >= 3",                     # comparison flips
                     "f: 3 -> 4 in `if lo < 3 and not flag:`",                           # off by one
                     "f: max -> min in `return max(xs) + 1`", "f: min -> max in `return statistics.median(xs) - min(xs)`",
                     "f: statistics.median -> statistics.mean in `return statistics.median(xs) - min(xs)`",
                     "f: lo < 3 and (not flag) -> not flag", "f: not flag -> flag",     # dropped conditions
                     "f: if lo < 3 and (not flag): -> if False:", "f: max(xs) + 1 -> max(xs) - 1"]:
        assert expected in names
    assert not any("doc" in n for n in names)  # docstrings are not mutated
    text = src.read_text()
    plain = ast.unparse(ast.parse(text)) + "\n"
    mutated = {o.source(text) for o in ops}
    assert len(mutated) == len(ops) and plain not in mutated  # each one different, none a no-op
    for m in mutated:
        compile(m, "m.py", "exec")
    # the sample: deterministic for a seed, different for another, never an equivalent one
    first = [o.name for o in mc.sample(ops, 5, 24, set())]
    assert first == [o.name for o in mc.sample(ops, 5, 24, set())] != [o.name for o in mc.sample(ops, 5, 25, set())]
    assert first[0] not in [o.name for o in mc.sample(ops, 5, 24, {first[0]})]


def test_an_equivalent_entry_that_names_no_mutant_is_a_misfit(tmp_path: Path):
    targets, _ = mc.load_random(mc.DEFAULT_LIST)
    problems = mc.random_misfits(targets[:1], {"src/aifbench/nothing.py::f: a -> b": "why"}, REPO)
    assert problems == ["equivalent mutant no longer generated (update the list): src/aifbench/nothing.py::f: a -> b"]
