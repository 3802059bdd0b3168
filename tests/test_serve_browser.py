"""`ganforge serve` in a real browser: headless Chromium driven by Playwright.

The server runs in a thread (uvicorn, a free port) over a folder holding a model folder
with mnist-best's generator and a tiny run that is still "running" (no summary.json yet).
Playwright's Python package drives the system Chromium; nothing is downloaded. Checks:
the page loads with no console errors, a new seed draws new images, class 7 draws what the
project's MNIST classifier reads as 7, the walk plays, the runs browser draws a run's
curves and picks up a new log line without a reload, and traversal is refused.
"""

from __future__ import annotations

import shutil
import threading
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install -e '.[serve]'")
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="needs Playwright: pip install -e '.[serve-test]'"
)

from ganforge.report.browser import PLAYWRIGHT_FLAGS, find_chromium  # noqa: E402

# one skip for the whole file when Chromium is missing, not one per test
if find_chromium() is None:
    pytest.skip("no Chromium: apt-get install chromium", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_config, tiny_images):
    """(base URL, folder): a live server over a model folder and a run still training."""
    import uvicorn

    from ganforge import RunOptions, train
    from ganforge.pretrained import pretrained_path
    from ganforge.serve import build_app

    root = tmp_path_factory.mktemp("browser") / "runs"
    train(
        tiny_config(out_dir=str(root), run_name="live", iterations=6),
        run=RunOptions(data=tiny_images(), show_progress=False),
    )
    # as a run looks while it trains: no summary.json, a fresh log
    (root / "live" / "summary.json").unlink()
    (root / "digits").mkdir()
    shutil.copy(pretrained_path("mnist-best"), root / "digits" / "model.safetensors")
    (root.parent / "secret.json").write_text('{"secret": 1}')
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(root), host="127.0.0.1", port=0, log_level="warning", log_config=None
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", root
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    path = find_chromium()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with playwright_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=path, args=list(PLAYWRIGHT_FLAGS))
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser, served):
    """A fresh page on the served app, with every console error and page error recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(served[0] + "/")
    page.wait_for_selector("#grid[data-state=ready]", timeout=30_000)
    yield page
    page.close()


def shown_grid(page) -> bytes:
    """The bytes of the grid image the page shows (its blob URL, read back in the page)."""
    values = page.evaluate(
        "async () => { const r = await fetch(document.querySelector('#grid').src);"
        " return Array.from(new Uint8Array(await r.arrayBuffer())); }"
    )
    return bytes(values)


def wait_for_grid(page, fragment: str) -> None:
    page.wait_for_function(
        "f => { const g = document.querySelector('#grid');"
        " return g.dataset.state === 'ready' && (g.dataset.query || '').includes(f); }",
        arg=fragment,
        timeout=30_000,
    )


def test_page_loads_clean_and_a_new_seed_draws_new_images(page):
    before = shown_grid(page)
    assert "ganforge sample " in page.inner_text("#grid-command")
    page.fill("#seed", "64")
    wait_for_grid(page, "seeds=64-127")
    assert shown_grid(page) != before
    assert "--seeds 64-127" in page.inner_text("#grid-command")
    assert page.errors == []


def test_the_latest_request_wins(page):
    """Seeds typed faster than grids are drawn: the page ends on the last one, and its grid
    and command belong to it, not to a stale answer that arrived late."""
    for first in range(200, 260, 6):
        page.fill("#seed", str(first))
        page.wait_for_timeout(25)
    wait_for_grid(page, "seeds=254-317")
    page.wait_for_timeout(300)
    assert page.get_attribute("#grid", "data-query").endswith("seeds=254-317")
    assert "--seeds 254-317" in page.inner_text("#grid-command")
    # the tabs answer at once while grids are drawn
    page.click("#tab-runs")
    assert page.is_visible("#runs-table") and not page.is_visible("#explore")
    assert page.errors == []


def test_class_seven_draws_sevens(page):
    import io

    import torch
    from PIL import Image

    from ganforge.metrics.classifier import load_classifier, prepare

    page.select_option("#class", "7")
    wait_for_grid(page, "class=7")
    picture = np.asarray(Image.open(io.BytesIO(shown_grid(page))).convert("L"))[::2, ::2]
    # 8 x 8 cells of 28 px, 2 px apart (artefacts.images.make_grid), enlarged twice
    cells = [
        picture[2 + r * 30 : 30 + r * 30, 2 + c * 30 : 30 + c * 30]
        for r in range(8)
        for c in range(8)
    ]
    images = torch.from_numpy(np.stack(cells))[:, None]
    classifier, _ = load_classifier("mnist")
    with torch.no_grad():
        read = classifier(prepare(images)).argmax(1)
    assert float((read == 7).float().mean()) >= 0.9, read.tolist()
    assert "--class 7" in page.inner_text("#grid-command")
    assert page.errors == []


def test_the_walk_plays_and_pauses(page):
    page.wait_for_selector("#walk[data-state=ready]", timeout=30_000)

    def pixels() -> str:
        return page.evaluate("() => document.querySelector('#walk').toDataURL()")

    first, image = page.get_attribute("#walk", "data-frame"), pixels()
    page.click("#play")
    page.wait_for_function(
        "f => document.querySelector('#walk').dataset.frame !== f", arg=first, timeout=5_000
    )
    assert page.inner_text("#play") == "Pause" and pixels() != image
    page.click("#play")
    stopped = page.get_attribute("#walk", "data-frame")
    time.sleep(0.3)
    assert page.get_attribute("#walk", "data-frame") == stopped
    assert "ganforge interpolate " in page.inner_text("#walk-command")
    assert page.errors == []


def test_runs_browser_draws_curves_and_a_new_point_live(page, served):
    from ganforge.artefacts.rundir import RunDirectory

    page.click("#tab-runs")
    page.click("tr[data-run=live] a")
    page.wait_for_selector("#loss-chart canvas", timeout=10_000)
    assert page.get_attribute("#loss-chart", "data-points") == "3"
    assert "running" in page.inner_text("#runs-table")
    run = RunDirectory(served[1] / "live")
    record = dict(run.read_jsonl(run.metrics_file)[-1], step=8)
    run.append_jsonl(run.metrics_file, record)
    # the page polls; the point appears without a reload
    page.wait_for_function(
        "() => document.querySelector('#loss-chart').dataset.points === '4'", timeout=10_000
    )
    assert page.evaluate("() => document.querySelector('#reals').naturalWidth") > 0
    assert page.evaluate("() => document.querySelector('#run-grid').naturalWidth") > 0
    assert page.errors == []


def test_traversal_is_refused_in_the_browser(browser, served):
    page = browser.new_page()
    for path in ("..%2F..%2Fsecret.json", "%2Fetc%2Fpasswd", "escape%2F..%2F..%2Fsecret.json"):
        response = page.goto(f"{served[0]}/api/runs/live/files/{path}")
        text = page.inner_text("body")
        assert response.status == 403, (path, response.status, text)
        assert "refused" in text and "secret" not in text and "root:" not in text
    page.close()
