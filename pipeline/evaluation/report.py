"""``report.html``: one self-contained page per evaluation or comparison (no server, no network: pictures embedded
as data URLs, tables sortable by a click on a column), which opens in any browser and can be mailed as it is.

`Report` collects sections (paragraphs, tables, pictures) and `Report.write` renders them. The page's script marks
``<body data-ready="1" data-rows="N">`` once its tables are built (N: rows of the sortable tables) and
``data-error="..."`` if any script error happens, so that a test in a headless browser can tell a broken page.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.files import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; cursor: pointer; user-select: none; } th.sorted-asc::after { content: " \\25B2"; }
th.sorted-desc::after { content: " \\25BC"; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; } .note { color: #555; font-size: 0.9em; }
"""

_SCRIPT = """
window.onerror = function (msg) { document.body.setAttribute('data-error', String(msg)); };
function cellValue(td) {
  const v = td.getAttribute('data-value') ?? td.textContent.trim();
  const n = parseFloat(v);
  return isNaN(n) ? v.toLowerCase() : n;
}
function sortTable(th) {
  const table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  const asc = !th.classList.contains('sorted-asc');
  table.querySelectorAll('th').forEach(h => h.classList.remove('sorted-asc', 'sorted-desc'));
  th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
    if (typeof x === 'number' && typeof y === 'number') return asc ? x - y : y - x;
    return asc ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
  });
  rows.forEach(r => body.appendChild(r));
}
document.addEventListener('DOMContentLoaded', function () {
  let n = 0;
  document.querySelectorAll('table.sortable').forEach(function (t) {
    t.querySelectorAll('th').forEach(th => th.addEventListener('click', () => sortTable(th)));
    n += t.tBodies[0].rows.length;
  });
  document.body.setAttribute('data-rows', String(n));
  document.body.setAttribute('data-ready', '1');
});
"""


def _cell(value: object, digits: int = 4) -> tuple[str, str]:
    """(text, sort value) of a table cell: numbers rounded to ``digits``, NaN and None as an empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    if isinstance(value, float):
        return f"{value:.{digits}f}", repr(value)
    return str(value), str(value)


class Report:
    """An HTML page built section by section; `write` saves it (atomically) as one file."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def preformatted(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[object]], *, sortable: bool = True,
              digits: int = 4) -> None:
        """A table of ``rows`` (numbers rounded to ``digits``); ``sortable``: a click on a header sorts by it."""
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = []
        for row in rows:
            cells = []
            for value in row:
                text, key = _cell(value, digits)
                cells.append(f'<td data-value="{html.escape(key)}">{html.escape(text)}</td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
        cls = ' class="sortable"' if sortable else ""
        self.parts.append(f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def pictures(self, paths: Sequence[tuple[str | os.PathLike, str]]) -> None:
        """PNG files embedded (as data URLs) with their captions; missing files are left out."""
        figures = []
        for path, caption in paths:
            p = Path(path)
            if not p.is_file():
                continue
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            figures.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.parts.append("<div>" + "".join(figures) + "</div>")

    def render(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script>"
                f"</head><body><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</body></html>\n")

    def write(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, self.render())
