"""Every relative link of README.md and docs/*.md points at a file that exists and, with a `#anchor`,
at a heading of that file (anchors as GitHub makes them from headings). Links inside code blocks
and code spans are text, not links; web addresses are not fetched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def unfenced(text: str) -> str:
    """`text` without its fenced code blocks (whose `#` lines are not headings)."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)


def prose(text: str) -> str:
    """`text` without fenced code blocks and code spans (whose brackets are not links)."""
    text = unfenced(text)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text, flags=re.S)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation but `-` and `_` dropped,
    spaces as `-`, a repeated heading suffixed -1, -2, ... (github/cmark-gfm's toc filter rules)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", unfenced(text), re.M):
        heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """'target: why' for each relative link of `page` that does not resolve."""
    text = page.read_text()
    body = prose(text)
    bad = []
    for target in LINK.findall(body) + REF_DEF.findall(body):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif anchor and dest.is_file() and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_every_docs_page_is_reachable_from_the_index():
    index = (REPO / "docs" / "README.md").read_text()
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(prose(index))}
    assert {p.name for p in PAGES if p.parent.name == "docs" and p.name != "README.md"} <= linked
    assert "docs/README.md" in (REPO / "README.md").read_text()


def test_the_checker_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, with: punctuation\n\n## Twice\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md) [ok](other.md#a-code-heading-with-punctuation) [ok](other.md#twice-1)\n"
                    "[self](#local) `[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n\n"
                    "# Local\n[gone](gone.md) [bad anchor](other.md#nothing) ![img](images/x.png)\n"
                    "[web](https://example.org/x.md)\n")
    assert broken_links(page) == [f"gone.md: no file {tmp_path / 'gone.md'}",
                                  "other.md#nothing: no heading with anchor #nothing in other.md",
                                  f"images/x.png: no file {tmp_path / 'images' / 'x.png'}"]
