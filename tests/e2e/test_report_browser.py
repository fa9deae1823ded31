"""report.html in a real headless browser (Chromium, Debian's package; `make test` installs it): the page of an
evaluation and of a comparison loads without a script error, its tables have rows, a click sorts, and a screenshot
of it shows a page; a page with a broken script is caught."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib import image as mpimg

from pipeline.__main__ import main as pipeline_main
from tests.helpers import corrupted_predictions

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def browser() -> str:
    found = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if found is None:
        pytest.fail("no headless browser: install Chromium (make browser: apt-get install chromium), which the "
                    "report test needs")
    return found


def _headless(browser: str, page: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                           "--virtual-time-budget=5000", *extra, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)


def _dom(browser: str, page: Path) -> str:
    result = _headless(browser, page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _check_page(browser: str, page: Path, tmp_path: Path, min_rows: int) -> None:
    dom = _dom(browser, page)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-ready="1"' in body and "data-error" not in body, body
    assert int(re.search(r'data-rows="(\d+)"', body).group(1)) >= min_rows
    shot = tmp_path / f"{page.parent.name}.png"
    result = _headless(browser, page, f"--screenshot={shot}", "--window-size=1280,1800")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.std() > 0.05  # a page with text, tables and pictures, not blank


def test_the_evaluation_and_comparison_reports_render_in_a_browser(browser: str, tiny_dataset: Path,
                                                                  tmp_path: Path) -> None:
    good = corrupted_predictions(tiny_dataset, tmp_path / "good", 0)
    bad = corrupted_predictions(tiny_dataset, tmp_path / "bad", 3)
    assert pipeline_main(["evaluate", str(bad), str(tiny_dataset), "--out", str(tmp_path / "eval")]) == 0
    page = tmp_path / "eval" / "report.html"
    assert page.read_text().count("data:image/png;base64") >= 2  # the box plot and the overlays, embedded
    _check_page(browser, page, tmp_path, min_rows=4)
    assert pipeline_main(["compare", str(tiny_dataset), str(good), str(bad), "--out", str(tmp_path / "cmp")]) == 0
    _check_page(browser, tmp_path / "cmp" / "report.html", tmp_path, min_rows=2 + 2 + 1 + 4)


def test_a_click_sorts_a_table_and_a_script_error_is_caught(browser: str, tiny_dataset: Path, tmp_path: Path) -> None:
    bad = corrupted_predictions(tiny_dataset, tmp_path / "bad", 2)
    assert pipeline_main(["evaluate", str(bad), str(tiny_dataset), "--out", str(tmp_path / "eval"),
                          "--no-pictures"]) == 0
    page = (tmp_path / "eval" / "report.html").read_text()
    clicked = tmp_path / "clicked" / "report.html"
    clicked.parent.mkdir()
    # a click on the per-case table's "mean Dice" header, then the first row's value written into the body
    probe = ("<script>document.addEventListener('DOMContentLoaded', () => setTimeout(() => {"
             "const t = document.querySelectorAll('table.sortable')[0];"
             "const th = Array.from(t.tHead.rows[0].cells).find(c => c.textContent === 'mean Dice'); th.click();"
             "document.body.setAttribute('data-first', t.tBodies[0].rows[0].cells[th.cellIndex].textContent);"
             "}, 0));</script></body>")
    clicked.write_text(page.replace("</body>", probe))
    first = re.search(r'data-first="([^"]*)"', _dom(browser, clicked)).group(1)
    values = [float(v) for v in re.findall(r'<tr><td data-value="[^"]*">[^<]*</td><td data-value="([^"]+)"', page)]
    assert float(first) == pytest.approx(min(values), abs=1e-4)  # ascending on the first click
    broken = tmp_path / "broken" / "report.html"
    broken.parent.mkdir()
    broken.write_text(page.replace("</body>", "<script>undefinedFunction();</script></body>"))
    assert "data-error" in re.search(r"<body([^>]*)>", _dom(browser, broken)).group(1)
