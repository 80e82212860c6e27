"""Slurm's own command: cluster (partitions, nodes, GPU gres and states of this Slurm cluster).

The scheduler-neutral commands (submit, jobs, cancel, collect, systems) are in cli/jobs.py; their
names here stay until release 0.2.0 for code that imported them from this module.
"""

from __future__ import annotations

import argparse

from aifbench.cli.args import add_format_option
from aifbench.cli.jobs import (_positive, build_submission, cmd_cancel, cmd_collect, cmd_jobs,  # noqa: F401
                               cmd_submit, cmd_systems, submitted_runs)
from aifbench.errors import LaunchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="partitions, nodes, GPU gres and states of this Slurm cluster")
    p.add_argument("--timeout", type=float, default=20.0, metavar="S", help="bound per Slurm command (default 20)")
    add_format_option(p)
    p.set_defaults(func=cmd_cluster)


def cmd_cluster(args: argparse.Namespace) -> int:
    from aifbench.launch import cluster

    _positive("--timeout", args.timeout)
    if not cluster.slurm_available():
        raise LaunchError("no Slurm here (sinfo not found); see scripts/ci/local-slurm.sh for a local cluster")
    parts, nodes = cluster.partitions(args.timeout), cluster.nodes(args.timeout)
    from aifbench.cli.output import Col, emit

    rows = [{"kind": "partition", "name": p.name, "state": p.state, "nodes": p.total_nodes,
             "max_nodes": p.max_nodes, "max_time_min": p.max_time_min, "default": p.is_default} for p in parts]
    rows += [{"kind": "node", "name": n.name, "state": n.state, "partitions": list(n.partitions), "cpus": n.cpus,
              "gpus": n.gpus, "gres": n.gres} for n in nodes]
    if args.format != "table":
        emit(rows, [Col("kind"), Col("name"), Col("state")], args.format)
        return 0
    title = f"partitions (via {cluster.backend()}, Slurm {cluster.slurm_version(args.timeout)})"
    emit([r for r in rows if r["kind"] == "partition"],
         [Col("name", "partition"), Col("state"), Col("nodes", kind="num"),
          Col("max nodes/job", show=lambda r: str(r["max_nodes"] or "unlimited")),
          Col("time limit (min)", show=lambda r: str(r["max_time_min"] or "unlimited")),
          Col("default", show=lambda r: "yes" if r["default"] else "")], "table", title)
    emit([r for r in rows if r["kind"] == "node"],
         [Col("name", "node"), Col("state"), Col("partitions"), Col("cpus", "CPUs", kind="num"),
          Col("gpus", "GPUs", kind="num"), Col("gres", kind="text")], "table", "nodes")
    return 0
