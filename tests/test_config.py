"""Presets and settings: every documented recipe loads, overrides work, bad settings fail early."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from ganforge.config import ScheduleConfig, TrainConfig
from ganforge.config_migration import DATA_OPTION_DEFAULTS, RENAMED
from ganforge.data import source_options
from ganforge.errors import ConfigError
from ganforge.presets import load_config_file, load_preset, preset_names


def test_documented_recipes_are_presets_with_the_notebook_settings():
    gan = load_preset("mnist-gan").validate()
    assert (
        gan.schedule.iterations,
        gan.schedule.batch_size,
        gan.step.d_half_batch,
        gan.schedule.sample_every,
        gan.schedule.grid_size,
    ) == (
        30000,
        64,
        True,
        200,
        5,
    )
    assert (gan.optim.lr_g, gan.optim.lr_d, gan.optim.beta1) == (2e-4, 2e-4, 0.5)
    assert gan.model.arch == "gan" and gan.schedule.batch_order == "random"
    dcgan = load_preset("mnist-dcgan").validate()
    assert (
        dcgan.schedule.epochs,
        dcgan.schedule.batch_size,
        dcgan.schedule.grid_size,
        dcgan.schedule.sample_every,
    ) == (60, 128, 7, 1)
    assert (
        dcgan.latent.law,
        dcgan.latent.std,
        dcgan.latent.grid_law,
        dcgan.schedule.batch_order,
    ) == (
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
    assert config.optim.lr_g == 1e-3 and config.schedule.batch_size == 64


def test_setting_iterations_replaces_the_epoch_schedule_and_back():
    config = load_preset("mnist-dcgan").with_overrides({"iterations": 100}).validate()
    assert (config.schedule.epochs, config.schedule.iterations, config.schedule_unit) == (
        None,
        100,
        "iteration",
    )
    config = config.with_overrides({"epochs": 2}).validate()
    assert (config.schedule.epochs, config.schedule.iterations, config.schedule_unit) == (
        2,
        None,
        "epoch",
    )


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
        ("noise", "cauchy", "latent.law must be one of normal, uniform"),
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
    with pytest.raises(ConfigError, match="exactly one of schedule.epochs or schedule.iterations"):
        TrainConfig(schedule=ScheduleConfig(epochs=1, iterations=5)).validate()
    with pytest.raises(ConfigError, match="exactly one of schedule.epochs or schedule.iterations"):
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
# config.json as the version just before the settings' groups wrote it (commit 25dc6d6, the
# same flat layout): `ganforge train --preset demo --dataset stacked-mnist --iterations 2
# --seed 7 --device cpu --batch-size 16` with a --set for nearly every setting, so that each
# one holds a value other than its default and must be found again in its new place.
CONFIG_BEFORE_GROUPS = Path(__file__).parent / "fixtures" / "config-before-groups.json"


def assert_every_value_in_its_new_place(saved: dict, config: TrainConfig) -> None:
    """Each flat setting of `saved` is found at its new dotted name in `config`; the data
    settings of one source are in data.options, or are the source's default when left out."""
    grouped = json.loads(config.to_json())
    for key, value in saved.items():
        if key == "data":
            assert_data_in_its_new_place(value, config)
        elif key in RENAMED:
            group, name = RENAMED[key].split(".")
            assert grouped[group][name] == value, (key, RENAMED[key])
        elif isinstance(value, dict) and key in ("model", "optim"):
            # a group that existed then: every saved value kept, and the settings added to
            # it since (e.g. optim.ramp) at their defaults, so the run trains as it did
            defaults = json.loads(TrainConfig().to_json())[key]
            for name, current in grouped[key].items():
                assert current == value.get(name, defaults[name]), (key, name)
            assert set(value) <= set(grouped[key]), key
        else:
            assert grouped[key] == value, key
    assert TrainConfig.from_dict(grouped) == config


def assert_data_in_its_new_place(saved: dict, config: TrainConfig) -> None:
    options = json.loads(json.dumps(dataclasses.asdict(source_options(config.data) or Empty())))
    for key, value in saved.items():
        if key in DATA_OPTION_DEFAULTS:
            assert options.get(key, DATA_OPTION_DEFAULTS[key]) == value, key
            assert (key in config.data.options) == (value != DATA_OPTION_DEFAULTS[key]), key
        else:
            assert json.loads(json.dumps(getattr(config.data, key))) == value, key


