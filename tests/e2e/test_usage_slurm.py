"""The utilisation card against the real local Slurm cluster (scripts/ci/local-slurm.sh start): a known
workload in two accounts — jobs of 1, 2 and 4 GPUs, three that wait behind the first, one that
fails, one cancelled while it waits — with node n2 drained for a known stretch; then `aifbench
usage` and every figure checked against what the workload implies, read back independently.
Marked `slurm`: skipped when the cluster is down, a failure when CI=true or AIFBENCH_REQUIRE_SLURM=1.

n2 is drained before the first job and resumed after the last, so every job runs on n1 (4 GPUs)
and the queue is known: A (4 GPUs, 8 s) runs first; B (2 GPUs, 5 s), C (1 GPU, 3 s) and D (1 GPU,
fails after 2 s) wait for it and then start together; E (2 GPUs) is cancelled while it waits.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from tests._slurm import require_nodes

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = {"h22acad": "academia", "h22ind": "industry"}
TICK_S = 5.0
"""how long after resources free up a waiting job must start: Slurm's main scheduler runs on a job's
end (sched/backfill also every 30 s); seen 0-2 s here on a loaded 2-core machine (the node's
epilog and one-second time stamps), 5 s leaves room for a slower CI machine"""
WORKLOAD = {  # name: (account, GPUs, seconds it runs, exit code)
    "A": ("h22acad", 4, 8, 0),
    "B": ("h22ind", 2, 5, 0),
    "C": ("h22ind", 1, 3, 0),
    "D": ("h22acad", 1, 2, 3),
}


def _admin() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def _run(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    require_nodes("nodes n1, n2 of partition debug", lambda up: up == ["n1", "n2"], "-p", "debug")


def _wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _sacct(ids: list[str]) -> dict[str, dict[str, str]]:
    """The test's own reading of the jobs (Unix-time fields, ElapsedRaw): independent of the card's."""
    fields = ["JobIDRaw", "State", "ElapsedRaw", "AllocTRES", "Eligible", "Start", "End"]
    out = _run("sacct", "-X", "-n", "-P", "-j", ",".join(ids), "--format=" + ",".join(fields))
    return {ln.split("|")[0]: dict(zip(fields, ln.split("|"))) for ln in out.splitlines() if ln}


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _setup_accounts() -> None:
    """The two accounts, with this user in both (kept between runs: sacctmgr adds only what is missing)."""
    have = set(_run("sacctmgr", "-n", "-P", "list", "assoc", f"user={_user()}", "format=account").split())
    for account in ACCOUNTS:
        if account not in have:
            _run(*_admin(), "sacctmgr", "-i", "add", "account", account, "description=usage test", "organization=test",
                 check=False)  # exists already when another user added it
            _run(*_admin(), "sacctmgr", "-i", "add", "user", _user(), f"account={account}")


def test_usage_card_of_a_known_workload(aifbench_cli, tmp_path):
    os.environ["TZ"] = "UTC"  # Slurm's commands print local time: UTC, like the card reads them
    time.tzset()
    _setup_accounts()
    # the card counts every job of the partition: start when no other test's job is left
    _wait_until(lambda: not _run("squeue", "-h", "-p", "debug", "-o", "%i").strip(), 120, "the partition to be empty")
    since = math.floor(time.time())
    ids: dict[str, str] = {}
    drained = False
    try:
        t_drain = (time.time(), None)
        _run(*_admin(), "scontrol", "update", "nodename=n2", "state=drain", "reason=usage-test")
        drained = True
        t_drain = (t_drain[0], time.time())
        submitted = time.time()
        for name, (account, gpus, seconds, code) in WORKLOAD.items():
            ids[name] = _run("sbatch", "--parsable", "-A", account, "-p", "debug", f"--gres=gpu:{gpus}", "-c", "1",
                             "-t", "2", "-o", "/dev/null", "-D", str(tmp_path), "-J", f"usage-{name}",
                             "--wrap", f"sleep {seconds}; exit {code}").strip().split(";")[0]
        ids["E"] = _run("sbatch", "--parsable", "-A", "h22ind", "-p", "debug", "--gres=gpu:2", "-c", "1", "-t", "2",
                        "-o", "/dev/null", "-D", str(tmp_path), "-J", "usage-E", "--wrap", "sleep 30").strip().split(";")[0]
        _wait_until(lambda: "R" in _run("squeue", "-h", "-j", ids["A"], "-o", "%t").split(), 30, "job A to start")
        _run("scancel", ids["E"])
        _wait_until(lambda: not _run("squeue", "-h", "-j", ",".join(ids.values()), "-o", "%i").strip(), 60,
                    "the workload to end")
        t_resume = (time.time(), None)
        _run(*_admin(), "scontrol", "update", "nodename=n2", "state=resume")
        drained = False
        t_resume = (t_resume[0], time.time())
    finally:
        if drained:
            _run(*_admin(), "scontrol", "update", "nodename=n2", "state=resume", check=False)
        _run("scancel", *ids.values(), check=False)
    until = math.ceil(time.time())
    # accounting is written by slurmdbd a moment later: wait for every job's end and the drain's end
    jobs = _wait_until(lambda: (j := _sacct(list(ids.values()))) and all(v["End"] not in ("Unknown", "") for v in j.values())
                       and len(j) == 5 and j, 30, "accounting of the jobs")
    ev = f"start={_stamp(since)}"
    _wait_until(lambda: any(ln.split("|")[1] not in ("", "Unknown") for ln in _run(
        "sacctmgr", "-n", "-P", "show", "event", "event=node", "nodes=n2", ev, "format=TimeStart,TimeEnd").splitlines()),
        30, "the drain event's end in the accounting")
    while time.time() < until:  # the card refuses a period that ends in the future
        time.sleep(0.1)

    classes = tmp_path / "classes.toml"
    classes.write_text('default = "other"\n[accounts]\n' + "".join(f'{a} = "{c}"\n' for a, c in ACCOUNTS.items()))
    proc = aifbench_cli("usage", "--system", "local-slurm", "--partition", "debug", "--since", _stamp(since),
                        "--until", _stamp(until), "--classes", str(classes), "--format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    saved = next((tmp_path / "results" / "usage").glob("*.json")).read_text()
    for secret in (*ACCOUNTS, _user()):
        assert secret not in saved, f"the card names {secret!r}"
    fig = {(f["section"], f["group"], f["metric"]): f for f in doc["figures"]}

    def v(section, group, metric):
        return fig[(section, group, metric)]["value"]

    prov = doc["provenance"]
    assert (prov["cluster"], prov["partitions"], prov["since_utc"], prov["until_utc"]) == \
        ("aifbench", ["debug"], _stamp(since) + "Z", _stamp(until) + "Z")
    assert prov["slurm_version"].count(".") == 2 and any(c.startswith("sacct ") for c in prov["commands"])

    # what the accounting holds, read by the test itself, agrees with the workload
    by = {name: jobs[jid] for name, jid in ids.items()}
    gpu_s = {name: int(by[name]["ElapsedRaw"]) * WORKLOAD[name][1] for name in WORKLOAD}
    for name, (_, gpus, seconds, code) in WORKLOAD.items():
        assert f"gres/gpu={gpus}" in by[name]["AllocTRES"]
        assert seconds <= int(by[name]["ElapsedRaw"]) <= seconds + 2, (name, by[name])
        assert by[name]["State"].split()[0] == ("COMPLETED" if code == 0 else "FAILED")
    assert by["E"]["State"].startswith("CANCELLED") and by["E"]["AllocTRES"] == ""
    start = {n: _epoch(by[n]["Start"]) for n in WORKLOAD}
    eligible = {n: _epoch(by[n]["Eligible"]) for n in WORKLOAD}
    end_a = _epoch(by["A"]["End"])
    assert start["A"] - submitted <= TICK_S
    for n in ("B", "C", "D"):  # they waited for A, and started within a tick of its end
        assert end_a <= start[n] <= end_a + TICK_S, (n, start[n], end_a)
    wait = {n: start[n] - eligible[n] for n in WORKLOAD}

    # capacity: 8 GPUs for the whole period; allocated to the second; n2's 4 GPUs down while drained
    period_s = until - since
    assert v("capacity", "period", "available_gpu_h") * 3600 == pytest.approx(8 * period_s, abs=1e-6)
    allocated_s = sum(gpu_s.values())
    assert v("capacity", "period", "allocated_gpu_h") * 3600 == pytest.approx(allocated_s, abs=1e-6)
    down_s = v("capacity", "period", "down_gpu_h") * 3600
    lo, hi = math.floor(t_resume[0]) - math.ceil(t_drain[1]), math.ceil(t_resume[1]) - math.floor(t_drain[0])
    assert 4 * lo - 4 <= down_s <= 4 * hi + 4, (down_s, lo, hi)
    assert v("capacity", "period", "reserved_gpu_h") == 0
    assert v("capacity", "period", "idle_gpu_h") * 3600 == pytest.approx(8 * period_s - down_s - allocated_s, abs=1e-6)
    assert v("capacity", "period", "utilisation_pct") == pytest.approx(100 * allocated_s / (8 * period_s - down_s))
    day = datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%d")
    if datetime.fromtimestamp(until - 1, timezone.utc).strftime("%Y-%m-%d") == day:  # one UTC day: its figures are the period's
        for m in ("available_gpu_h", "allocated_gpu_h", "down_gpu_h", "utilisation_pct"):
            assert v("day", day, m) == pytest.approx(v("capacity", "period", m))
    assert (v("capacity", "period", "jobs_started"), v("capacity", "period", "jobs_ended")) == (4, 5)

    # jobs by state at the end of the period
    assert (v("state", "COMPLETED", "jobs"), v("state", "FAILED", "jobs"), v("state", "CANCELLED", "jobs")) == (3, 1, 1)
    assert v("state", "COMPLETED", "gpu_h") * 3600 == pytest.approx(gpu_s["A"] + gpu_s["B"] + gpu_s["C"], abs=1e-6)
    assert v("state", "FAILED", "gpu_h") * 3600 == pytest.approx(gpu_s["D"], abs=1e-6)
    assert v("state", "CANCELLED", "gpu_h") == 0 and v("state", "RUNNING", "jobs") == v("state", "PENDING", "jobs") == 0

    # waits by size class (1 GPU: C, D; 2-8 GPUs: A, B) and by account class
    def check_waits(section, group, names):
        w = np.array([wait[n] for n in names])
        weight = np.array([gpu_s[n] for n in names], dtype=float)
        assert v(section, group, "jobs") == len(names)
        for q in (50, 90, 99):
            assert v(section, group, f"wait_p{q}_s") == pytest.approx(np.percentile(w, q)), (section, group, q)
        assert v(section, group, "wait_mean_gpu_h_weighted_s") == pytest.approx((w * weight).sum() / weight.sum())

    check_waits("wait_size", "1", ["C", "D"])
    check_waits("wait_size", "2-8", ["A", "B"])
    check_waits("wait_class", "academia", ["A", "D"])
    check_waits("wait_class", "industry", ["B", "C"])
    assert v("wait_size", "9-64", "jobs") == 0 and v("wait_size", "9-64", "wait_p50_s") is None
    assert wait["A"] <= TICK_S and all(end_a - eligible[n] <= wait[n] <= end_a - eligible[n] + TICK_S for n in "BCD")

    # GPU-hours by size and by account class, and their shares
    assert v("size", "1", "gpu_h") * 3600 == pytest.approx(gpu_s["C"] + gpu_s["D"], abs=1e-6)
    assert v("size", "2-8", "gpu_h") * 3600 == pytest.approx(gpu_s["A"] + gpu_s["B"], abs=1e-6)
    assert v("size", "2-8", "share_pct") == pytest.approx(100 * (gpu_s["A"] + gpu_s["B"]) / allocated_s)
    assert v("class", "academia", "gpu_h") * 3600 == pytest.approx(gpu_s["A"] + gpu_s["D"], abs=1e-6)
    assert v("class", "industry", "gpu_h") * 3600 == pytest.approx(gpu_s["B"] + gpu_s["C"], abs=1e-6)
    assert v("class", "other", "gpu_h") == 0

    # what this cluster does not record is named, never estimated
    for key in (("energy", "period", "energy_per_job_kwh"), ("energy", "period", "energy_per_gpu_h_kwh"),
                ("gpu_util", "period", "gpu_util_pct")):
        assert fig[key]["value"] is None and fig[key]["note"].startswith("not available"), fig[key]
    assert "AcctGatherEnergyType" in fig[("energy", "period", "energy_per_job_kwh")]["note"]

    # the saved card draws, and compares with itself
    report = aifbench_cli("report", "--usage", prov["card_id"], "-o", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert f"Utilisation card {prov['card_id']}" in page and "data:image/png;base64," in page
    same = aifbench_cli("usage", "compare", prov["card_id"], prov["card_id"], "--format", "json")
    assert same.returncode == 0, same.stderr
    assert all(r["a"] == r["b"] for r in json.loads(same.stdout))
