"""Every site profile's acceptance script, as `submit --dry-run` writes it, is accepted by a real
`sbatch --test-only` on the local cluster, which mirrors the sites' partitions, QoS and GPU gres
(scripts/ci/local-slurm.sh: site_layout, node s1). What --test-only cannot judge (modules, uenv,
images) is tests/unit/systems/test_site_environments.py. Marked `slurm` (tests/e2e/test_slurm_e2e.py's rules)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from aifbench.systems import list_systems, load_system
from tests._slurm import require_nodes

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
SITES = [n for n in list_systems() if load_system(n).scheduler == "slurm" and n != "local-slurm"]
SITE_DEFAULT_PARTITION = "sitedefault"
"""the local stand-in for a site's default partition, where a profile routes by QoS alone"""


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    require_nodes("site node s1", lambda up: up == ["s1"], "-n", "s1")


@pytest.fixture
def acceptance_script(tmp_path, monkeypatch, capsys):
    """name -> path of the acceptance script `submit --dry-run` prints for that profile."""
    from aifbench.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIFBENCH_ACCOUNT", "aifbench")  # the local cluster's account (local-slurm.sh)

    def make(name: str, *extra: str) -> Path:
        code = main(["submit", "acceptance", "--system", name, *extra, "--dry-run", "--results", "res"])
        out = capsys.readouterr()
        assert code == 0, out.err
        path = tmp_path / f"{name}.sh"
        path.write_text(out.out)
        return path

    return make


def _test_only(script: Path, system: str) -> subprocess.CompletedProcess:
    extra = [] if load_system(system).queue().partition else [f"--partition={SITE_DEFAULT_PARTITION}"]
    return subprocess.run(["sbatch", "--test-only", *extra, str(script)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", SITES)
def test_acceptance_script_is_accepted_by_sbatch_test_only(acceptance_script, name):
    script = acceptance_script(name)
    done = _test_only(script, name)
    assert done.returncode == 0, done.stderr
    queue = load_system(name).queue()
    assert re.search(rf"to start at .* on nodes s1 in partition {queue.partition or SITE_DEFAULT_PARTITION}$",
                     done.stderr.strip()), done.stderr


def test_test_only_refuses_what_the_site_layout_does_not_allow(acceptance_script, tmp_path):
    """The mirror judges: an unknown QoS, a time over the QoS limit, more GPUs than a node has."""
    text = acceptance_script("leonardo-booster").read_text()
    for change, message in ((("#SBATCH --time=60", "#SBATCH --time=60\n#SBATCH --qos=nosuchqos"), "Invalid qos"),
                            (("#SBATCH --time=60", "#SBATCH --time=60\n#SBATCH --qos=boost_qos_dbg"), "QOSMaxWallDurationPerJobLimit|time limit"),
                            (("#SBATCH --gres=gpu:4", "#SBATCH --gres=gpu:16"), "node configuration is not available")):
        bad = tmp_path / "bad.sh"
        bad.write_text(text.replace(*change))
        done = _test_only(bad, "leonardo-booster")
        assert done.returncode != 0 and re.search(message, done.stderr), (change, done.stderr)
