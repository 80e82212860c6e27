"""`aifbench usage`: the utilisation card of a partition from Slurm accounting; `usage compare`
sets two cards side by side; `usage report` draws one as an HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from aifbench.cli.args import STORE, add_format_option
from aifbench.errors import ConfigError

ACTIONS = ("card", "compare", "report")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "usage", help="utilisation card of a partition from Slurm accounting; compare two; draw one",
        description="usage --system NAME --since DATE --until DATE: read Slurm's accounting (sacct, sinfo, "
                    "scontrol, sacctmgr) for the period and print the card: GPU-hours available, allocated, idle "
                    "and down, utilisation per day, jobs by end state, queue wait by job size and account class, "
                    "energy where recorded. The card names no user and no account, only account classes "
                    "(--classes). It is saved under RESULTS/usage/. usage compare CARD CARD: two cards side by "
                    "side. usage report CARD: an HTML page with plots. See docs/operators-usage.md.")
    p.add_argument("action", nargs="?", default="card", metavar="ACTION",
                   help="card (default) | compare CARD_A CARD_B | report CARD")
    p.add_argument("cards", nargs="*", metavar="CARD", help="card id (or unique prefix) in RESULTS/usage, or a card file")
    p.add_argument("--system", metavar="NAME", help="system profile name (or .toml path) the card is of")
    p.add_argument("--partition", metavar="P", help="one partition (default: every partition of the cluster)")
    p.add_argument("--since", metavar="DATE", help="start of the period, UTC: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]")
    p.add_argument("--until", metavar="DATE", help="end of the period (excluded), UTC, not in the future")
    p.add_argument("--classes", type=Path, metavar="FILE", help="TOML: default = CLASS, [accounts] NAME = CLASS")
    p.add_argument("--from", dest="captured", type=Path, metavar="DIR",
                   help="read captured command output (DIR/sacct.txt, nodes.txt, ...) instead of running Slurm's commands")
    p.add_argument("--now", metavar="DATE", help=argparse.SUPPRESS)  # the clock of captured output (benchmarks)
    p.add_argument("--results", type=Path, default=STORE, metavar="DIR", help="results store (default: results)")
    p.add_argument("--no-save", dest="save", action="store_false", help="print the card without saving it")
    add_format_option(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of the terminal")
    p.set_defaults(func=cmd_usage)


def cmd_usage(args: argparse.Namespace) -> int:
    if args.action not in ACTIONS:
        raise ConfigError(f"unknown usage action {args.action!r}; allowed: {', '.join(ACTIONS)}")
    want = {"card": 0, "compare": 2, "report": 1}[args.action]
    if len(args.cards) != want:
        raise ConfigError(f"usage {args.action} takes {want} card{'s' if want != 1 else ''}, got {len(args.cards)}")
    return {"card": _card, "compare": _compare, "report": _report}[args.action](args)


def _card(args: argparse.Namespace) -> int:
    from aifbench.cli.output import emit, err_console, write_text
    from aifbench.systems import load_system
    from aifbench.usage import card, classes, render, slurm

    for opt in ("system", "since", "until"):
        if getattr(args, opt) is None:
            raise ConfigError(f"usage needs --{opt} (see 'aifbench usage --help')")
    system = load_system(args.system).name
    since, until = card.parse_time("--since", args.since), card.parse_time("--until", args.until)
    now = card.parse_time("--now", args.now) if args.now else None
    account_classes = classes.load(args.classes)
    if args.captured is not None:
        if not args.captured.is_dir():
            raise ConfigError(f"--from {args.captured}: not a directory")
        source, label = slurm.CapturedDir(args.captured), f"captured output in {args.captured}"
    else:
        source, label = slurm.Commands(), "slurm commands"
    c = card.make(source, system=system, partition=args.partition, since=since, until=until,
                  classes=account_classes, now=now, source_label=label)
    if args.save:
        path = card.save(c, args.results)
        err_console.print(f"saved {path}", highlight=False, markup=False, soft_wrap=True)
    if args.format == "json":
        write_text(c.to_json(), args.output)
    else:
        emit(render.rows(c), _figure_cols(), args.format, render.title(c), output=args.output)
    return 0


def _figure_cols():
    from aifbench.cli.output import Col

    return [Col("partition"), Col("section"), Col("group"), Col("metric"), Col("value", kind="num"), Col("unit"),
            Col("note", kind="text")]


def _compare(args: argparse.Namespace) -> int:
    from aifbench.cli.output import Col, emit
    from aifbench.usage import card, render

    a, b = (card.load(x, args.results) for x in args.cards)
    rows = render.compare_rows(a, b)
    cols = [*([Col("partition")] if any(r["partition"] for r in rows) else []), Col("section"), Col("group"),
            Col("metric"), Col("a", a.card_id, kind="num"), Col("b", b.card_id, kind="num"), Col("unit"),
            Col("a_note", "note A", kind="text"), Col("b_note", "note B", kind="text")]
    emit(rows, cols, args.format, f"usage cards side by side: A = {render.title(a)}; B = {render.title(b)}",
         output=args.output)
    return 0


def _report(args: argparse.Namespace) -> int:
    from aifbench.atomic import atomic_write_text
    from aifbench.cli.output import err_console
    from aifbench.usage import card, render

    c = card.load(args.cards[0], args.results)
    out = args.output or Path(f"usage-{c.card_id}.html")
    atomic_write_text(out, render.html_page(c))
    err_console.print(f"wrote {out}", highlight=False, markup=False, soft_wrap=True)
    return 0
