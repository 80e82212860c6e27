"""Fault injection against the results store, with real processes: a worker killed at a chosen
point after its run was compacted, an older copy of a shard put back, tampered and non-finite
values, damaged bytes in a compacted file, readers and compactions racing, lost provenance rows,
a full disk, bad input that once gave a traceback. The rules they check are docs/store.md's.

One real two-rank run (tests/data/faults/tiny.toml, `aifbench run --nproc 2`) is made once per
module; each test works on its own copy of it."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aifbench.analysis import data
from aifbench.analysis import runs as run_info
from aifbench.launch import local
from aifbench.results import layout, store
from tests._analysis_data import RunSpec, gemm, membw, write_run

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "tests" / "data" / "faults" / "tiny.toml"
KEYS = {"metrics": ["case_id", "rank", "metric", "stat"], "samples": ["case_id", "rank", "metric", "sample_index"],
        "runs": ["rank", "task"],
        "telemetry": ["case_id", "rank", "source", "scope", "window", "segment", "field", "t_s"]}


def cli(cwd: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full = dict(os.environ, COLUMNS="200", PYTHONPATH=str(REPO / "src"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "aifbench", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=600, **kw)


def one_line_exit_2(p: subprocess.CompletedProcess) -> str:
    err = p.stderr.strip()
    assert p.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, (p.returncode, err)
    return err


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """A finished, compacted two-rank run of the tiny suite (its run directory)."""
    root = tmp_path_factory.mktemp("faults")
    p = cli(root, "run", str(SUITE), "--nproc", "2", "--results", "res", "--device", "cpu")
    assert p.returncode == 0, p.stderr[-3000:]
    (run_dir,) = [d for d in (root / "res").iterdir() if d.is_dir()]
    assert all(layout.COMPACT_RE.match(f.name) for f in run_dir.glob("*.parquet"))
    return run_dir


@pytest.fixture
def run_copy(real_run, tmp_path) -> Path:
    target = tmp_path / "res" / real_run.name
    shutil.copytree(real_run, target)
    return target


def rows(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table of a run, sorted by its key: equal frames = the same rows, each once."""
    res = store.load([run_dir])
    assert not res.skipped, res.skipped
    return {name: sort(res.tables[name], name) for name in KEYS}


def sort(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return df.sort_values(KEYS[name]).reset_index(drop=True)


def same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], tables=("metrics", "samples", "telemetry")) -> None:
    for name in tables:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False)


# --- 1. compaction never loses a committed row ----------------------------------------------

REQUEUE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from aifbench.distributed import RankInfo
    from aifbench.plan import Plan
    from aifbench.results.store import ShardWriter
    from aifbench import runner
    real, left = ShardWriter.flush, int(sys.argv[2])
    def flush(self):  # kill -9 right after the `left`-th flush of the requeued worker
        global left
        out = real(self)
        left -= 1
        if left == 0:
            os.kill(os.getpid(), 9)
        return out
    ShardWriter.flush = flush
    plan = Plan.load(Path(sys.argv[1]))
    runner.execute(plan, RankInfo(rank=1, world_size=2, local_rank=1))
