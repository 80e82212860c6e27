#!/usr/bin/env python3
"""Mutation check: every curated wrong formula or verdict rule must make its tests fail.

Each entry of scripts/ci/mutations.toml names a file, an original text that occurs there exactly
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

Beside the list, a seeded random sample of operator mutants (comparison flips, off-by-one
constants, min/max and mean/median swaps, dropped conditions, + and - swapped; generated with
Python's ast module) of the modules named in the list's [[random]] tables runs too: --random N
(default 40, about 3 min on 2 cores), --seed S. Each is named by file, function and change, not
by line; a sample survivor is killed by a test or, when it changes nothing observable, listed
under [[equivalent]] with why (docs/mutation-testing.md).

    python scripts/ci/mutation_check.py                  # every curated mutation + 40 random, 2 at a time
    python scripts/ci/mutation_check.py --only energy-left-riemann-sum --workers 1
    python scripts/ci/mutation_check.py --random-only --random 80 --seed 7      # another sample
    python scripts/ci/mutation_check.py --random-only --random-file src/aifbench/ab.py --show-random
"""

from __future__ import annotations

import argparse
import ast
import hashlib
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

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LIST = REPO / "scripts" / "ci" / "mutations.toml"
# not copied (top level): VCS data, environments, generated files; results/reference/ is copied
TOP_SKIP = {".git", ".venv", "results", ".slurm", ".pytest_cache", "build", "dist", ".whl", ".gl"}
PYTEST = ["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
NO_TESTS = (4, 5)
DEFAULT_RANDOM = 40  # random operator mutants per run: ~3 min on 2 cores
DEFAULT_SEED = 24  # pytest: usage error (a node id that does not exist), no tests collected


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]

    def source(self, text: str) -> str:
        return text.replace(self.original, self.replacement, 1)

    def text(self) -> str:
        return f"{self.id}: {self.file}: {self.original!r} -> {self.replacement!r}; tests {' '.join(self.tests)}"


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation | Operator
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


def load_random(path: Path) -> tuple[list[RandomTarget], dict[str, str]]:
    """([[random]] targets, [[equivalent]] mutant name -> why it changes nothing observable)."""
    raw = tomllib.loads(path.read_text())
    targets = [RandomTarget(r["file"], tuple(r["tests"]), tuple(r.get("skip", ()))) for r in raw.get("random", [])]
    return targets, {e["mutant"]: e["why"] for e in raw.get("equivalent", [])}


def random_misfits(targets: list[RandomTarget], equivalent: dict[str, str], root: Path) -> list[str]:
    """Targets or tests that do not exist; equivalent entries that name no mutant of the source."""
    problems = [f"random target {t.file} does not exist" for t in targets if not (root / t.file).is_file()]
    problems += [f"random target {t.file}: test file {x.split('::')[0]} does not exist"
                 for t in targets for x in t.tests if not (root / x.split("::")[0]).is_file()]
    if problems:
        return problems
    names = {o.name for o in operators(targets, root)}
    return problems + [f"equivalent mutant no longer generated (update the list): {e}" for e in equivalent if e not in names]


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


def run_one(m: Mutation | Operator, timeout: float) -> Outcome:
    t0 = time.monotonic()
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in m.id)[:60]
    with tempfile.TemporaryDirectory(prefix=f"mut-{safe}-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        path = tree / m.file
        path.write_text(m.source(path.read_text()))
        code, last = pytest(tree, m.tests, timeout, Path(tmp) / "basetemp")
    secs = time.monotonic() - t0
    if code is None:
        return Outcome(m, True, secs, last)  # a mutation that hangs the tests is caught (by the CI timeout)
    if code in NO_TESTS:
        return Outcome(m, False, secs, f"pytest exit {code}: the listed tests do not exist or select nothing", True)
    return Outcome(m, code != 0, secs, last)


# --- random operator mutations ----------------------------------------------------------------
# Beside the curated list, a seeded sample of operator mutants of the modules in the list's
# [[random]] tables: comparison flips, off-by-one constants, min/max and mean/median swaps,
# dropped conditions (an `and`/`or` operand, a `not`, an `if` test), + and - swapped. Generated
# with Python's ast module; each mutant is the module unparsed with one node changed. A mutant
# is named '<file>::<function>: <original> -> <replacement>' (no line number: a name survives
# edits elsewhere), and the sample is the `n` names with the lowest sha256(seed, name): adding or
# removing code moves only the mutants it touches in or out of the sample.

_CMP_SWAPS = {ast.Lt: (ast.LtE, ast.GtE), ast.LtE: (ast.Lt, ast.Gt), ast.Gt: (ast.GtE, ast.LtE),
              ast.GtE: (ast.Gt, ast.Lt), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.In: (ast.NotIn,),
              ast.NotIn: (ast.In,), ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,)}
