"""The utilisation card without a cluster: its computation on small hand-computed inputs, the
reader on captured command output (tests/data/usage/small, README there), the class file, the
card file, and the command's refusals of bad input (one line, exit 2)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from aifbench.errors import ConfigError, SchemaError
from aifbench.usage import card, classes, compute, slurm
from aifbench.usage.records import Event, Job, Node

DATA = Path(__file__).parents[2] / "data" / "usage" / "small"
H = 3600.0


def t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


SINCE, UNTIL, NOW = t("2026-11-01T00:00:00"), t("2026-11-03T00:00:00"), t("2026-11-03T09:00:00")


def test_union_and_overlap_count_shared_time_once():
    assert compute.overlap(0, 10, 5, 20) == 5 and compute.overlap(0, 1, 2, 3) == 0
    assert compute.union_length([(0, 10), (5, 20), (30, 40)], 0, 35) == 25
    assert compute.union_length([(-5, 3), (2, 4)], 0, 100) == 4
    assert compute.union_length([], 0, 10) == 0
    assert compute.union_length([(50, 60)], 0, 10) == 0  # after the window: nothing, never negative


def test_days_are_utc_calendar_days_clipped_to_the_period():
    assert compute.days(t("2026-11-01T12:00:00"), t("2026-11-03T06:00:00")) == [
        ("2026-11-01", t("2026-11-01T12:00:00"), t("2026-11-02T00:00:00")),
        ("2026-11-02", t("2026-11-02T00:00:00"), t("2026-11-03T00:00:00")),
        ("2026-11-03", t("2026-11-03T00:00:00"), t("2026-11-03T06:00:00"))]


def test_size_classes_follow_the_gpu_counts():
    labels = [compute.SIZE_CLASSES[compute.size_class(g)][0] for g in (0, 1, 2, 8, 9, 64, 65, 512, 513, 24000)]
    assert labels == ["0", "1", "2-8", "2-8", "9-64", "9-64", "65-512", "65-512", ">512", ">512"]


def test_wait_statistics_hand_computed():
    stats = compute.wait_stats(np.array([0.0, 10, 20, 30, 40]), np.array([1.0, 1, 1, 1, 6]))
    # linear interpolation between order statistics: p90 at rank 0.9 * 4 = 3.6 -> 30 + 0.6 * 10
    assert stats == pytest.approx({"jobs": 5, "wait_p50_s": 20, "wait_p90_s": 36, "wait_p99_s": 39.6,
                                   "wait_mean_gpu_h_weighted_s": (0 + 10 + 20 + 30 + 6 * 40) / 10})
    empty = compute.wait_stats(np.zeros(0), np.zeros(0))
    assert empty["jobs"] == 0 and empty["wait_p50_s"] is None and empty["wait_mean_gpu_h_weighted_s"] is None


def _figures(partition: str = "gpu") -> dict[tuple[str, str, str], compute.Figure]:
    c = card.make(slurm.CapturedDir(DATA), system="local", partition=partition, since=SINCE, until=UNTIL,
                  classes=classes.AccountClasses(accounts={"uni-a": "academia", "acme": "industry"}), now=NOW)
    return {(f.section, f.group, f.metric): f for f in c.figures}


def test_card_of_captured_output_hand_computed():
    """tests/data/usage/small: partition gpu = g01 + g02, 4 GPUs each, 48 h. Job 101: 4 GPUs 01:00-03:00
    (8 GPU-h, waited 1 h); 102: 1 GPU from 00:30, still running (47.5 GPU-h in the period, waited 30 min);
    103: 2 GPUs from 23:00 the day before to 01:00, failed (2 GPU-h in the period); 104: cancelled
    while pending (0); g01 drained 23:00-01:00 across midnight, with a DOWN event inside it (2 h x 4 GPUs);
    reservation of both nodes 12:00-13:00 on day 2 (8 GPU-h)."""
    f = _figures()

    def v(*key):
        return f[key].value

    assert v("capacity", "period", "available_gpu_h") == pytest.approx(8 * 48)
    assert v("capacity", "period", "allocated_gpu_h") == pytest.approx(57.5)
    assert v("capacity", "period", "down_gpu_h") == pytest.approx(8)
    assert v("capacity", "period", "reserved_gpu_h") == pytest.approx(8)
    assert v("capacity", "period", "idle_gpu_h") == pytest.approx(384 - 8 - 57.5)
    assert v("capacity", "period", "utilisation_pct") == pytest.approx(100 * 57.5 / 376)
    assert [v("day", d, "allocated_gpu_h") for d in ("2026-11-01", "2026-11-02")] == pytest.approx([33.5, 24])
    assert [v("day", d, "down_gpu_h") for d in ("2026-11-01", "2026-11-02")] == pytest.approx([4, 4])
    assert [v("day", d, "reserved_gpu_h") for d in ("2026-11-01", "2026-11-02")] == pytest.approx([0, 8])
    assert v("day", "2026-11-02", "utilisation_pct") == pytest.approx(100 * 24 / (192 - 4))
    assert (v("capacity", "period", "jobs_started"), v("capacity", "period", "jobs_ended")) == (2, 3)
    states = {s: (v("state", s, "jobs"), v("state", s, "gpu_h")) for s in compute.STATES}
    assert states == {"COMPLETED": (1, 8), "FAILED": (1, 2), "CANCELLED": (1, 0), "TIMEOUT": (0, 0),
                      "PREEMPTED": (0, 0), "RUNNING": (1, 47.5), "PENDING": (0, 0), "OTHER": (0, 0)}
    assert (v("wait_size", "1", "wait_p50_s"), v("wait_size", "2-8", "wait_p99_s")) == (1800, 3600)
    assert v("wait_size", "2-8", "wait_mean_gpu_h_weighted_s") == 3600 and v("wait_size", "2-8", "jobs") == 1
    assert (v("wait_class", "academia", "wait_p50_s"), v("wait_class", "industry", "wait_p90_s")) == (3600, 1800)
    assert v("wait_class", "other", "jobs") == 0  # 103 started before the period
    assert (v("size", "1", "gpu_h"), v("size", "2-8", "gpu_h"), v("size", "9-64", "gpu_h")) == pytest.approx((47.5, 10, 0))
    assert v("size", "2-8", "share_pct") == pytest.approx(100 * 10 / 57.5)
    assert (v("class", "academia", "gpu_h"), v("class", "industry", "gpu_h"), v("class", "other", "gpu_h")) == \
        pytest.approx((8, 47.5, 2))
    # energy of the two jobs that ended with ConsumedEnergy: 7.2 MJ + 1.8 MJ over 8 + 4 GPU-h of those jobs
    assert v("energy", "period", "energy_per_job_kwh") == pytest.approx(9e6 / 3.6e6 / 2)
    assert v("energy", "period", "energy_per_gpu_h_kwh") == pytest.approx(2.5 / 12)
    util = f[("gpu_util", "period", "gpu_util_pct")]
    assert util.value is None and "no gres/gpuutil" in util.note


def test_partition_without_gpus_names_utilisation_not_available():
    f = _figures("cpu")
    assert f[("capacity", "period", "available_gpu_h")].value == 0
    assert f[("capacity", "period", "utilisation_pct")].value is None
    assert f[("capacity", "period", "utilisation_pct")].note.startswith("not available")


def test_a_job_running_past_the_period_counts_until_its_end_only():
    nodes = [Node("n1", ("p",), 8)]
    job = Job("p", "a", "COMPLETED", 8, eligible=0.0, start=0.0, end=10 * H)
    f = {(x.section, x.group, x.metric): x.value for x in compute.compute(
        [job], nodes, [Event("n1", "DOWN", 5 * H, None)], [], 0.0, 4 * H, 20 * H, ["p"], lambda a: "x", ["x"])}
    assert f[("capacity", "period", "allocated_gpu_h")] == 32 and f[("state", "RUNNING", "gpu_h")] == 32
    assert f[("capacity", "period", "down_gpu_h")] == 0 and f[("capacity", "period", "jobs_ended")] == 0


def test_energy_not_recorded_is_named_never_zero():
    cfg = (DATA / "config.txt").read_text().replace("acct_gather_energy/ipmi", "acct_gather_energy/none")
    root = _copy_data(cfg)
    c = card.make(slurm.CapturedDir(root), system="local", partition="gpu", since=SINCE, until=UNTIL,
                  classes=classes.AccountClasses(), now=NOW)
    energy = [f for f in c.figures if f.section == "energy" and f.metric != "jobs_with_energy"]
    assert all(f.value is None and "AcctGatherEnergyType=acct_gather_energy/none" in f.note for f in energy)


_tmp: list[Path] = []


def _copy_data(config_text: str | None = None) -> Path:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="usage-test-"))
    _tmp.append(root)
    shutil.copytree(DATA, root, dirs_exist_ok=True)
    if config_text is not None:
        (root / "config.txt").write_text(config_text)
    return root


@pytest.fixture(autouse=True, scope="module")
def _cleanup():
    yield
    for p in _tmp:
        shutil.rmtree(p, ignore_errors=True)


def test_reader_parses_slurm_text():
    assert slurm.tres_gpus("billing=4,cpu=8,gres/gpu=4,gres/gpu:h100=4,node=1") == 4
    assert slurm.tres_gpus("cpu=1,mem=1G") == 0
    assert slurm.gres_gpus("gpu:h100:4(S:0-1)") == 4 and slurm.gres_gpus("gpu:a:2,gpu:b:2") == 4
    assert slurm.gres_gpus("(null)") == 0 and slurm.gres_gpus("gpu:8") == 8
    assert slurm.expand_hostlist("n[1-3,7],gpu01,x[08-10]-ib") == ["n1", "n2", "n3", "n7", "gpu01", "x08-ib",
                                                                  "x09-ib", "x10-ib"]
    jobs = list(slurm.jobs(slurm.CapturedDir(DATA), SINCE, UNTIL, None))
    assert [(j.state, j.gpus) for j in jobs] == [("COMPLETED", 4), ("RUNNING", 1), ("FAILED", 2), ("CANCELLED", 8),
                                                 ("COMPLETED", 0)]
    assert jobs[3].start is None and jobs[1].end is None and jobs[0].energy_j == 7.2e6 and jobs[1].energy_j is None
    nodes = slurm.nodes(slurm.CapturedDir(DATA))
    assert [(n.name, n.partitions, n.gpus) for n in nodes] == [("g01", ("gpu",), 4), ("g02", ("gpu", "debug"), 4),
                                                               ("c01", ("cpu",), 0)]


def test_account_classes_file(tmp_path):
    good = tmp_path / "classes.toml"
    good.write_text('default = "public sector"\n[accounts]\nuni-a = "academia"\n')
    c = classes.load(good)
    assert (c.classify("uni-a"), c.classify("zzz"), c.names) == ("academia", "public sector", ["academia", "public sector"])
    bad = tmp_path / "bad.toml"
    bad.write_text('defualt = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key in .*bad.toml 'defualt'; allowed: accounts, default"):
        classes.load(bad)
    bad.write_text('[accounts]\nuni-a = 3\n')
    with pytest.raises(ConfigError, match="accounts.uni-a must be text"):
        classes.load(bad)


def test_card_file_round_trip_and_versions(tmp_path):
    c = card.make(slurm.CapturedDir(DATA), system="local", partition=None, since=SINCE, until=UNTIL,
                  classes=classes.AccountClasses(), now=NOW)
    assert c.provenance["partitions"] == ["cpu", "debug", "gpu"] and c.provenance["cluster"] == "testfactory"
    path = card.save(c, tmp_path)
    back = card.load(c.card_id[:12], tmp_path)
    assert back.figures == c.figures and back.provenance == c.provenance
    doc = json.loads(path.read_text())
    doc["usage_version"] = card.USAGE_VERSION + 1
    path.write_text(json.dumps(doc))
    with pytest.raises(SchemaError, match="newer than this aifbench supports"):
        card.load(str(path), tmp_path)
    with pytest.raises(ConfigError, match="unknown card 'nope'"):
        card.load("nope", tmp_path)


def _usage(capsys, *args: str) -> tuple[int, str]:
    """`aifbench usage` in this process (the refusals come before any output): (exit code, stderr)."""
    from aifbench.cli import main

    code = main(["usage", "--system", "local", "--from", str(DATA), "--now", "2026-11-03T09:00:00", "--no-save", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "2026-11-03", "--until", "2026-11-01"], "is not after --since"),
    (["--since", "2026-11-01", "--until", "2026-11-04"], "is in the future"),
    (["--since", "2026-11-01", "--until", "2026-11-03", "--partition", "gpux"], "unknown partition 'gpux'; allowed: cpu, debug, gpu"),
    (["--since", "1 Nov", "--until", "2026-11-03"], "not a date; allowed: YYYY-MM-DD"),
    (["--since", "2026-11-01"], "usage needs --until"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, err = _usage(capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_class_file_with_unknown_keys_is_refused(capsys, tmp_path):
    (tmp_path / "c.toml").write_text('[acounts]\nx = "y"\n')
    code, err = _usage(capsys, "--since", "2026-11-01", "--until", "2026-11-03", "--classes", str(tmp_path / "c.toml"))
    assert code == 2 and "unknown key" in err and "'acounts'" in err and err.count("\n") == 1, err


def test_no_accounting_says_what_sacct_answered(capsys, tmp_path):
    from aifbench.cli import main

    root = _copy_data((DATA / "config.txt").read_text().replace("accounting_storage/slurmdbd", "accounting_storage/none"))
    (root / "sacct-probe.txt").write_text("sacct: error: Slurm accounting storage is disabled\n")
    code = main(["usage", "--system", "local", "--from", str(root), "--now", "2026-11-03T09:00:00",
                 "--since", "2026-11-01", "--until", "2026-11-03", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "usage").exists()
    assert "no job accounting configured (AccountingStorageType=accounting_storage/none)" in err
    assert "sacct answered: sacct: error: Slurm accounting storage is disabled" in err


def test_card_compare_and_report_from_the_command_line(aifbench_cli, tmp_path):
    base = ["usage", "--system", "local", "--from", str(DATA), "--now", "2026-11-03T09:00:00", "--partition", "gpu"]
    a = aifbench_cli(*base, "--since", "2026-11-01", "--until", "2026-11-03", "--format", "csv")
    assert a.returncode == 0, a.stderr
    assert "gpu,capacity,period,allocated_gpu_h,57.5,GPU-h," in a.stdout and "saved " in a.stderr
    b = aifbench_cli(*base, "--since", "2026-11-02", "--until", "2026-11-03", "--format", "json")
    assert b.returncode == 0 and json.loads(b.stdout)["table"] == "usage"
    ids = sorted(p.stem for p in (tmp_path / "results" / "usage").glob("*.json"))
    assert ids == ["local-gpu-20261101T000000-20261103T000000", "local-gpu-20261102T000000-20261103T000000"]
    cmp = aifbench_cli("usage", "compare", *ids, "--format", "json")
    assert cmp.returncode == 0, cmp.stderr
    rows = {(r["section"], r["group"], r["metric"]): r for r in json.loads(cmp.stdout)}
    assert (rows[("capacity", "period", "allocated_gpu_h")]["a"], rows[("capacity", "period", "allocated_gpu_h")]["b"]) == (57.5, 24)
    md = aifbench_cli("usage", "compare", *ids, "--format", "markdown")
    assert md.returncode == 0 and "| capacity | period | available_gpu_h | 384 | 192 |" in md.stdout, md.stdout
    rep = aifbench_cli("usage", "report", ids[0], "-o", "card.html")
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "card.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "testfactory" in page
    main_report = aifbench_cli("report", "--usage", ids[1], "-o", "all.html")  # the store holds no run: cards only
    assert main_report.returncode == 0 and "1 utilisation card(s)" in main_report.stdout, main_report.stderr
    assert f"Utilisation card {ids[1]}" in (tmp_path / "all.html").read_text()
    wrong = aifbench_cli("usage", "compare", ids[0])
    assert wrong.returncode == 2 and "usage compare takes 2 cards, got 1" in wrong.stderr


def test_factory_generator_output_is_read_whole(tmp_path):
    """scripts/bench/usage-factory.py at small scale: every job the window holds is counted once in one
    state, the states' GPU-hours add up to the allocated ones, and allocation stays within capacity."""
    import subprocess
    import sys

    root = tmp_path / "factory"
    subprocess.run([sys.executable, str(Path(__file__).parents[3] / "scripts" / "bench" / "usage-factory.py"), str(root),
                    "--jobs", "3000", "--nodes", "400"], check=True, capture_output=True)
    since, until = t("2026-11-01T00:00:00"), t("2026-12-01T00:00:00")
    lines = (root / "sacct.txt").read_text().splitlines()
    before = sum(1 for ln in lines if (end := slurm.slurm_time(ln.split("|")[6])) is not None and end < since)
    c = card.make(slurm.CapturedDir(root), system="local", partition=None, since=since, until=until,
                  classes=classes.AccountClasses(), now=t("2026-12-01T09:00:00"))
    assert c.provenance["partitions"] == ["booster", "dev"]
    counted = sum(f.value for f in c.figures if f.section == "state" and f.metric == "jobs")
    assert counted == len(lines) - before
    for p in ("booster", "dev"):
        states = sum(f.value for f in c.figures if f.partition == p and f.section == "state" and f.metric == "gpu_h")
        assert states == pytest.approx(c.value(p, "capacity", "period", "allocated_gpu_h"))
        sizes = sum(f.value for f in c.figures if f.partition == p and f.section == "size" and f.metric == "gpu_h")
        assert sizes == pytest.approx(states)
    assert c.value("dev", "capacity", "period", "available_gpu_h") == 200 * 8 * 30 * 24