""")


@pytest.mark.parametrize("kill_after", [1, 2])
def test_a_worker_requeued_after_compaction_keeps_every_committed_row(run_copy, kill_after):
    """Slurm requeues rank 1 after its run was compacted; it is killed (-9) after its first or
    second shard write; `compact` then runs. Before: the resumed rank started from case 0, its
    partial shard hid the compacted rows and compaction deleted them (76 -> 18 rows)."""
    before = rows(run_copy)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run([sys.executable, "-c", REQUEUE, str(run_copy / "plan.json"), str(kill_after)],
                       env=env, capture_output=True, text=True, timeout=300, cwd=run_copy.parent.parent)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert list(run_copy.glob("metrics.rank00001.*.parquet"))  # its loose shard beside the compacted file
    same(before, rows(run_copy))
    c = cli(run_copy.parent.parent, "compact", run_copy.name, "--results", "res")
    assert c.returncode == 0 and "rows kept: metrics" in c.stdout, c.stdout + c.stderr
    same(before, rows(run_copy))
    assert all(layout.COMPACT_RE.match(f.name) for f in run_copy.glob("*.parquet"))


def _older_copy(run_dir: Path, table: str = "metrics", rank: int = 0) -> Path:
    """Put back an older copy of rank `rank`'s shard: its first case only, a lower generation
    and an older mtime (a backup or an rsync -t of the shard as it was mid-run)."""
    name = store.shard_name(table, rank)
    t, gen = store.committed_rows(run_dir, table, name)
    df = t.to_pandas()
    first = df[df["case_id"] == sorted(df["case_id"])[0]]
    path = store.write_shard(run_dir / name, table, first, generation=gen - 1)
    os.utime(path, ns=(1, 1))
    return path


def test_an_older_copy_of_a_shard_never_replaces_the_compacted_rows(run_copy):
    before = rows(run_copy)
    copy = _older_copy(run_copy)
    same(before, _rows_with_notes(run_copy))
    c = cli(run_copy.parent.parent, "compact", run_copy.name, "--results", "res")
    assert c.returncode == 0, c.stderr
    assert "older copies" in c.stderr and copy.name in c.stderr  # named, left in place
    assert copy.exists()
    same(before, _rows_with_notes(run_copy))


def _rows_with_notes(run_dir: Path) -> dict[str, pd.DataFrame]:
    res = store.load([run_dir])
    return {name: sort(res.tables[name], name) for name in KEYS}


def test_compaction_says_what_a_newer_generation_replaced(run_copy):
    """A rank that rewrote its shard (a newer generation, one case fewer: that case failed and is
    rerun) replaces its compacted rows; compact names the rows it dropped."""
    name = store.shard_name("metrics", 1)
    t, gen = store.committed_rows(run_copy, "metrics", name)
    df = t.to_pandas()
    keep = df[df["case_id"] != sorted(df["case_id"])[-1]]
    store.write_shard(run_copy / name, "metrics", keep, generation=gen + 1)
    c = cli(run_copy.parent.parent, "compact", run_copy.name, "--results", "res")
    assert c.returncode == 0 and f"{name}: {len(df)} row(s)" in c.stdout, c.stdout
    assert len(store.load([run_copy]).metrics.query("rank == 1")) == len(keep)


# --- 2. no non-finite or forbidden value passes ---------------------------------------------

REFS = textwrap.dedent("""
    [[reference]]
    benchmark = "gemm"
    metric = "tflops"
    lower = 0.000001
    source = "test: any positive figure"
