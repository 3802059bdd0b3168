"""Open a report in headless Chromium: does it render, does every image load, are the tables there?

Parsing the HTML proves the markup is well formed, not that a browser shows it: a data
URI with a wrong MIME type, a truncated base64 payload or a style that hides a table all
pass a parser. Here a real browser loads a copy of the report with a tiny script added
that, once the page has loaded, counts the images that decoded (``naturalWidth > 0``)
and the tables, and writes the counts into the page; ``--dump-dom`` returns the page as
the browser built it, and the counts are read back from there. ``--screenshot`` draws it.

Chromium is found as ``chromium`` (Debian's package) or ``chromium-browser`` or
``google-chrome``; :func:`find_chromium` returns None when none is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
# Chromium driven by Playwright (tests/test_serve_browser.py, scripts/serve_screenshots.py):
# headless without a sandbox or GPU, and nothing that reaches the network on its own
PLAYWRIGHT_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
PROBE = """<script>
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.alt; }).join('|');
  var tables = document.querySelectorAll('table').length;
  var rows = document.querySelectorAll('table.metrics tr').length;
  var marker = document.createElement('div');
  marker.id = 'ganforge-browser-check';
  marker.textContent = 'images=' + images.length + ';loaded=' + loaded + ';tables=' + tables +
      ';metric_rows=' + rows + ';height=' + document.body.scrollHeight +
      ';broken=' + broken + ';end';
  document.body.appendChild(marker);
});
</script>"""
MARKER = re.compile(
    r"images=(\d+);loaded=(\d+);tables=(\d+);metric_rows=(\d+);height=(\d+);broken=(.*?);end"
)


@dataclass(frozen=True)
class BrowserCheck:
    """What Chromium saw after loading the report."""

    images: int
    loaded: int
    tables: int
    metric_rows: int
    # rendered page height in CSS pixels
    height: int
    # alt texts of images that did not decode
    broken: list[str]


def find_chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="ganforge-chromium-") as profile:
        return subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def check_in_browser(
    html_path: Path, browser: str | None = None, timeout: float = 120
) -> BrowserCheck:
    """Load a copy of the report with the probe; the counts the browser wrote into the page."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    text = Path(html_path).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="ganforge-report-") as folder:
        probed = Path(folder) / "probed.html"
        probed.write_text(text.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
        result = _run(
            browser, ["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()], timeout
        )
    match = MARKER.search(result.stdout)
    if match is None:
        raise RuntimeError(
            f"Chromium did not run the report's check (exit {result.returncode}): "
            f"{result.stderr.strip()[-300:]}"
        )
    images, loaded, tables, rows, height = (int(match.group(i)) for i in range(1, 6))
    return BrowserCheck(
        images, loaded, tables, rows, height, [b for b in match.group(6).split("|") if b]
    )


def screenshot(
    html_path: Path,
    png_path: Path,
    width: int = 1400,
    height: int = 2400,
    browser: str | None = None,
    timeout: float = 120,
) -> Path:
    """Draw the report at `width` x `height` CSS pixels into a PNG."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    png_path = Path(png_path).resolve()
    result = _run(
        browser,
        [
            f"--window-size={width},{height}",
            "--virtual-time-budget=10000",
            f"--screenshot={png_path}",
            Path(html_path).resolve().as_uri(),
        ],
        timeout,
    )
    if not png_path.is_file():
        raise RuntimeError(
            f"Chromium wrote no screenshot (exit {result.returncode}): "
            f"{result.stderr.strip()[-300:]}"
        )
    return png_path
