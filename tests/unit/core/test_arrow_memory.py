"""aifbench's processes use jemalloc as Arrow's pool where the build has it; a user's choice wins;
a build without the asked pool keeps its default and prints nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

SRC = str(Path(__file__).resolve().parents[3] / "src")


def _run(code: str, **env: str) -> tuple[dict, str]:
    base = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(base, PYTHONPATH=SRC, **env))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


AFTER_CLI = """
import json, os
from aifbench.cli import main
code = main(["show", "--results", "/nonexistent/aifbench-results"])
import pyarrow
print(json.dumps({"exit": code, "pool": pyarrow.default_memory_pool().backend_name,
                  "env": os.environ.get("ARROW_DEFAULT_MEMORY_POOL")}))
"""


def _has(backend: str) -> bool:
    try:
        getattr(pa, f"{backend}_memory_pool")()
        return True
    except NotImplementedError:
        return False


@pytest.mark.skipif(not _has("jemalloc"), reason="this pyarrow build has no jemalloc pool")
def test_the_cli_reads_with_jemalloc_and_its_children_inherit_it():
    got, _ = _run(AFTER_CLI)
    assert got == {"exit": 2, "pool": "jemalloc", "env": "jemalloc"}


def test_a_pool_the_user_chose_wins():
    got, _ = _run(AFTER_CLI, ARROW_DEFAULT_MEMORY_POOL="system")
    assert got["pool"] == "system" and got["env"] == "system"


def test_a_pool_the_build_lacks_keeps_its_default_silently():
    got, err = _run("""
import json, os
from aifbench import arrow_memory
used = arrow_memory.prefer("nonesuch")
print(json.dumps({"used": used, "env": os.environ.get("ARROW_DEFAULT_MEMORY_POOL")}))
""")
    assert got["used"] != "nonesuch" and got["env"] is None
    assert "nonesuch" not in err and "Unsupported" not in err


def test_nothing_changes_once_pyarrow_is_imported():
    got, _ = _run("""
import json, os
import pyarrow
from aifbench import arrow_memory
print(json.dumps({"used": arrow_memory.prefer(), "env": os.environ.get("ARROW_DEFAULT_MEMORY_POOL")}))
""")
    assert got == {"used": None, "env": None}