""")


def _tamper(run_dir: Path, value: float) -> Path:
    """Rank 0's gemm tflops rows set to `value` and written past the schema check (pyarrow
    directly, a newer generation): what a hand-edited or foreign file may hold."""
    name = store.shard_name("metrics", 0)
    t, gen = store.committed_rows(run_dir, "metrics", name)
    df = t.to_pandas()
    df.loc[(df["metric"] == "tflops"), "value"] = value
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    arrow = arrow.replace_schema_metadata({layout.GEN_KEY: json.dumps({"generation": gen + 1}).encode()})
    pq.write_table(arrow, run_dir / name)
    return run_dir / name


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_a_tampered_non_finite_or_negative_value_never_passes(run_copy, value, tmp_path):
    shard = _tamper(run_copy, value)
    refs = tmp_path / "refs.toml"
    refs.write_text(REFS)
    v = cli(tmp_path, "validate", run_copy.name, "--references", str(refs), "--results", "res")
    assert v.returncode == 1 and "PASS" not in v.stdout.splitlines()[0], v.stdout[-2000:]
    assert shard.name in v.stderr  # the file is named, and its rows are counted as missing
    s = cli(tmp_path, "show", run_copy.name, "--results", "res", "--format", "json")
    assert all(r["value"] is None or (r["value"] >= 0 and r["value"] != float("inf"))
               for r in json.loads(s.stdout) if r["metric"] == "tflops")


def test_a_non_finite_value_never_passes_a_bound():
    from aifbench.analysis.references import load_file
    from aifbench.analysis.validate import _bound_failures

    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(REFS)
    (ref,) = load_file(Path(fh.name))
    for v in (float("nan"), float("inf")):
        row = pd.DataFrame([{"value": v, "peak": None, "peak_source": "", "unit": "TFLOP/s", "rank": 0,
                             "node": "n", "device": "cpu", "case_id": "c", "metric": "tflops"}])
        fails, _ = _bound_failures(ref, row, {})
        assert fails and "not a finite number" in fails[0]


@pytest.mark.parametrize("value", [float("inf"), -1.0])
def test_import_refuses_non_finite_and_negative_values(run_copy, tmp_path, value):
    bundle = tmp_path / "b.parquet"
    e = cli(tmp_path, "export", str(run_copy), "-o", str(bundle))
    assert e.returncode == 0, e.stderr
    table = pq.read_table(bundle)
    df = table.to_pandas()
    df.loc[(df["table"] == "metrics") & (df["metric"] == "tflops"), "value"] = value
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                   bundle)
    err = one_line_exit_2(cli(tmp_path, "import", str(bundle), "--results", "other"))
    assert "infinite" in err or "cannot be negative" in err
    assert not (tmp_path / "other").exists() or not list((tmp_path / "other").rglob("*.parquet"))


def test_a_conflicting_import_is_refused_and_named(run_copy, tmp_path):
    bundle = tmp_path / "b.parquet"
    assert cli(tmp_path, "export", str(run_copy), "-o", str(bundle)).returncode == 0
    table = pq.read_table(bundle)
    df = table.to_pandas()
    df.loc[(df["table"] == "metrics") & (df["metric"] == "tflops"), "value"] *= 2
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata),
                   bundle)
    before = sorted(p.name for p in run_copy.iterdir())
    err = one_line_exit_2(cli(tmp_path, "import", str(bundle), "--results", str(run_copy.parent)))
    assert "conflict" in err and "tflops" in err
    assert sorted(p.name for p in run_copy.iterdir()) == before  # nothing written


# --- 3. a damaged compacted file is named and quarantined -----------------------------------

def _damage(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    for i in range(len(raw) // 3, len(raw) // 3 + 64):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_damaged_compacted_file_is_named_quarantined_and_the_store_stays_readable(run_copy):
    root = run_copy.parent
    other = write_run(root, RunSpec(run_id="20260101T000000Z-other-000001", nodes=("n1",), gpus_per_node=2,
                                    cases=[gemm(1024), membw(1 << 20)]))
    (damaged,) = run_copy.glob("metrics.compact-*.parquet")
    _damage(damaged)
    r = cli(root.parent, "runs", "--results", "res", "--format", "json")  # reads a few columns: the
    assert r.returncode == 0, r.stderr  # damaged page may lie outside them, and every run is listed
    assert {x["run_id"] for x in json.loads(r.stdout)} == {run_copy.name, other.name}
    v = cli(root.parent, "show", run_copy.name, "--all", "--results", "res", "--format", "json")
    assert damaged.name in v.stderr, v.stderr  # a command that reads the damaged page names the file
    c = cli(root.parent, "compact", run_copy.name, "--results", "res")
    assert c.returncode == 2 and damaged.name in c.stderr and "quarantined" in c.stderr, c.stderr
    assert not damaged.exists() and (run_copy / f".{damaged.name}.damaged").exists()
    s = cli(root.parent, "show", other.name, "--results", "res", "--format", "json")
    assert s.returncode == 0 and json.loads(s.stdout)
    r = cli(root.parent, "runs", "--results", "res", "--format", "json")  # the quarantined file is not read
    assert r.returncode == 0 and damaged.name not in r.stderr and len(json.loads(r.stdout)) == 2


# --- 4. every table exports and imports row for row -------------------------------------------

def test_every_table_of_a_multi_window_run_exports_and_imports_row_for_row(run_copy, tmp_path):
    before = rows(run_copy)
    tel = before["telemetry"]
    assert tel["window"].nunique() >= 3 and (tel["segment"] > 0).any()  # prefill, decode segments, main
    assert len(data.load([run_copy]).telemetry) == len(tel)  # analysis' load keeps every row
    bundle = tmp_path / "b.parquet"
    assert cli(tmp_path, "export", str(run_copy), "-o", str(bundle)).returncode == 0
    i = cli(tmp_path, "import", str(bundle), "--results", "other")
    assert i.returncode == 0, i.stderr
    after = rows(tmp_path / "other" / run_copy.name)
    same(before, after, tables=("metrics", "samples", "telemetry"))
    assert len(after["runs"]) == len(before["runs"])
    again = cli(tmp_path, "import", str(bundle), "--results", "other")
    assert again.returncode == 0 and "nothing new" in again.stdout


# --- 5. readers and compactions racing ---------------------------------------------------------

READER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from aifbench.analysis import data, runs
    from aifbench.results import store
    run_dir, want, distinct, stop = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    n = 0
    while not stop.exists() or n < 3:  # a directory, a list of files (runs: distinct rows), analysis' reader
        for res, rows in ((store.load([run_dir]), want), (runs.load_store(run_dir.parent), distinct),
                          (data.load_runs([run_dir]), want)):
            assert not res.skipped, res.skipped
            assert len(res.metrics) == rows and len(res.runs) == 32, (len(res.metrics), rows, len(res.runs))
        n += 1
    print(n)
""")