@dataclasses.dataclass
class Empty:
    """The options of a source that declares none."""


def test_a_config_json_from_before_issue_19_loads_with_every_value():
    saved = json.loads(CONFIG_BEFORE_ISSUE_19.read_text(encoding="utf-8"))
    config = load_config_file(CONFIG_BEFORE_ISSUE_19)
    assert config.preset == "mnist-best" and config.run_name == "mnist-best-001"
    assert config.loss == saved["loss"] and config.model.options == saved["model"]["options"]
    assert config.regularise.ema_decay == saved["ema_decay"] and config.schedule.iterations == 100
    assert_every_value_in_its_new_place(saved, config)


def test_a_config_json_from_just_before_the_groups_loads_with_every_value_in_its_place():
    saved = json.loads(CONFIG_BEFORE_GROUPS.read_text(encoding="utf-8"))
    config = load_config_file(CONFIG_BEFORE_GROUPS).validate()
    assert_every_value_in_its_new_place(saved, config)
    # a few by hand, so that the table above is not the only witness
    assert config.regularise.r1_gamma == 0.5 and config.regularise.spectral_norm == "d"
    assert config.augment.names == "translation,cutout" and config.augment.p == 0.5
    assert (config.latent.law, config.latent.std, config.latent.grid_law) == (
        "uniform",
        0.7,
        "normal",
    )
    assert config.distributed.backend == "gloo" and config.distributed.timeout_s == 120.0
    assert config.execution.deterministic and config.schedule.sample_offset == 1
    assert config.step.d_half_batch and config.seed == 7
    assert config.data.options == {"stacks": 100, "stack_seed": 3}
    assert json.loads(config.to_json())["data"]["options"] == {"stacks": 100, "stack_seed": 3}


def test_the_names_of_before_the_groups_still_work_as_overrides():
    """Users' scripts say --set r1_gamma=10: each flat name lands in its group."""
    config = load_preset("demo").with_overrides(
        {
            "r1_gamma": "10",
            "augment": "translation",
            "augment_p": "0.5",
            "dist_backend": "gloo",
            "noise": "uniform",
            "data.stack_seed": "4",
            "epochs": "2",
        }
    )
    assert config.regularise.r1_gamma == 10.0 and config.augment.names == "translation"
    assert config.augment.p == 0.5 and config.distributed.backend == "gloo"
    assert config.latent.law == "uniform" and config.data.options == {"stack_seed": 4}
    assert (config.schedule.epochs, config.schedule.iterations) == (2, None)
    # the new names, and a group given whole, as before
    config = config.with_overrides({"augment": "{p: 0.25}", "schedule.iterations": 3})
    assert config.augment.names == "translation" and config.augment.p == 0.25
    assert (config.schedule.epochs, config.schedule.iterations) == (None, 3)


def test_every_setting_documents_itself_and_the_cli_reads_that_text():
    from ganforge.cli.train import FLAGS, flag_help
    from ganforge.settings import setting_help

    def leaves(cls, prefix=""):
        for item in dataclasses.fields(cls):
            kind = typing.get_type_hints(cls)[item.name]
            assert item.metadata.get("help"), f"{prefix}{item.name} has no documentation"
            if dataclasses.is_dataclass(kind):
                yield from leaves(kind, f"{prefix}{item.name}.")
            else:
                yield f"{prefix}{item.name}"

    assert len(list(leaves(TrainConfig))) > 50
    for flag, key in FLAGS.items():
        if key is not None:
            assert flag_help(flag).startswith(setting_help(TrainConfig, key)), flag
            assert key in flag_help(flag)


def test_problems_name_the_grouped_settings():
    config = load_preset("demo").with_overrides(
        {
            "r1_gamma": -1,
            "augment_p": 2,
            "sample_every": 0,
            "update": "simultaneous",
            "d_separate_updates": True,
        }
    )
    text = "; ".join(config.problems())
    for name in (
        "regularise.r1_gamma",
        "augment.p",
        "schedule.sample_every",
        "step.d_separate_updates",
    ):
        assert name in text, name
