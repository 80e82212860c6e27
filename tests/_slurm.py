"""The local Slurm cluster for slurm-marked tests: find it, and skip (or, under CI or
AIFBENCH_REQUIRE_SLURM, fail) with one line when the nodes a test needs are not up."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USABLE = ("idle", "mix", "alloc")


def node_states(*sinfo_args: str) -> tuple[dict[str, str], str]:
    """{node: state} from `sinfo -h -N -o '%N %t' ARGS` (SLURM_CONF defaults to the repo's cluster),
    and the problem in words when sinfo is missing or fails ('' when it answered)."""
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return {}, "Slurm client commands are not installed"
    conf = REPO / ".slurm" / "etc" / "slurm.conf"
    if "SLURM_CONF" not in os.environ and conf.exists():
        os.environ["SLURM_CONF"] = str(conf)
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t", *sinfo_args], capture_output=True, text=True,
                             timeout=15)
    except subprocess.TimeoutExpired:
        return {}, "sinfo did not answer within 15 s"
    if out.returncode != 0:
        return {}, out.stderr.strip() or f"sinfo exit {out.returncode}"
    return {ln.split()[0]: ln.split()[-1].rstrip("*") for ln in out.stdout.splitlines() if ln.split()}, ""


def require_nodes(what: str, ok: Callable[[list[str]], bool], *sinfo_args: str) -> None:
    """Skip (fail under CI / AIFBENCH_REQUIRE_SLURM) unless `ok(usable nodes)` holds."""
    states, problem = node_states(*sinfo_args)
    usable = sorted(n for n, s in states.items() if s in USABLE)
    if not problem and ok(usable):
        return
    message = (f"local Slurm cluster absent ({problem or f'{what} not up: {states}'}); "
               f"start it with: scripts/ci/local-slurm.sh start")
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("CI", "AIFBENCH_REQUIRE_SLURM")):
        pytest.fail(message)
    pytest.skip(message)