def test_readers_see_every_row_while_two_compactions_race(tmp_path):
    run_dir = write_run(tmp_path / "res", RunSpec(run_id="20260101T000000Z-race-000001", nodes=("a", "b", "c", "d"),
                                                  gpus_per_node=8, cases=[gemm(1024), membw(1 << 20)]))
    want = len(store.load([run_dir]).metrics)
    distinct = len(run_info.load_store(run_dir.parent).metrics)  # `runs` reads the distinct (case, rank, status)
    assert 0 < distinct < want
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    stop = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(run_dir), str(want), str(distinct), str(stop)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    compactors = [subprocess.Popen([sys.executable, "-m", "aifbench", "compact", run_dir.name, "--results",
                                    str(run_dir.parent)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) + (p.returncode,) for p in compactors]
    stop.touch()
    reads = [p.communicate(timeout=300) + (p.returncode,) for p in readers]
    assert all(rc == 0 for _, _, rc in outs), outs
    assert not any("left in place" in err for _, err, _ in outs), outs
    assert all(rc == 0 for _, _, rc in reads), reads
    assert len(store.load([run_dir]).metrics) == want
    assert len(list(run_dir.glob("metrics.*.parquet"))) == 1


# --- 6. completeness counts ranks from the plan --------------------------------------------------

def test_validate_is_not_pass_when_ranks_lost_their_runs_rows(run_copy, tmp_path):
    (runs_file,) = run_copy.glob("runs.compact-*.parquet")
    t = pq.read_table(runs_file)
    meta = {k: v for k, v in pq.read_metadata(runs_file).metadata.items() if k != b"ARROW:schema"}
    kept = t.filter(pa.compute.equal(t["rank"], 0))
    pq.write_table(kept.replace_schema_metadata(meta), runs_file)
    refs = tmp_path / "refs.toml"
    refs.write_text(REFS)
    v = cli(tmp_path, "validate", run_copy.name, "--references", str(refs), "--results", str(run_copy.parent))
    out = v.stdout + v.stderr
    assert v.returncode == 1 and "INCOMPLETE" in out and "no runs row from 1 of 2 rank(s): 1" in out, out
    r = cli(tmp_path, "runs", "--results", str(run_copy.parent), "--format", "json")
    assert json.loads(r.stdout)[0]["status"] == "incomplete"


# --- 7. bad input: one line, exit 2 ----------------------------------------------------------------

@pytest.mark.parametrize("args,env,says", [
    (["--set", "gemm.m=" + "9" * 4301], {}, "4301 characters"),
    (["--nproc", "2"], {"AIFBENCH_LOG": "x"}, "AIFBENCH_LOG"),
    (["--set", "gemm.min_sample_s=nan"], {}, "finite number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, env, says):
    err = one_line_exit_2(cli(tmp_path, "run", str(SUITE), "--results", "res", *args, env=env))
    assert says in err
    assert not (tmp_path / "res").exists()  # nothing half-written


# --- 8. a worker that dies is named -------------------------------------------------------------

def _small_disk(where: Path, need: int) -> tuple[Path, callable]:
    """A directory on a 1 MiB tmpfs (when this test may mount one: root) with room for the
    launcher's reserve (RESERVE_BYTES) and half of `need`, the bytes one run writes: the run
    starts and its ranks die writing; else None."""
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    if p.returncode != 0:
        return None, lambda: None
    (where / "filler").write_bytes(b"x" * ((1 << 20) - local.RESERVE_BYTES - need // 2))
    return where, lambda: subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _bytes_on_disk(root: Path) -> int:
    """What the files below `root` take on a file system of 4 KiB pages."""
    return sum(-(-f.stat().st_size // 4096) * 4096 for f in root.rglob("*") if f.is_file())


def _file_size_limit():
    """The other way to a full disk: files may not grow past 24 KiB (SIGXFSZ ignored: EFBIG)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (24 << 10, 24 << 10))


def test_a_worker_that_dies_of_a_full_disk_is_named_and_its_run_marked(tmp_path):
    probe = cli(tmp_path, "run", str(SUITE), "--nproc", "2", "--results", "probe", "--device", "cpu")
    assert probe.returncode == 0, probe.stderr[-2000:]
    mnt, unmount = _small_disk(tmp_path / "mnt", _bytes_on_disk(tmp_path / "probe"))
    try:
        if mnt is not None:
            p = cli(tmp_path, "run", str(SUITE), "--nproc", "2", "--results", str(mnt / "res"), "--device", "cpu")
            no_space, root = "No space left on device", mnt / "res"
        else:
            p = cli(tmp_path, "run", str(SUITE), "--nproc", "2", "--results", "res", "--device", "cpu",
                    preexec_fn=_file_size_limit)
            no_space, root = "File too large", tmp_path / "res"
        assert p.returncode != 0
        died = [ln for ln in p.stderr.splitlines() if re.match(r"aifbench: ERROR: rank \d+ died \(", ln)]
        assert died and no_space in died[0] and "rank" in died[0], p.stderr[-3000:]
        assert all("marked failed" in ln for ln in died), p.stderr[-4000:]
        r = cli(tmp_path, "runs", "--results", str(root), "--format", "json")
        assert json.loads(r.stdout)[0]["status"] in ("failed", "incomplete"), r.stdout  # no longer running
        assert set(store.load([root]).runs["status"]) == {"failed"}
    finally:
        unmount()


REWRITE_DURING_DELETE = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import pandas as pd
    from aifbench.results import compact, layout, store
    run_dir, real, done = Path(sys.argv[1]), os.rename, []
    def rename(src, dst, *a, **k):  # rank 1 rewrites its shard just as compaction deletes the one it read
        if not done and Path(src).name == store.shard_name("metrics", 1):
            done.append(1)
            df = store.read_parquet(Path(src)).to_pandas()  # (another process in life: here, no reader lock)
            gen = layout.shard_generation(Path(src)) or 1
            df["value"] = df["value"] * 3
            store.write_shard(Path(src), "metrics", df, generation=gen + 1)
        return real(src, dst, *a, **k)
    os.rename = rename
    compact.compact(run_dir)
    print(len(done))
""")


def test_a_shard_rewritten_while_compaction_deletes_it_is_kept(tmp_path):
    run_dir = write_run(tmp_path / "res", RunSpec(run_id="20260101T000000Z-del-000001", nodes=("a",), gpus_per_node=2,
                                                  cases=[gemm(1024), membw(1 << 20)]))
    mine = store.load([run_dir]).metrics.query("rank == 1").sort_values(KEYS["metrics"])
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    p = subprocess.run([sys.executable, "-c", REWRITE_DURING_DELETE, str(run_dir)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "1", p.stderr[-2000:]
    assert (run_dir / store.shard_name("metrics", 1)).exists()  # the newer version, put back
    after = store.load([run_dir]).metrics.query("rank == 1").sort_values(KEYS["metrics"])
    assert list(after["value"].round(9)) == list((mine["value"] * 3).round(9))



def test_a_noisy_interval_below_zero_is_kept_but_a_negative_mean_is_refused(run_copy):
    """A paired t interval of noisy A/B rounds may reach below 0 (mean 0.2, ci_low -0.1): those rows
    are written through the store's own writer and read back whole; a mean below 0 is refused."""
    from aifbench.errors import SchemaError

    name = store.shard_name("metrics", 0)
    t, gen = store.committed_rows(run_copy, "metrics", name)
    df = t.to_pandas()
    template = df[df["status"] == "ok"].iloc[[0, 0, 0]].copy()
    template["metric"], template["unit"] = "speedup_vs_ref", "x"
    template["stat"], template["value"] = ["mean", "ci_low", "ci_high"], [0.2, -0.1, 0.5]
    store.write_shard(run_copy / name, "metrics", pd.concat([df, template]), generation=gen + 1)
    got = store.load([run_copy]).metrics.query("rank == 0 and metric == 'speedup_vs_ref'")
    assert sorted(zip(got["stat"], got["value"])) == [("ci_high", 0.5), ("ci_low", -0.1), ("mean", 0.2)]
    template["value"] = [-0.2, -0.4, 0.1]
    with pytest.raises(SchemaError, match="cannot be negative"):
        store.write_shard(run_copy / name, "metrics", pd.concat([df, template]), generation=gen + 2)
