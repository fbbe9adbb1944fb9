"""Small pure functions that write the report's HTML: one page, CSS inline, images as data: URIs, no script."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; margin: 0;
       background: #f4f5f7; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 60px; }
header h1 { margin: 8px 0 2px; font-size: 26px; }
header p { margin: 2px 0; color: #566; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 14px 20px 18px;
          margin: 18px 0; }
h2 { font-size: 19px; margin: 4px 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; color: #334; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
figure { margin: 8px 0; }
figcaption { color: #566; font-size: 13px; }
.grids { display: flex; flex-wrap: wrap; gap: 12px; }
.grids figure { flex: 0 1 250px; }
.grids.wide figure { flex: 0 1 340px; }
.grids img { width: 100%; image-rendering: pixelated; }
.pixelated { image-rendering: pixelated; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 14px; }
th, td { border-bottom: 1px solid #e3e6eb; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
table.kv th { background: none; font-weight: 600; color: #445; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #6a5a20; background: #fff8dc; border-left: 3px solid #e0c050; padding: 6px 10px; margin: 8px 0; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 13px; font-weight: 600; }
.status.done { background: #dff3e4; color: #1d6b35; }
.status.progress { background: #e2ecfb; color: #1f4e9c; }
.status.stopped { background: #fbe2e2; color: #9c1f1f; }
ul.verdict { list-style: none; padding: 0; margin: 0; }
ul.verdict li { padding: 8px 12px; margin: 6px 0; border-radius: 6px; border-left: 5px solid #9aa5b1;
                background: #f6f7f9; }
ul.verdict li.ok { border-left-color: #2e9e55; }
ul.verdict li.alarm { border-left-color: #d43c3c; background: #fdf1f1; }
ul.verdict li.unclear { border-left-color: #c9a227; }
ul.verdict b { display: inline-block; min-width: 135px; }
.answer { font-weight: 700; text-transform: uppercase; font-size: 13px; margin-right: 6px; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """A number as a person reads it: thousands separated, floats to `digits` significant figures."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return str(value)


def data_uri_png(png: bytes) -> str:
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG image")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, *, cls: str = "", width: int | None = None) -> str:
    extra = f' class="{esc(cls)}"' if cls else ""
    extra += f' width="{int(width)}"' if width else ""
    return f'<img src="{data_uri_png(png)}" alt="{esc(alt)}"{extra}>'


def figure(png: bytes, caption: str, *, alt: str | None = None, cls: str = "") -> str:
    return f"<figure>{img(png, alt or caption, cls=cls)}<figcaption>{esc(caption)}</figcaption></figure>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            numeric = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f'<td class="num">{esc(fmt(v))}</td>' if numeric else f"<td>{esc(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(rows: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of labelled values, without a header row."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def para(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def heading(text: str) -> str:
    return f"<h3>{esc(text)}</h3>"


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


def status_badge(label: str, kind: str) -> str:
    return f'<span class="status {esc(kind)}">{esc(label)}</span>'


def verdict_list(items: Sequence[tuple[str, str, str, str]]) -> str:
    """(question, answer, text, css class) → a list; the class is ok, alarm or unclear."""
    lis = [f'<li class="{esc(c)}"><b>{esc(q)}</b><span class="answer">{esc(a)}</span>{esc(t)}</li>'
           for q, a, t, c in items]
    return '<ul class="verdict">' + "".join(lis) + "</ul>"


def page(title: str, subtitle: str, sections: Sequence[str], *, badge: str = "") -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><main>"
            f"<header><h1>{esc(title)} {badge}</h1><p>{esc(subtitle)}</p></header>\n"
            + "\n".join(sections) + "\n</main></body></html>\n")
