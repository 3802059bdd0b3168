"""The compare report in a real browser: headless Chromium renders it, every image decodes,
the tables are there, and a screenshot shows a page with content.

Chromium comes from Debian's ``chromium`` package (installed by .ci/run); without it these
tests skip and say so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.report.browser import check_in_browser, find_chromium, screenshot

# one skip for the whole file when Chromium is missing, not one per test
if find_chromium() is None:
    pytest.skip(
        "headless Chromium not installed (apt-get install chromium); .ci/run installs it",
        allow_module_level=True,
    )

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # two tiny trainings, ~15 s idle
    pytest.mark.slow,
]

TINY = {
    "data.limit": 2000,
    "batch_size": 32,
    "sample_every": 5,
    "log_every": 5,
    "checkpoint_every": 10,
    "eval_samples": 500,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory, mnist_dir):
    """A real compare report of two tiny MNIST runs (one evaluated in training), with metrics."""
    out = tmp_path_factory.mktemp("browser")
    mp = pytest.MonkeyPatch()
    mp.setenv("GANFORGE_OFFLINE", "1")
    mp.setenv("GANFORGE_CACHE", str(out / "cache"))
    common = {**TINY, "out_dir": str(out), "data.path": str(mnist_dir)}
    gan = ganforge.train(
        ganforge.load_preset("mnist-gan").with_overrides(
            {**common, "iterations": 20, "eval_every": 10, "run_name": "gan"}
        ),
        run=ganforge.RunOptions(show_progress=False),
    )
    dcgan = ganforge.train(
        ganforge.load_preset("mnist-dcgan").with_overrides(
            {**common, "iterations": 10, "model.options.width": 0.25, "run_name": "dcgan"}
        ),
        run=ganforge.RunOptions(show_progress=False),
    )
    html = out / "report.html"
    assert (
        main(
            [
                "compare",
                str(gan.run_dir),
                str(dcgan.run_dir),
                "--out",
                str(html),
                "--count",
                "500",
                "--metrics",
                "fid,precision-recall,density-coverage",
            ]
        )
        == 0
    )
    yield html
    mp.undo()


def test_every_image_loads_and_the_tables_are_there_in_chromium(report):
    seen = check_in_browser(report)
    # 2 runs x 5 grids, the loss plot, the quality plot (the GAN was evaluated), 2 GIFs
    assert seen.images == 14 and seen.loaded == 14 and seen.broken == []
    assert seen.tables == 3  # runs, grids, metrics
    # one heading row, a group row per feature space, 5 outputs per space (fid, precision, recall,
    # density, coverage)
    assert seen.metric_rows == 1 + 2 * (1 + 5)
    assert seen.height > 1500  # laid out as a long page, not collapsed


def test_a_broken_image_is_caught(report, tmp_path):
    """The check is not vacuous: a truncated data URI shows up as a broken image."""
    text = report.read_text()
    start = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(text[:start] + "iVBORw0KGgo" + text[start + 4000 :])
    seen = check_in_browser(broken)
    assert seen.loaded == seen.images - 1 and len(seen.broken) == 1


def test_the_report_screenshot_has_content(report, tmp_path):
    png = screenshot(report, tmp_path / "report.png", width=1200, height=1600)
    with Image.open(png) as image:
        assert image.size == (1200, 1600)
        pixels = torch.from_numpy(np.array(image.convert("L"))).float()
    assert pixels.std() > 20  # text, tables and grids, not a blank page
    assert (pixels < 128).float().mean() > 0.01