_NAME_SWAPS = {"min": "max", "max": "min", "mean": "median", "fmean": "median", "median": "mean",
               "nanmin": "nanmax", "nanmax": "nanmin", "idxmin": "idxmax", "idxmax": "idxmin"}
_BIN_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add}


@dataclass(frozen=True)
class RandomTarget:
    file: str
    tests: tuple[str, ...]
    skip: tuple[str, ...] = ()
    """functions not mutated (text formatting: no verdict or figure in them)"""


@dataclass(frozen=True)
class Operator:
    name: str
    file: str
    site: int
    """the site's index in the module's mutants (in _Sites order)"""
    line: int
    tests: tuple[str, ...]
    skip: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.name

    def source(self, text: str) -> str:
        return _Sites(text, self.site, self.skip).mutated

    def text(self) -> str:
        return f"{self.name} (line {self.line}); tests {' '.join(self.tests)}"


class _Sites(ast.NodeTransformer):
    """Every operator mutant of a module's source (target None), or the source with mutant
    number `target` applied (.mutated)."""

    def __init__(self, text: str, target: int | None = None, skip: tuple[str, ...] = ()):
        self.text, self.target, self.skip = text, target, set(skip)
        self.found: list[tuple[str, int]] = []  # (name without file, line)
        self.where: list[str] = []
        self.mutated = ""
        tree = ast.parse(text)
        self._docstrings = {id(b[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                            and (b := n.body) and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant)}
        tree = self.visit(tree)
        if target is not None:
            self.mutated = ast.unparse(ast.fix_missing_locations(tree)) + "\n"

    def _def(self, node):
        if node.name in self.skip:
            return node
        self.where.append(node.name)
        node = self.generic_visit(node)
        self.where.pop()
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _def

    def visit_AnnAssign(self, node):  # annotations are not code
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_arguments(self, node):  # nor are defaults' annotations; defaults are
        node.defaults = [self.visit(d) for d in node.defaults]
        node.kw_defaults = [d if d is None else self.visit(d) for d in node.kw_defaults]
        return node

    def visit_JoinedStr(self, node):  # f-strings: text
        return node

    def generic_visit(self, node):
        node = super().generic_visit(node)
        for new in self._variants(node):
            k = len(self.found)
            self.found.append((self._name(node, new), getattr(node, "lineno", 0)))
            if k == self.target:
                return new
        return node

    def _name(self, node, new) -> str:
        """'<function>: <original> -> <replacement>'; a constant or a name with its line's text,
        an `if` by its test."""
        def flat(text: str) -> str:
            return " ".join(text.split())

        where = ".".join(self.where) or "<module>"
        if isinstance(node, ast.If):
            return f"{where}: if {flat(ast.unparse(node.test))}: -> if False:"
        text = f"{where}: {flat(ast.unparse(node))} -> {flat(ast.unparse(new))}"
        if isinstance(node, (ast.Constant, ast.Name, ast.Attribute)):
            line = self.text.splitlines()[node.lineno - 1].strip()
            text += f" in `{line[:100]}`"
        return text

    def _variants(self, node) -> list[ast.AST]:
        out = []
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for alt in _CMP_SWAPS.get(type(op), ()):
                    out.append(ast.Compare(node.left, node.ops[:i] + [alt()] + node.ops[i + 1:], node.comparators))
        elif isinstance(node, ast.Constant) and id(node) not in self._docstrings:
            v = node.value
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out += [ast.Constant(v + 1), ast.Constant(v - 1)]
            elif isinstance(v, str) and v in _NAME_SWAPS:  # pandas aggregations by name
                out.append(ast.Constant(_NAME_SWAPS[v]))
        elif isinstance(node, ast.Name) and node.id in _NAME_SWAPS and isinstance(node.ctx, ast.Load):
            out.append(ast.Name(_NAME_SWAPS[node.id], ast.Load()))
        elif isinstance(node, ast.Attribute) and node.attr in _NAME_SWAPS and isinstance(node.ctx, ast.Load):
            out.append(ast.Attribute(node.value, _NAME_SWAPS[node.attr], ast.Load()))
        elif isinstance(node, ast.BoolOp):
            for i in range(len(node.values)):
                rest = node.values[:i] + node.values[i + 1:]
                out.append(rest[0] if len(rest) == 1 else ast.BoolOp(node.op, rest))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append(node.operand)
        elif isinstance(node, ast.If):
            out.append(ast.If(ast.Constant(False), node.body, node.orelse))
        elif isinstance(node, ast.BinOp) and type(node.op) in _BIN_SWAPS and not any(
                isinstance(x, (ast.JoinedStr, ast.Constant)) and isinstance(getattr(x, "value", ""), str)
                or isinstance(x, ast.JoinedStr) for x in (node.left, node.right)):  # not text + text
            out.append(ast.BinOp(node.left, _BIN_SWAPS[type(node.op)](), node.right))
        for new in out:
            ast.copy_location(new, node)
        return out


def operators(targets: list[RandomTarget], root: Path) -> list[Operator]:
    """Every operator mutant of the targets' modules; names made unique by ' #k'."""
    out = []
    for t in targets:
        sites = _Sites((root / t.file).read_text(), skip=t.skip)
        seen: dict[str, int] = {}
        for k, (name, line) in enumerate(sites.found):
            full = f"{t.file}::{name}"
            seen[full] = seen.get(full, 0) + 1
            out.append(Operator(full if seen[full] == 1 else f"{full} #{seen[full]}", t.file, k, line, t.tests, t.skip))
    return out


def sample(ops: list[Operator], n: int, seed: int, equivalent: set[str]) -> list[Operator]:
    """The `n` mutants not known equivalent with the lowest sha256(seed, name)."""
    key = lambda o: hashlib.sha256(f"{seed}\0{o.name}".encode()).hexdigest()  # noqa: E731
    return sorted((o for o in ops if o.name not in equivalent), key=key)[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", type=Path, default=DEFAULT_LIST, help="mutation list (TOML)")
    ap.add_argument("--workers", type=int, default=2, help="mutations run at once (default 2)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutation's test run (default 300)")
    ap.add_argument("--only", nargs="+", metavar="ID", help="run only these curated mutation ids (no random sample)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip running the listed tests once without mutation (CI: the suite just passed)")
    ap.add_argument("--random", type=int, default=DEFAULT_RANDOM, metavar="N",
                    help=f"also run N seeded operator mutants of the [[random]] modules (default {DEFAULT_RANDOM}; 0: none)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the random sample (default {DEFAULT_SEED})")
    ap.add_argument("--random-only", action="store_true", help="run the random sample, not the curated list")
    ap.add_argument("--random-file", nargs="+", metavar="FILE", help="sample only these modules' mutants")
    ap.add_argument("--show-random", action="store_true", help="print the sample's mutant names and exit")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    mutations = [] if args.random_only else load(args.list)
    targets, equivalent = load_random(args.list)
    if args.random_file:
        targets = [t for t in targets if t.file in args.random_file]
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in mutations})
        if unknown:
            print(f"unknown mutation ids: {', '.join(unknown)}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.id in args.only]
    n_random = 0 if args.only else max(0, args.random)
    problems = misfits(mutations, REPO) + (random_misfits(targets, equivalent, REPO) if n_random else [])
    if problems:
        print("mutation list does not fit the source (update scripts/ci/mutations.toml):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    picked = sample(operators(targets, REPO), n_random, args.seed, set(equivalent)) if n_random else []
    if args.show_random:
        for o in picked:
            print(o.text())
        return 0
    if not args.no_baseline:
        targets_run = tuple(dict.fromkeys(t for m in [*mutations, *picked] for t in m.tests))
        with tempfile.TemporaryDirectory(prefix="mut-baseline-") as tmp:
            code, last = pytest(REPO, targets_run, args.timeout * 2, Path(tmp) / "basetemp")
        if code != 0:
            print(f"the listed tests fail WITHOUT any mutation (exit {code}): {last}", file=sys.stderr)
            return 2 if code in NO_TESTS else 3
    outcomes = []
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for o in pool.map(lambda m: run_one(m, args.timeout), [*mutations, *picked]):
            outcomes.append(o)
            word = "caught  " if o.caught else "LISTERR " if o.misfit else "SURVIVED"
            print(f"{word} {o.mutation.id:45s} {o.seconds:6.1f} s  {o.note}", flush=True)
    misfit = [o for o in outcomes if o.misfit]
    survivors = [o for o in outcomes if not o.caught and not o.misfit]
    total = time.monotonic() - t0
    curated = [o for o in outcomes if isinstance(o.mutation, Mutation)]
    rand = [o for o in outcomes if isinstance(o.mutation, Operator)]
    if curated:
        print(f"{sum(o.caught for o in curated)} of {len(curated)} curated mutations caught")
    if rand:
        print(f"{sum(o.caught for o in rand)} of {len(rand)} random operator mutants caught (seed {args.seed}, "
              f"from {len(operators(targets, REPO))} of {len(targets)} modules, {len(equivalent)} listed equivalent)")
    print(f"{len(outcomes)} mutations in {total:.0f} s ({args.workers} workers)")
    if survivors:
        print("SURVIVING mutations (the tests pass with a wrong formula or verdict; kill it with a test, or list "
              "an operator mutant under [[equivalent]] saying why nothing observable changes):", file=sys.stderr)
        for o in survivors:
            print(f"  {o.mutation.text()} ({o.note})", file=sys.stderr)
        return 1
    if misfit:
        print("listed tests that do not exist (update scripts/ci/mutations.toml): "
              + "; ".join(f"{o.mutation.id}: {' '.join(o.mutation.tests)}" for o in misfit), file=sys.stderr)
        return 2
    return 0

if __name__ == "__main__":
    sys.exit(main())
