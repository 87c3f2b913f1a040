"""A small document model (headings, paragraphs, lists, tables, images) written out as Markdown or HTML.

The report is built once as blocks; :func:`to_markdown` references each image by its file name,
:func:`to_html` embeds it as a base64 ``data:`` URI with an inline stylesheet, so the page opens from
disk with no network.
"""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Strong:
    """Emphasised text; ``tone`` ("yes", "no" or "") colours a verdict in HTML."""

    text: str
    tone: str = ""


Inline = str | Strong


@dataclass(frozen=True)
class Heading:
    """A section heading (level 1–4)."""

    level: int
    text: str


@dataclass(frozen=True)
class Para:
    """A paragraph of text runs."""

    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Bullets:
    """A bulleted list; each item is a tuple of text runs."""

    items: tuple[tuple[Inline, ...], ...]


@dataclass(frozen=True)
class Table:
    """A table of strings with an optional caption above it; rows in ``highlight`` are emphasised in HTML."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    highlight: tuple[int, ...] = ()


@dataclass(frozen=True)
class Image:
    """A PNG plot: written as ``filename`` next to REPORT.md, embedded in the HTML."""

    filename: str
    title: str
    png: bytes


Block = Heading | Para | Bullets | Table | Image


def para(*parts: Inline) -> Para:
    """A :class:`Para` from text runs."""
    return Para(tuple(parts))


def anchor(text: str) -> str:
    """An HTML id for a heading: lower-case words joined by ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


# --- Markdown -------------------------------------------------------------------------------------------

def _md_text(text: str) -> str:
    return re.sub(r"([\\`*<])", r"\\\1", text).replace("\n", " ")


def _md_inline(parts: Sequence[Inline]) -> str:
    return "".join(f"**{_md_text(p.text)}**" if isinstance(p, Strong) else _md_text(p) for p in parts)


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|") or " "


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {_md_text(block.text)}"
    if isinstance(block, Para):
        return _md_inline(block.parts)
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md_inline(item)}" for item in block.items)
    if isinstance(block, Table):
        lines = [f"*{_md_text(block.caption)}*", ""] if block.caption else []
        lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
        lines.append("|" + "|".join("---" for _ in block.header) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    return f"![{_md_text(block.title)}]({block.filename})"


def to_markdown(blocks: Sequence[Block]) -> str:
    """The document as GitHub-flavoured Markdown; images by relative file name."""
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


# --- HTML -----------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
       max-width: 1250px; margin: 1.5em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { font-size: 1.35em; margin-top: 2em; border-bottom: 1px solid #bbb; padding-bottom: .15em; }
h3 { font-size: 1.12em; margin-top: 1.5em; }
h4 { font-size: 1em; margin-top: 1.2em; }
div.scroll { overflow-x: auto; margin: 0 0 1.2em; }
table { border-collapse: collapse; font-size: .86em; }
p.caption { font-style: italic; margin: .8em 0 .3em; font-size: .92em; }
th, td { border: 1px solid #d0d0d0; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
tr:nth-child(even) td { background: #f8f9fa; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.hl td { background: #fff3cd; font-weight: 600; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #e2e2e2; }
figcaption { font-size: .85em; color: #555; }
strong.yes { color: #0b6e3a; }
strong.no { color: #8a4b00; }
nav { background: #f4f6f8; border: 1px solid #dde; padding: .4em 1em; font-size: .9em; }
nav a { margin-right: 1.1em; }
ul { padding-left: 1.4em; }
li { margin: .35em 0; }
"""


def _h_inline(parts: Sequence[Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, Strong):
            cls = f' class="{html.escape(p.tone)}"' if p.tone else ""
            out.append(f"<strong{cls}>{html.escape(p.text)}</strong>")
        else:
            out.append(html.escape(p))
    return "".join(out)


def _heading_ids(blocks: Sequence[Block]) -> list[str]:
    """A unique HTML id per heading, in document order (``results``, ``results-2``, ...)."""
    seen: dict[str, int] = {}
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            base = anchor(b.text)
            seen[base] = seen.get(base, 0) + 1
            out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def _h_block(block: Block, ident: str) -> str:
    if isinstance(block, Heading):
        return f'<h{block.level} id="{ident}">{html.escape(block.text)}</h{block.level}>'
    if isinstance(block, Para):
        return f"<p>{_h_inline(block.parts)}</p>"
    if isinstance(block, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{_h_inline(item)}</li>" for item in block.items) + "\n</ul>"
    if isinstance(block, Table):
        cap = f'<p class="caption">{html.escape(block.caption)}</p>\n' if block.caption else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
        body = "\n".join(("<tr class=\"hl\">" if i in block.highlight else "<tr>")
                         + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                         for i, row in enumerate(block.rows))
        return (f'{cap}<div class="scroll"><table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n'
                "</tbody></table></div>")
    data = base64.b64encode(block.png).decode("ascii")
    title = html.escape(block.title)
    return (f'<figure><img alt="{title}" src="data:image/png;base64,{data}">'
            f"<figcaption>{title} ({html.escape(block.filename)})</figcaption></figure>")


def to_html(blocks: Sequence[Block], title: str) -> str:
    """The document as one self-contained HTML page: inline CSS, images as ``data:`` URIs, no external URL.

    A navigation bar of the level-2 headings (in-page ``#`` links) follows the first heading.
    """
    ids = iter(_heading_ids(blocks))
    body, links = [], []
    for b in blocks:
        ident = next(ids) if isinstance(b, Heading) else ""
        body.append(_h_block(b, ident))
        if isinstance(b, Heading) and b.level == 2:
            links.append(f'<a href="#{ident}">{html.escape(b.text)}</a>')
    if links:
        body.insert(1 if blocks and isinstance(blocks[0], Heading) else 0, f"<nav>{' '.join(links)}</nav>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
