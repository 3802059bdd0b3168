"""Presets and settings: every documented recipe loads, overrides work, bad settings fail early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganforge.config import TrainConfig
from ganforge.errors import ConfigError
from ganforge.presets import load_config_file, load_preset, preset_names


def test_documented_recipes_are_presets_with_the_notebook_settings():
    gan = load_preset("mnist-gan").validate()
    assert (gan.iterations, gan.batch_size, gan.d_half_batch, gan.sample_every, gan.grid_size) == (
        30000,
        64,
        True,
        200,
        5,
    )
    assert (gan.optim.lr_g, gan.optim.lr_d, gan.optim.beta1) == (2e-4, 2e-4, 0.5)
    assert gan.model.arch == "gan" and gan.batch_order == "random"
    dcgan = load_preset("mnist-dcgan").validate()
    assert (dcgan.epochs, dcgan.batch_size, dcgan.grid_size, dcgan.sample_every) == (60, 128, 7, 1)
    assert (dcgan.noise, dcgan.noise_std, dcgan.grid_noise, dcgan.batch_order) == (
        "normal",
        0.5,
        "uniform",
        "sequential",
    )


def test_every_preset_is_valid():
    assert {"demo", "mnist-gan", "mnist-dcgan"} <= set(preset_names())
    for name in preset_names():
        load_preset(name).validate()


def test_overrides_convert_command_line_strings():
    config = load_preset("mnist-dcgan").with_overrides({"optim.lr_g": "1e-3", "batch_size": "64"})
    assert config.optim.lr_g == 1e-3 and config.batch_size == 64


def test_setting_iterations_replaces_the_epoch_schedule_and_back():
    config = load_preset("mnist-dcgan").with_overrides({"iterations": 100}).validate()
    assert (config.epochs, config.iterations, config.schedule_unit) == (None, 100, "iteration")
    config = config.with_overrides({"epochs": 2}).validate()
    assert (config.epochs, config.iterations, config.schedule_unit) == (2, None, "epoch")


def test_model_options_can_be_set_one_by_one():
    config = load_preset("demo").with_overrides({"model.options.width": "0.25"})
    assert config.model.options["width"] == 0.25


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("batch_size", 0, "batch_size must be a positive number"),
        ("optim.lr_g", -1e-4, "optim.lr_g must be a positive number"),
        ("model.latent_dim", 0, "model.latent_dim must be a positive number"),
        ("optim.beta1", 1.5, r"optim.beta1 must be in \[0, 1\)"),
        ("noise", "cauchy", "noise must be one of normal, uniform"),
        ("data.channels", 2, "data.channels must be 1 or 3"),
        ("device", "tpu", "device must be auto"),
    ],
)
def test_impossible_settings_are_refused_before_any_work(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_preset("demo").with_overrides({key: value}).validate()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("batch_sise", "64", "unknown setting 'batch_sise'.*batch_size"),
        ("optim.lr", "1", "unknown setting 'optim.lr'.*lr_g"),
        ("batch_size", "many", "batch_size expects int, got 'many'"),
        ("deterministic", "perhaps", "deterministic expects bool"),
    ],
)
def test_bad_overrides_say_what_is_wrong(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_preset("demo").with_overrides({key: value})


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown preset 'mnist'.*demo.*mnist-dcgan.*mnist-gan"):
        load_preset("mnist")


def test_config_round_trips_through_json_file(tmp_path):
    config = load_preset("mnist-gan").with_overrides({"seed": 7})
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert load_config_file(path) == config


def test_config_file_with_unknown_key_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("iterations: 10\nbatchsize: 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'batchsize'"):
        load_config_file(path)


def test_both_or_neither_schedule_is_refused():
    with pytest.raises(ConfigError, match="exactly one of epochs or iterations"):
        TrainConfig(epochs=1, iterations=5).validate()
    with pytest.raises(ConfigError, match="exactly one of epochs or iterations"):
        TrainConfig().validate()


def test_settings_that_would_undo_the_documents_batchnorm_or_grid_cadence_are_refused():
    """sync_bn swaps every BatchNorm for PyTorch's SyncBatchNorm, which would silently drop
    the Keras moving statistics of the faithful presets; a grid offset cannot be negative."""
    with pytest.raises(ConfigError, match="sync_bn .*batchnorm: keras2"):
        load_preset("mnist-dcgan").with_overrides({"sync_bn": True}).validate()
    load_preset("mnist-dcgan").with_overrides(
        {"sync_bn": True, "model.options.batchnorm": "torch"}
    ).validate()
    with pytest.raises(ConfigError, match=r"sample_offset must be an integer >= 0"):
        load_preset("mnist-gan").with_overrides({"sample_offset": -1}).validate()
    load_preset("mnist-gan").with_overrides({"sample_every": 1}).validate()


# config.json as the version before issue 19 wrote it (flat keys: r1_gamma, noise, device,
# ...), made by TrainConfig.to_dict at commit 38ccfde for mnist-best: runs made then must
# keep loading (`ganforge train --resume`, `ganforge sample`), whatever the settings' layout.
CONFIG_BEFORE_ISSUE_19 = Path(__file__).parent / "fixtures" / "config-before-issue-19.json"


def test_a_config_json_from_before_issue_19_loads_with_every_value():
    saved = json.loads(CONFIG_BEFORE_ISSUE_19.read_text(encoding="utf-8"))
    config = load_config_file(CONFIG_BEFORE_ISSUE_19)
    assert config.preset == "mnist-best" and config.run_name == "mnist-best-001"
    assert config.loss == saved["loss"] and config.model.options == saved["model"]["options"]
    assert config.ema_decay == saved["ema_decay"] and config.iterations == 100
    assert json.loads(config.to_json()) == saved
