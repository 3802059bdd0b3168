"""Experiment loggers: TensorBoard event files read back, and the CSV twin of metrics.jsonl."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch

from ganforge.errors import ConfigError


def _grid_images(count: int = 4, size: int = 8) -> torch.Tensor:
    values = torch.arange(count * size * size).remainder(256).to(torch.uint8)
    return values.reshape(count, 1, size, size)


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---- TensorBoard -------------------------------------------------------------------------------
def test_tensorboard_event_file_reads_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ganforge.loggers import make_loggers

    (logger,) = make_loggers(["tensorboard"], tmp_path)
    logger.log_scalars(1, {"step": 1, "d_loss": 0.75, "g_loss": 1.5, "images_per_s": 120.0})
    logger.log_scalars(2, {"d_loss": 0.5, "g_loss": 2.0, "note": "text is skipped"})
    logger.log_image(2, "samples", _grid_images(), rows=2)
    logger.close()

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"d_loss", "g_loss", "images_per_s"}
    assert [(e.step, e.value) for e in events.Scalars("d_loss")] == [(1, 0.75), (2, 0.5)]
    (image,) = events.Images("samples")
    assert image.step == 2
    assert (image.width, image.height) == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)  # 2x2 cells, 2 px padding


def test_tensorboard_resume_hides_what_the_interrupted_run_logged_later(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ganforge.loggers import TensorBoardLogger

    first = TensorBoardLogger(tmp_path)
    for step in (10, 20, 30):
        first.log_scalars(step, {"d_loss": float(step)})
    first.close()
    resumed = TensorBoardLogger(tmp_path, resume_step=20)  # the checkpoint was at step 20
    resumed.log_scalars(30, {"d_loss": -1.0})
    resumed.close()

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("d_loss")] == [
        (10, 10.0),
        (20, 20.0),
        (30, -1.0),
    ]


def test_tensorboard_without_the_package_is_one_clear_line(tmp_path, monkeypatch):
    from ganforge.loggers import logger_problems, make_loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"ganforge\[tensorboard\]") as caught:
        make_loggers(["csv", "tensorboard"], tmp_path)
    assert "\n" not in str(caught.value)
    assert logger_problems(["csv"]) == []
    assert not (tmp_path / "metrics.csv").exists()  # refused before any logger started


def test_unknown_logger_names_the_valid_ones(tmp_path):
    from ganforge.loggers import make_loggers

    expected = "unknown logger 'wandb'; choose one of: csv, tensorboard"
    with pytest.raises(ConfigError, match=expected):
        make_loggers(["wandb"], tmp_path)


# ---- CSV --------------------------------------------------------------------------------------
def test_csv_header_grows_when_new_values_appear(tmp_path):
    from ganforge.loggers import CsvLogger

    logger = CsvLogger(tmp_path)
    logger.log_scalars(25, {"step": 25, "d_loss": 0.7, "g_loss": 0.8})
    logger.log_scalars(50, {"d_loss": 0.6, "g_loss": 0.9})
    last = _read_csv(tmp_path / "metrics.csv")[-1]
    assert last == {"step": "50", "d_loss": "0.6", "g_loss": "0.9"}
    logger.log_scalars(50, {"fid": 41.25})  # evaluation at the same step joins its row
    logger.log_scalars(75, {"d_loss": 0.5, "g_loss": 1.0})
    logger.close()

    text = (tmp_path / "metrics.csv").read_text()
    assert text.splitlines()[0] == "step,d_loss,g_loss,fid"
    rows = _read_csv(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == ["25", "50", "75"]
    assert [r["fid"] for r in rows] == ["", "41.25", ""]
    assert float(rows[2]["g_loss"]) == 1.0


def test_csv_values_round_trip_exactly(tmp_path):
    from ganforge.loggers import CsvLogger

    value = 0.1 + 0.2  # 0.30000000000000004: repr keeps every digit
    CsvLogger(tmp_path).log_scalars(1, {"d_loss": value, "nan": float("nan")})
    row = _read_csv(tmp_path / "metrics.csv")[0]
    assert float(row["d_loss"]) == value and row["nan"] == "nan"


def test_csv_resume_drops_rows_after_the_checkpoint(tmp_path):
    from ganforge.loggers import CsvLogger

    first = CsvLogger(tmp_path)
    for step in (10, 20, 30, 40):
        first.log_scalars(step, {"d_loss": float(step)})
    first.close()
    resumed = CsvLogger(tmp_path, resume_step=20)
    resumed.log_scalars(30, {"d_loss": -3.0})
    rows = _read_csv(tmp_path / "metrics.csv")
    assert [(r["step"], r["d_loss"]) for r in rows] == [
        ("10", "10.0"),
        ("20", "20.0"),
        ("30", "-3.0"),
    ]


def test_csv_without_resume_step_still_replaces_a_rewound_tail(tmp_path):
    from ganforge.loggers import CsvLogger

    logger = CsvLogger(tmp_path)
    for step in (10, 20, 30):
        logger.log_scalars(step, {"d_loss": float(step)})
    logger.log_scalars(20, {"d_loss": 0.0})
    assert [r["step"] for r in _read_csv(tmp_path / "metrics.csv")] == ["10", "20"]
    assert _read_csv(tmp_path / "metrics.csv")[-1]["d_loss"] == "0.0"


def test_make_loggers_builds_each_named_logger_once(tmp_path):
    from ganforge.loggers import CsvLogger, make_loggers

    loggers = make_loggers(["csv", "csv"], tmp_path)
    assert len(loggers) == 1 and isinstance(loggers[0], CsvLogger)
    loggers[0].log_image(1, "samples", _grid_images(), rows=2)  # accepted, writes nothing
    assert list(tmp_path.iterdir()) == []


def test_a_training_run_with_logger_tensorboard_writes_events_and_a_csv_twin(train_tiny):
    """--logger tensorboard through the real loop: losses and grids in the event file, and
    metrics.csv holding the same rows as metrics.jsonl."""
    pytest.importorskip("tensorboard")
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train_tiny("logged", loggers=["tensorboard"])
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("d_loss")] == [2, 4, 6]
    assert events.Tags()["images"]
    rows = (result.run_dir / "metrics.csv").read_text().splitlines()
    logged = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 1 + len([r for r in logged if "d_loss" in r])
