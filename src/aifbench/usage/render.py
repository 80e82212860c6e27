"""The card for people: its rows, two cards side by side, and an HTML page with three plots."""

from __future__ import annotations

import html
from dataclasses import asdict

from aifbench.usage.card import Card

COMPARED_SECTIONS = ("capacity", "state", "wait_size", "wait_class", "size", "class", "energy", "gpu_util")
"""what `usage compare` sets side by side (days differ between periods, so they are left out)"""


def rows(card: Card) -> list[dict]:
    """One dict per figure, with the card id."""
    return [{"card_id": card.card_id, **asdict(f)} for f in card.figures]


def title(card: Card) -> str:
    p = card.provenance
    return (f"usage card {card.card_id}: system {p['system']}, cluster {p['cluster']} (Slurm {p['slurm_version']}), "
            f"{p['since_utc']} to {p['until_utc']}, partitions {', '.join(p['partitions'])}")


def compare_rows(a: Card, b: Card) -> list[dict]:
    """Figures of two cards side by side, matched by section, group and metric (and by partition
    when either card holds several); a figure only one card has is shown with the other empty."""
    by_part = len(a.provenance["partitions"]) > 1 or len(b.provenance["partitions"]) > 1

    def key(f):
        return (f.partition if by_part else "", f.section, f.group, f.metric)

    left = {key(f): f for f in a.figures if f.section in COMPARED_SECTIONS}
    right = {key(f): f for f in b.figures if f.section in COMPARED_SECTIONS}
    out = []
    for k in [*left, *(k for k in right if k not in left)]:
        fa, fb = left.get(k), right.get(k)
        unit = (fa or fb).unit
        out.append({"partition": k[0] or None, "section": k[1], "group": k[2], "metric": k[3], "unit": unit,
                    "a": fa.value if fa else None, "b": fb.value if fb else None,
                    "a_note": fa.note if fa else "not in this card", "b_note": fb.note if fb else "not in this card"})
    return out


def _figure(card: Card, partition: str):
    """The three plots of one partition: utilisation per day, wait by size class, GPU-hours by class."""
    from matplotlib.figure import Figure as MplFigure

    from aifbench.usage.compute import SIZE_CLASSES

    fig = MplFigure(figsize=(13, 3.8), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    days = [f for f in card.figures if f.partition == partition and f.section == "day" and f.metric == "utilisation_pct"]
    ax1.bar([f.group[5:] for f in days], [f.value or 0.0 for f in days], color="#4477aa")
    ax1.set_ylabel("utilisation %")
    ax1.set_ylim(0, 100)
    ax1.set_title("utilisation per day (UTC)")
    ax1.tick_params(axis="x", labelrotation=90, labelsize=7)
    labels = [c[0] for c in SIZE_CLASSES]
    for q, color in ((50, "#66ccee"), (90, "#4477aa"), (99, "#222255")):
        values = [card.value(partition, "wait_size", g, f"wait_p{q}_s") for g in labels]
        ax2.plot(range(len(labels)), [v / 3600 if v is not None else float("nan") for v in values], "o-",
                 color=color, label=f"p{q}")
    ax2.set_xticks(range(len(labels)), labels)
    ax2.set_ylabel("queue wait, h")
    ax2.set_xlabel("job size, GPUs")
    ax2.set_title("queue wait by job size")
    ax2.legend()
    classes = [f for f in card.figures if f.partition == partition and f.section == "class" and f.metric == "gpu_h"]
    ax3.barh([f.group for f in classes], [f.value or 0.0 for f in classes], color="#228833")
    ax3.set_xlabel("GPU-hours allocated")
    ax3.set_title("GPU-hours by account class")
    return fig


def html_section(card: Card, level: int = 2) -> str:
    """The card as an HTML fragment: provenance, the three plots per partition, every figure but
    the per-day ones (those are plotted)."""
    from aifbench.analysis.report import png_data_uri

    p, h, sub = card.provenance, f"h{level}", f"h{level + 1}"
    parts = [f"<{h}>Utilisation card {html.escape(card.card_id)}</{h}>",
             "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                                 for k, v in p.items() if k != "commands") + "</table>",
             "<details><summary>commands</summary><pre>" + html.escape("\n".join(p["commands"])) + "</pre></details>"]
    for partition in p["partitions"]:
        parts += [f"<{sub}>partition {html.escape(partition)}</{sub}>",
                  f"<img alt='utilisation per day, wait by job size, GPU-hours by account class' "
                  f"src='{png_data_uri(_figure(card, partition))}'>"]
    parts.append("<table><tr><th>partition</th><th>section</th><th>group</th><th>metric</th>"
                 "<th>value</th><th>unit</th><th>note</th></tr>")
    for f in card.figures:
        if f.section == "day":
            continue
        value = "" if f.value is None else f"{f.value:.6g}"
        parts.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in (f.partition, f.section, f.group, f.metric))
                     + f"<td class=n>{value}</td><td>{html.escape(f.unit)}</td><td>{html.escape(f.note)}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


def html_document(sections: list[str], title: str) -> str:
    """A self-contained HTML page of card sections."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
            "td.n{text-align:right}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n")


def html_page(card: Card) -> str:
    """A self-contained HTML page of one card."""
    return html_document([html_section(card, 1)], card.card_id)
