"""Sample grids and the training GIF: every image lands in its own cell, every frame in order.

The expected pictures are laid out by hand from the documented geometry (2 pixels of black
padding around each cell, row-major cells, small images enlarged by an integer factor with
nearest-neighbour), then compared pixel for pixel with the PNG or GIF read back.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from ganforge.artefacts.gif import save_gif
from ganforge.artefacts.images import save_grid, save_individual

PAD = 2


def marked_images(count: int, channels: int, size: int) -> torch.Tensor:
    """Image i is flat grey 20 * (i + 1) with a white top-left pixel, so both the cell and
    the orientation of each image show in the grid."""
    images = torch.zeros(count, channels, size, size, dtype=torch.uint8)
    for i in range(count):
        images[i] = 20 * (i + 1)
        images[i, :, 0, 0] = 255
    return images


def expected_grid(images: torch.Tensor, rows: int, cols: int, upscale: int) -> np.ndarray:
    n, c, h, w = images.shape
    grid = np.zeros((rows * (h + PAD) + PAD, cols * (w + PAD) + PAD, c), np.uint8)
    for i in range(n):
        top, left = PAD + (i // cols) * (h + PAD), PAD + (i % cols) * (w + PAD)
        grid[top : top + h, left : left + w] = images[i].permute(1, 2, 0).numpy()
    return grid.repeat(upscale, axis=0).repeat(upscale, axis=1)


# rows asked for, then the rows and columns expected: square by default (9 -> 3x3, and 5 -> 3 rows
# of 2 with the last cell left black)
@pytest.mark.parametrize(
    "count, asked, rows, cols", [(6, 2, 2, 3), (9, None, 3, 3), (5, None, 3, 2)]
)
def test_grid_puts_each_image_in_its_cell(tmp_path, count, asked, rows, cols):
    images = marked_images(count, 1, 16)
    path = save_grid(images, tmp_path / "grid.png", rows=asked)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "L"
        size = (cols * (16 + PAD) + PAD) * 4, (rows * (16 + PAD) + PAD) * 4  # 16 px enlarged x4
        assert png.size == size
        read = np.asarray(png)[:, :, None]
    assert np.array_equal(read, expected_grid(images, rows, cols, upscale=4))


def test_colour_grid_keeps_the_channels_and_large_images_stay_their_size(tmp_path):
    images = marked_images(4, 3, 64)
    images[:, 1] //= 2  # green differs from red and blue: channel order shows
    path = save_grid(images, tmp_path / "grid.png")
    with Image.open(path) as png:
        assert png.mode == "RGB" and png.size == (2 * 66 + PAD, 2 * 66 + PAD)  # 64 px: not enlarged
        read = np.asarray(png)
    assert np.array_equal(read, expected_grid(images, 2, 2, upscale=1))


def test_individual_images_are_numbered_in_order(tmp_path):
    images = marked_images(3, 1, 8)
    paths = save_individual(images, tmp_path / "pngs", prefix="digit")
    assert [p.name for p in paths] == ["digit_0000.png", "digit_0001.png", "digit_0002.png"]
    for image, path in zip(images, paths, strict=True):
        with Image.open(path) as png:
            assert np.array_equal(np.asarray(png), image[0].numpy())


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_png_files_are_lossless_for_any_pixels(tmp_path, channels, mode):
    """ganforge writes PNGs itself (a per-row filter choice, then zlib); noise, gradients and
    flat areas exercise every filter type, and any PNG reader gets back exactly the pixels."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, channels, 20, 20), dtype=torch.uint8, generator=generator)
    images[1] = torch.arange(20, dtype=torch.uint8).mul(12)[None, :, None]
    images[2] = 200
    paths = save_individual(images, tmp_path / "pngs")
    for image, path in zip(images, paths, strict=True):
        with Image.open(path) as png:
            assert png.format == "PNG" and png.mode == mode
            read = np.asarray(png).reshape(20, 20, channels)
        assert np.array_equal(read, image.permute(1, 2, 0).numpy())


# ---- the GIF -------------------------------------------------------------------------------------
def grey_frames(folder, values: list[int], size: int = 12) -> list:
    paths = []
    for i, value in enumerate(values):
        array = np.full((size, size), value, np.uint8)
        array[0, : i + 1] = 255  # a bar that grows by one pixel per frame: no two frames alike
        paths.append(folder / f"frame_{i:03d}.png")
        Image.fromarray(array).save(paths[-1])
    return paths


def read_frames(path) -> tuple[list[np.ndarray], list[int]]:
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.info.get("loop") == 0  # loops forever
        frames, durations = [], []
        for frame in ImageSequence.Iterator(gif):
            frames.append(np.asarray(frame.convert("L")).copy())
            durations.append(frame.info["duration"])
    return frames, durations


def test_gif_holds_the_frames_in_order_and_pauses_on_the_last(tmp_path):
    values = [0, 60, 120, 180, 240]
    paths = grey_frames(tmp_path, values)
    gif = save_gif(paths, tmp_path / "training.gif", duration_ms=100)
    frames, durations = read_frames(gif)
    assert len(frames) == len(values)
    for frame, source in zip(frames, paths, strict=True):
        with Image.open(source) as png:
            assert np.array_equal(frame, np.asarray(png))
    assert durations == [100, 100, 100, 100, 800]


def test_long_runs_are_thinned_evenly_keeping_the_first_and_last_frame(tmp_path):
    paths = grey_frames(tmp_path, [10 * i for i in range(10)])
    frames, _ = read_frames(save_gif(paths, tmp_path / "training.gif", max_frames=4))
    kept = [0, 3, 6, 9]  # round(i * 9 / 3)
    assert len(frames) == len(kept)
    for frame, index in zip(frames, kept, strict=True):
        with Image.open(paths[index]) as png:
            assert np.array_equal(frame, np.asarray(png))


def test_large_frames_are_shrunk_and_no_frames_write_nothing(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(np.full((600, 300), 90, np.uint8)).save(path)
    with Image.open(save_gif([path], tmp_path / "big.gif", max_side=200)) as gif:
        assert gif.size == (100, 200)  # the longer side fits, the aspect ratio is kept
    assert save_gif([], tmp_path / "none.gif") is None
    assert not (tmp_path / "none.gif").exists()


def test_raw_losses_keep_every_iteration_for_the_notebooks_plots(train_tiny):
    """raw_losses (the faithful MNIST presets): each metrics.jsonl record also holds the
    values of every iteration since the one before, whose mean is the record's value, and
    losses.png plots them raw."""
    import json

    from ganforge.artefacts.plots import every_iteration

    result = train_tiny("raw", iterations=6, log_every=3, raw_losses=True)
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if "d_loss" in r]
    assert [len(r["raw"]["g_loss"]) for r in records] == [3, 3]
    for r in records:
        assert sum(r["raw"]["d_loss"]) / 3 == pytest.approx(r["d_loss"], abs=1e-5)
    steps, values = every_iteration(records, "g_loss")
    assert steps == [1, 2, 3, 4, 5, 6] and len(values) == 6
    assert (result.run_dir / "losses.png").is_file()
