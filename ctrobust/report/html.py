"""HTML building blocks of the report: one self-contained page, inline CSS, no scripts.

Text is escaped unless it is wrapped in :class:`Markup`; images are embedded as base64
PNG data URIs so the page opens from disk, offline, and survives being e-mailed.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Markup(str):
    """A string that is already HTML and must not be escaped again."""


def esc(value: object) -> str:
    """HTML text of a value; Markup passes through unchanged."""
    return value if isinstance(value, Markup) else html.escape(str(value))


def fmt(value: object, digits: int = 4) -> str:
    """A number at ``digits`` significant figures ('–' when missing or not finite)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int | float):
        return f"{value:.{digits}g}"
    return str(value)


def fixed(value: object, decimals: int) -> str:
    """A number with a fixed number of decimals ('–' when missing or not finite)."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:.{decimals}f}"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, caption: str | Markup, alt: str) -> Markup:
    """An embedded image with a caption saying how it was measured."""
    return Markup(
        f'<figure><img src="{data_uri(png)}" alt="{html.escape(alt, quote=True)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def table(
    headers: Sequence[str | Markup],
    rows: Iterable[Sequence[object]],
    *,
    table_id: str | None = None,
    caption: str | Markup | None = None,
) -> Markup:
    """A table; numbers are right-aligned by CSS (cells of class num)."""
    attrs = f' id="{html.escape(table_id, quote=True)}"' if table_id else ""
    parts = [f'<p class="tcap">{esc(caption)}</p>'] if caption else []
    parts.append(f"<table{attrs}>")
    parts.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>")
    parts.append("<tbody>")
    for row in rows:
        cells = []
        for cell in row:
            text = esc(cell)
            numeric = isinstance(cell, str) and _looks_numeric(cell)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return Markup("".join(parts))


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace("±", "").split()[0])
    except (ValueError, IndexError):
        return text == "–"
    return True


def paragraph(text: str | Markup, cls: str | None = None) -> Markup:
    attrs = f' class="{cls}"' if cls else ""
    return Markup(f"<p{attrs}>{esc(text)}</p>")


def bullets(items: Iterable[str | Markup]) -> Markup:
    return Markup("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")


def heading(level: int, text: str, anchor: str | None = None) -> Markup:
    attrs = f' id="{html.escape(anchor, quote=True)}"' if anchor else ""
    return Markup(f"<h{level}{attrs}>{esc(text)}</h{level}>")


@dataclass(frozen=True)
class Section:
    """A top-level part of the report, listed in the table of contents."""

    anchor: str
    title: str
    body: Markup
    children: tuple[tuple[str, str], ...] = ()


CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #d6dbe4; --accent: #1f5fa8; --warn: #8a3b00; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--ink); margin: 0; line-height: 1.45; background: #fff; }
main { max-width: 1400px; margin: 0 auto; padding: 1.5rem 2.5rem 4rem; }
p, ul, dl, figcaption { max-width: 1100px; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.35rem; border-bottom: 2px solid var(--accent); padding-bottom: .2rem;
  margin-top: 2.6rem; }
h3 { font-size: 1.1rem; margin-top: 1.8rem; }
h4 { font-size: 1rem; margin: 1.2rem 0 .4rem; color: var(--muted); }
.banner { background: #fff4e5; border-left: 5px solid var(--warn); padding: .7rem 1rem;
  margin: 1rem 0; font-weight: 600; }
.note { color: var(--muted); font-size: .92rem; }
nav.toc { background: #f5f7fa; border: 1px solid var(--line); padding: .6rem 1.2rem;
  margin: 1rem 0; columns: 2; font-size: .95rem; }
nav.toc ul { margin: 0; padding-left: 1.1rem; }
nav.toc > ul > li { break-inside: avoid; }
a { color: var(--accent); }
table { border-collapse: collapse; margin: .3rem 0 1.2rem; font-size: .9rem; }
p.tcap { font-weight: 600; margin: 1rem 0 .2rem; font-size: .92rem; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; vertical-align: top; }
th { background: #eef2f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfd; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
figure { margin: 1rem 0 1.6rem; break-inside: avoid; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid var(--line); }
figcaption { font-size: .88rem; color: var(--muted); margin-top: .35rem; }
.slice { border-top: 1px dashed var(--line); margin-top: 2rem; }
.verdict-pass, strong.pass { color: #1b6e2a; }
strong.fail { color: #a11b1b; }
@page { size: A4; margin: 12mm; }
@media print {
  main { max-width: none; padding: 0; }
  body { font-size: 10pt; }
  nav.toc { columns: 1; }
  h2 { break-after: avoid; margin-top: 1.2rem; }
  h3, h4, p.tcap { break-after: avoid; }
  table { font-size: 8pt; }
  tr, figure { break-inside: avoid; }
  figure img { max-height: 110mm; width: auto; max-width: 100%; }
  figcaption { font-size: 7.5pt; }
}
"""


def facts(pairs: Iterable[tuple[str, object]]) -> Markup:
    """A two-column definition list of labelled facts."""
    body = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs)
    return Markup(f'<dl class="facts">{body}</dl>')


def _toc(sections: Sequence[Section]) -> str:
    items = []
    for s in sections:
        sub = "".join(
            f'<li><a href="#{html.escape(a, quote=True)}">{esc(t)}</a></li>' for a, t in s.children
        )
        sub = f"<ul>{sub}</ul>" if sub else ""
        link = f'<a href="#{html.escape(s.anchor, quote=True)}">{esc(s.title)}</a>'
        items.append(f"<li>{link}{sub}</li>")
    return '<nav class="toc"><strong>Contents</strong><ul>' + "".join(items) + "</ul></nav>"


def page(title: str, intro: Markup, sections: Sequence[Section]) -> str:
    """The whole document: title, intro (header facts), table of contents, sections."""
    body = "".join(
        f'<section id="{html.escape(s.anchor, quote=True)}">'
        f"<h2>{esc(s.title)}</h2>{s.body}</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{intro}{_toc(sections)}{body}</main></body></html>\n"
    )