def test_gpu_utilisation_is_read_where_the_accounting_tracks_it():
    """With gres/gpuutil tracked, sacct is asked for TRESUsageInAve: 101 (4 GPUs x 2 h) at 90 %, 103
    (2 GPUs x 2 h) at 30 % -> (90 x 8 + 30 x 4) / 12 = 70 %; without it, not available."""
    cfg = (DATA / "config.txt").read_text().replace("gres/gpu\n", "gres/gpu,gres/gpuutil\n")
    root = _copy_data(cfg)
    util = {"101": "cpu=00:10:00,gres/gpuutil=90", "103": "gres/gpuutil=30,gres/gpumem=1G", "104": ""}
    (root / "sacct.txt").write_text("".join(f"{ln}|{util.get(ln.split('|')[0], '')}\n"
                                            for ln in (DATA / "sacct.txt").read_text().splitlines()))
    source = slurm.CapturedDir(root)
    c = card.make(source, system="local", partition="gpu", since=SINCE, until=UNTIL,
                  classes=classes.AccountClasses(), now=NOW)
    assert c.value("gpu", "gpu_util", "period", "gpu_util_pct") == pytest.approx((90 * 8 + 30 * 4) / 12)
    assert c.value("gpu", "gpu_util", "period", "jobs_with_gpu_util") == 2
    assert any("TRESUsageInAve" in cmd for cmd in source.used)
    plain = _figures()[("gpu_util", "period", "gpu_util_pct")]
    assert plain.value is None and "no gres/gpuutil" in plain.note


def test_commands_stream_lines_and_report_a_failing_command():
    from aifbench.errors import LaunchError

    cmds = slurm.Commands()
    assert list(cmds.lines("x", ["sh", "-c", "echo a; echo b"])) == ["a", "b"]
    lines = cmds.lines("x", ["sh", "-c", "echo a; echo 'sacct: error: slurmdbd: no connection' >&2; exit 1"])
    assert next(lines) == "a"
    with pytest.raises(LaunchError, match="failed: sacct: error: slurmdbd: no connection"):
        next(lines)
    with pytest.raises(ConfigError, match="no-such-sacct not found: run 'aifbench usage' on a login node"):
        list(cmds.lines("x", ["no-such-sacct"]))
    assert cmds.used[0] == "sh -c 'echo a; echo b'"
