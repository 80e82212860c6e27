"""scripts/mutation_check.py refuses a list that no longer fits the source (exit 2, naming the entry)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.conftest import REPO, write

spec = importlib.util.spec_from_file_location("mutation_check", REPO / "scripts" / "mutation_check.py")
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
tests = ["tests/test_pinned_timing.py"]

[[mutation]]
id = "twice"
file = "src/aifbench/timing.py"
original = "return"
replacement = "x"
tests = ["tests/test_pinned_timing.py"]

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
