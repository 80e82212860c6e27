#!/usr/bin/env python3
"""Mutation check: every curated wrong formula or verdict rule must make its tests fail.

Each entry of scripts/mutations.toml names a file, an original text that occurs there exactly
once, its replacement (one line, one wrong idea: triad moving 2 arrays, MFU from global
tokens, a fast GPU flagged as an outlier, ...) and the narrow test files (or pytest node ids)
that pin it. For each entry the tree (without .git, .venv, results) is copied to a temporary
directory, the replacement applied, and `pytest -x -q -p no:cacheprovider <tests>` run there with
PYTHONPATH pointing at the copy's src. The mutation is CAUGHT when the tests fail; it SURVIVES
when they pass. Two mutations run at once (--workers).

Exit codes: 0 every mutation caught; 1 a mutation survived (each is named); 2 the list does not
fit the source (an original text missing or ambiguous after a refactor: each is named, nothing
is run) or a listed test path matches no test; 3 the tests fail without any mutation.

Why a curated list and not mutmut or cosmic-ray: both generate operator-level mutants (+ to -,
< to <=, constants) of every line of the chosen modules and then need the whole test selection
per mutant: thousands of mutants for this package, hours on 2 cores, and most are equivalent or
irrelevant to a reported number. The wrongs that matter here are domain errors (global instead
of per-device tokens, a left Riemann sum instead of the trapezoid, bidir counted once, drift
"better" failing) that no operator mutation generates. A list of named, reviewable mutations of
exactly the reported formulas runs in minutes and states what the suite must protect.

    python scripts/mutation_check.py                  # every mutation, 2 at a time
    python scripts/mutation_check.py --only energy-left-riemann-sum --workers 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LIST = REPO / "scripts" / "mutations.toml"
# not copied (top level): VCS data, environments, generated files; results/reference/ is copied
TOP_SKIP = {".git", ".venv", "results", ".slurm", ".pytest_cache", "build", "dist", ".whl", ".gl"}
PYTEST = ["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
NO_TESTS = (4, 5)  # pytest: usage error (a node id that does not exist), no tests collected


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    caught: bool
    seconds: float
    note: str
    misfit: bool = False
    """the listed tests do not exist or select nothing: the list is wrong, not the tests"""


def load(path: Path) -> list[Mutation]:
    raw = tomllib.loads(path.read_text())["mutation"]
    out = [Mutation(m["id"], m["file"], m["original"], m["replacement"], tuple(m["tests"])) for m in raw]
    ids = [m.id for m in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SystemExit(f"mutation ids listed twice: {', '.join(dupes)}")
    return out


def misfits(mutations: list[Mutation], root: Path) -> list[str]:
    """Why entries do not fit the source: file absent, original absent or not unique, no change."""
    problems = []
    for m in mutations:
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.id}: {m.file} does not exist")
            continue
        n = path.read_text().count(m.original)
        if n != 1:
            problems.append(f"{m.id}: original text found {n} times in {m.file} (must be exactly once): {m.original!r}")
        elif m.original == m.replacement:
            problems.append(f"{m.id}: replacement equals the original")
        for t in m.tests:
            if not (root / t.split("::")[0]).is_file():
                problems.append(f"{m.id}: test file {t.split('::')[0]} does not exist")
    return problems


def _skip(directory: str, names: list[str]) -> set[str]:
    top = TOP_SKIP if Path(directory) == REPO else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith(".egg-info")}


def copy_tree(dest: Path) -> None:
    """The working tree without VCS data, virtual environment and generated results."""
    shutil.copytree(REPO, dest, ignore=_skip)
    if (REPO / "results" / "reference").is_dir():
        shutil.copytree(REPO / "results" / "reference", dest / "results" / "reference", ignore=_skip)


def pytest(cwd: Path, tests: tuple[str, ...], timeout: float, basetemp: Path) -> tuple[int | None, str]:
    """(exit code or None on timeout, first failure or last line of output) of pytest on `tests`
    in tree `cwd`; `basetemp` keeps parallel runs' tmp_path directories apart."""
    env = dict(os.environ, PYTHONPATH=str(cwd / "src"), PYTHONDONTWRITEBYTECODE="1")
    try:
        p = subprocess.run([sys.executable, *PYTEST, f"--basetemp={basetemp}", *tests], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s"
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    return p.returncode, (failed or lines[-1:] or [""])[0][:200]


def run_one(m: Mutation, timeout: float) -> Outcome:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mut-{m.id}-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        path = tree / m.file
        path.write_text(path.read_text().replace(m.original, m.replacement, 1))
        code, last = pytest(tree, m.tests, timeout, Path(tmp) / "basetemp")
    secs = time.monotonic() - t0
    if code is None:
        return Outcome(m, True, secs, last)  # a mutation that hangs the tests is caught (by the CI timeout)
    if code in NO_TESTS:
        return Outcome(m, False, secs, f"pytest exit {code}: the listed tests do not exist or select nothing", True)
    return Outcome(m, code != 0, secs, last)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", type=Path, default=DEFAULT_LIST, help="mutation list (TOML)")
    ap.add_argument("--workers", type=int, default=2, help="mutations run at once (default 2)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutation's test run (default 300)")
    ap.add_argument("--only", nargs="+", metavar="ID", help="run only these mutation ids")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip running the listed tests once without mutation (CI: the suite just passed)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    mutations = load(args.list)
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in mutations})
        if unknown:
            print(f"unknown mutation ids: {', '.join(unknown)}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.id in args.only]
    problems = misfits(mutations, REPO)
    if problems:
        print("mutation list does not fit the source (update scripts/mutations.toml):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    if not args.no_baseline:
        targets = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
        with tempfile.TemporaryDirectory(prefix="mut-baseline-") as tmp:
            code, last = pytest(REPO, targets, args.timeout * 2, Path(tmp) / "basetemp")
        if code != 0:
            print(f"the listed tests fail WITHOUT any mutation (exit {code}): {last}", file=sys.stderr)
            return 2 if code in NO_TESTS else 3
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        outcomes = []
        for o in pool.map(lambda m: run_one(m, args.timeout), mutations):
            outcomes.append(o)
            word = "caught  " if o.caught else "LISTERR " if o.misfit else "SURVIVED"
            print(f"{word} {o.mutation.id:45s} {o.seconds:6.1f} s  {o.note}", flush=True)
    misfit = [o for o in outcomes if o.misfit]
    survivors = [o for o in outcomes if not o.caught and not o.misfit]
    total = time.monotonic() - t0
    print(f"{sum(o.caught for o in outcomes)} of {len(outcomes)} mutations caught in {total:.0f} s "
          f"({args.workers} workers)")
    if survivors:
        print("SURVIVING mutations (the tests pass with a wrong formula):", file=sys.stderr)
        for o in survivors:
            m = o.mutation
            print(f"  {m.id}: {m.file}: {m.original!r} -> {m.replacement!r}; tests {' '.join(m.tests)}"
                  f" ({o.note})", file=sys.stderr)
        return 1
    if misfit:
        print("listed tests that do not exist (update scripts/mutations.toml): "
              + "; ".join(f"{o.mutation.id}: {' '.join(o.mutation.tests)}" for o in misfit), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
