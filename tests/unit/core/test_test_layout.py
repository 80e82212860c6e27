"""The tests' layout (tests/README.md): every test file in unit/<package>/, e2e/ or pinned/,
every unit/<package> named after a package of src/aifbench (core: the top-level modules)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[2]
SRC = TESTS.parent / "src" / "aifbench"


def test_no_test_file_outside_the_three_areas():
    stray = [p.relative_to(TESTS).as_posix() for p in TESTS.rglob("test_*.py")
             if p.relative_to(TESTS).parts[0] not in ("unit", "e2e", "pinned") or
             (p.relative_to(TESTS).parts[0] == "unit" and len(p.relative_to(TESTS).parts) != 3)]
    assert not stray, f"test files outside unit/<package>/, e2e/, pinned/: {stray}"


def test_every_unit_folder_is_a_package_of_the_source():
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()} | {"core"}
    folders = {p.name for p in (TESTS / "unit").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders <= packages, f"unit/ folders with no package of that name: {sorted(folders - packages)}"
    assert all((TESTS / "unit" / f / "__init__.py").exists() for f in folders)  # unique module names


def test_pinned_tests_are_the_pinned_ones():
    names = [p.name for p in (TESTS / "pinned").glob("test_*.py")]
    assert names and all(n.startswith("test_pinned_") for n in names)
