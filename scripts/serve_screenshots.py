#!/usr/bin/env python
"""Screenshots of `ganforge serve` for the docs, taken with headless Chromium (Playwright).

    python scripts/serve_screenshots.py FOLDER OUT     # e.g. runs docs/images

serves FOLDER (runs and model folders; the explorer shows the first conditional model
at class 7, else the first model) and writes serve-explorer.png and serve-runs.png (the first
run's page) into OUT. Needs the serve extra, Playwright and Chromium.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path


def main(folder: str, out: str) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from ganforge.report.browser import PLAYWRIGHT_FLAGS, find_chromium
    from ganforge.serve import build_app

    server = uvicorn.Server(
        uvicorn.Config(
            build_app(folder), host="127.0.0.1", port=0, log_level="warning", log_config=None
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=find_chromium(), args=list(PLAYWRIGHT_FLAGS)
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(base + "/")
        page.wait_for_selector("#grid[data-state=ready]")
        # the first conditional model, so the picture shows the class control at work
        conditional = page.evaluate(
            """async () => {
              const listed = (await (await fetch('/api/models')).json()).models;
              for (const model of listed) {
                const url = '/api/models/' + encodeURIComponent(model.name);
                if ((await (await fetch(url)).json()).classes.length) return model.name;
              }
              return null;
            }"""
        )
        if conditional is not None:
            page.select_option("#model", conditional)
            page.wait_for_function(
                "n => (document.querySelector('#grid').dataset.query || '').includes(n)",
                arg=f"/api/models/{conditional}/",
            )
            page.wait_for_selector("#grid[data-state=ready]")
            page.wait_for_selector("#walk[data-state=ready]")
        if page.locator("#class option[value='7']").count():
            page.select_option("#class", "7")
            page.wait_for_function(
                "() => (document.querySelector('#grid').dataset.query || '').includes('class=7')"
            )
        page.wait_for_selector("#walk[data-state=ready]")
        page.screenshot(path=str(target / "serve-explorer.png"), full_page=True)
        page.click("#tab-runs")
        page.click("#runs-table tbody tr a")
        page.wait_for_selector("#loss-chart canvas")
        time.sleep(1)
        page.set_viewport_size({"width": 1200, "height": 1250})
        page.screenshot(path=str(target / "serve-runs.png"))
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main(*sys.argv[1:3])
