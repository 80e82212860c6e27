"""Every `aifbench ...` command example of the README and of the docs pages it links to for the
manual (PAGES), run as a newcomer would type it (placeholders filled in, `--dry-run` where it would
submit to a scheduler), in a fresh directory holding one smoke run: each ends with exit 0 (or 1
where the command's verdict says so) and no traceback."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "tests" / "data" / "telemetry" / "h100_node_4gpu.jsonl"
# The pages whose bash blocks are run here: the README and the manual's pages. Not here: importing.md
# (its examples read the reader's own tool logs), operators-usage.md (Slurm accounting of a real
# partition; tests/unit/usage/test_usage.py and tests/e2e/test_usage_slurm.py run its commands on captured output), scale.md (its commands
# build stores of thousands of ranks; tests/e2e/test_bench_slurm_array.py and the scale tests cover them).
PAGES = ["README.md"] + [f"docs/{name}.md" for name in (
    "install", "cli", "methodology", "benchmarks", "telemetry", "slurm", "operators", "results-schema",
    "architecture", "development")]
SLOW = 20.0  # timing.repeats of the README's --set example, cut for the test
NOT_HERE = {  # example -> (why it cannot end with 0 in a test, the exit codes it may end with)
    "aifbench run llm-training --set llm_train.model=/models/my-llama/config.json": (
        "the example's config.json is the reader's own file", {2}),
    # asks Slurm: a machine without Slurm (2) or whose controller does not answer (1) says so in one line
    "aifbench cluster": ("asks Slurm: a machine without a controller says so in one line", {0, 1, 2}),
    "aifbench cancel RUN_ID": ("the test's runs ran here, none was submitted to a scheduler", {2}),
    "aifbench jobs RUN_ID": ("the test's runs ran here, none was submitted to a scheduler", {2}),
    "aifbench collect RUN_ID": ("the test's runs ran here, none was submitted to a scheduler", {2}),
}


def page_commands(page: str) -> list[str]:
    """The `aifbench` commands of one page's bash blocks, comments dropped, one per line."""
    text = (REPO / page).read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("aifbench ") or line.startswith("run=$(aifbench") or \
                    line.startswith("AIFBENCH_TELEMETRY_REPLAY="):
                out.append(line)
    return list(dict.fromkeys(out))


def readme_commands() -> list[str]:
    """The commands of every page in PAGES, each once, in page order."""
    return list(dict.fromkeys(line for page in PAGES for line in page_commands(page)))


def as_run(line: str, run_id: str, later_id: str) -> tuple[list[str], dict[str, str]]:
    """(argv after `aifbench`, extra environment) of one README line."""
    env: dict[str, str] = {}
    line = line.removeprefix("run=$(").split(" | ")[0].rstrip(")")
    if line.startswith("AIFBENCH_TELEMETRY_REPLAY="):
        env["AIFBENCH_TELEMETRY_REPLAY"] = str(TRACE)
        line = line.split(" ", 1)[1]
    line = line.split(" && ")[0]
    line = re.sub(r"\[(RUN_ID|-o plot\.png)\]", r"\1", line)
    line = re.sub(r"(?<!\w)LATER_RUN(?!\w)", later_id, line)
    for word in ("RUN_ID", '"$run"', "RUN"):
        line = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", run_id, line)
    argv = shlex.split(line)[1:]
    if argv[0] == "submit" and "--dry-run" not in argv:
        argv.append("--dry-run")  # never submit from a test
    if argv[:2] == ["submit", "jobs/my-job.toml"]:
        argv[1] = "jobs/local-slurm-smoke.toml"  # the README's placeholder for the reader's own job file
    if argv[0] == "run" and argv[1] != "smoke":
        argv.append("--dry-run") if "--nproc" not in argv and "--set" not in argv else None
    if argv[:2] == ["baseline", "save"]:
        argv.append("--force")  # the --baseline example before it saved it already
    if argv[0] == "run" and "timing.repeats=20" in argv:
        argv[argv.index("timing.repeats=20")] = "timing.repeats=2"
    return argv, env


def aifbench(cwd: Path, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `aifbench ARGV` in-process, in `cwd` with `env` added."""
    import contextlib
    import io
    import logging

    from aifbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = {k: os.environ.get(k) for k in (env or {})}
    here = Path.cwd()
    handler = logging.StreamHandler(err)
    logging.getLogger().addHandler(handler)
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(here)
        logging.getLogger().removeHandler(handler)
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> tuple[Path, str, str]:
    """A directory laid out like a clone (benchmarks/, jobs/, results/reference/) with a smoke run and a
    later GEMM-only run: (directory, run id, later run id)."""
    cwd = tmp_path_factory.mktemp("readme")
    for part in ("benchmarks", "jobs"):
        shutil.copytree(REPO / part, cwd / part)
    shutil.copytree(REPO / "results" / "reference", cwd / "results" / "reference")
    ids = []
    for extra in ([], ["--only", "gemm"]):
        code, out, err = aifbench(cwd, ["run", "smoke", *extra, "--format", "json"])
        assert code == 0, err
        ids.append(re.search(r'"run_id": "([^"]+)"', out).group(1))
    return cwd, ids[0], ids[1]


COMMANDS = readme_commands()


def test_the_readme_has_examples():
    assert len(COMMANDS) > 40 and "aifbench submit acceptance --system jupiter-booster --nodes 6000" in COMMANDS
    readme = page_commands("README.md")
    assert len(readme) >= 15 and {"aifbench run smoke", "aifbench show", "aifbench report -o report.html"} <= set(readme)
    for page in PAGES:  # every page is there, and the manual's pages with bash blocks have their commands read
        assert (REPO / page).is_file(), page
    for page in ("docs/cli.md", "docs/benchmarks.md", "docs/telemetry.md", "docs/slurm.md", "docs/operators.md"):
        assert len(page_commands(page)) >= 3, page
    assert set(NOT_HERE) <= set(COMMANDS), set(NOT_HERE) - set(COMMANDS)  # no stale exception


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_example_runs(clone, line):
    cwd, run_id, later_id = clone
    argv, env = as_run(line, run_id, later_id)
    if "--baseline" in argv and "booster-2026" in argv and "validate" not in argv:  # the README saves it first
        aifbench(cwd, ["baseline", "save", run_id, "--name", "booster-2026", "--force"])
    code, out, err = aifbench(cwd, argv, env)  # an exception escaping main fails the test with its traceback
    why = NOT_HERE.get(line)
    if why:
        assert code in why[1] and (code == 0 or len(err.strip().splitlines()) == 1), (why[0], out[-1500:], err)
        return
    assert code in ((0, 1) if argv[0] == "validate" else (0,)), (argv, out[-3000:], err[-3000:])


def test_python_examples_run(clone):
    """Each ```python block of the pages runs as written in the clone (e.g. loading its results)."""
    cwd = clone[0]
    blocks = [b for page in PAGES for b in re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), re.S)]
    assert blocks, "the pages' Python examples"
    here = Path.cwd()
    scopes: list[dict] = []
    try:
        os.chdir(cwd)
        for block in blocks:
            scopes.append({})
            exec(compile(block, "<docs example>", "exec"), scopes[-1])  # an exception fails the test
    finally:
        os.chdir(here)
    loaded = [scope["res"] for scope in scopes if "res" in scope]  # results/read's load example
    assert loaded and all(len(res.metrics) > 0 and len(res.runs) >= 2 for res in loaded)
