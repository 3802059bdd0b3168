"""Check everything before any side effect: --dry-run and train() reject bad settings in one line,
and a failed set-up leaves no run folder."""

from __future__ import annotations

import json

import pytest

from ganforge import load_preset
from ganforge.check import check
from ganforge.errors import ConfigError


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--loss", "foo"], "unknown loss 'foo'; choose one of: bce, bce-keras, hinge, lsgan"),
        (["--model", "resnet-nosuch"], "unknown model 'resnet-nosuch'"),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--resolution", "100"], "resolution 100 is not a power of two"),
        (["--set", "model.options.widht=0.5"], "has no option 'widht'"),
        (
            ["--dataset", "nifti", "--set", "data.nifti_axis=3"],
            "data.options.nifti_axis must be 0 (sagittal), 1 (coronal) or 2 (axial)",
        ),
        (
            ["--dataset", "stacked-mnist", "--set", "data.options.stack=3"],
            "dataset 'stacked-mnist' has no option 'stack'; its options: stacks (int | None), "
            "stack_seed (int)",
        ),
        (
            ["--dataset", "stacked-mnist", "--set", "data.options.stacks=many"],
            "data.options.stacks expects int, got 'many'; the options of dataset 'stacked-mnist'",
        ),
        (["--set", "precision=fp8"], "precision must be one of auto, fp32, bf16"),
        (["--set", "update=sometimes"], "update must be one of alternating, simultaneous"),
        (["--epochs", "2", "--iterations", "5"], "give only one of --epochs and --iterations"),
        (
            ["--preset", "mnist-dcgan", "--set", "update=simultaneous"],
            "set step.d_separate_updates=false",
        ),
        (
            ["--preset", "mnist-best", "--set", "spectral_norm=d"],
            "model 'resnet' already normalises its discriminator spectrally; "
            "drop regularise.spectral_norm",
        ),
        (
            ["--preset", "brain-best", "--set", "cuda_graphs=on"],
            "ada_target > 0) changes between iterations and needs execution.cuda_graphs=off",
        ),
    ],
)
def test_dry_run_rejects_each_bad_setting_in_one_line(cli, user_error, tmp_path, args, fragment):
    result = cli("train", "--dry-run", "--out", tmp_path, *args)
    user_error(result, fragment)
    assert not any(tmp_path.iterdir())


def test_dry_run_prints_a_config_that_passes_the_same_check(cli):
    code, out, _ = cli("train", "--preset", "oasis-dcgan", "--dry-run")
    assert code == 0
    printed = json.loads(out)
    assert printed["step"]["update"] == "simultaneous" and printed["schedule"]["epochs"] == 100


def test_a_group_set_merges_instead_of_resetting_the_other_settings():
    config = load_preset("mnist-gan").with_overrides({"optim": "{lr_g: 0.001}"})
    assert config.optim.lr_g == 0.001
    assert config.optim.beta1 == 0.5 and config.optim.eps == 1e-7 and config.optim.shared_counter


def test_every_problem_is_reported_at_once():
    config = load_preset("demo").with_overrides(
        {"loss": "foo", "model.arch": "nosuch", "batch_size": 0}
    )
    with pytest.raises(ConfigError) as caught:
        check(config)
    message = str(caught.value)
    assert "unknown loss" in message and "unknown model" in message and "batch_size" in message
    assert "\n" not in message


def test_a_failed_set_up_leaves_no_run_folder(tmp_path, tiny_config, tiny_images):
    """A model that cannot make the data's images is found before the run folder is made."""
    from ganforge import RunOptions, train

    config = tiny_config("demo", out_dir=str(tmp_path / "runs"), run_name="never")
    with pytest.raises(ConfigError, match="cannot make images of shape"):
        train(
            config, run=RunOptions(data=tiny_images(size=28), show_progress=False)
        )  # dcgan wants 32, not 28
    assert not (tmp_path / "runs" / "never").exists()


def test_a_resumed_run_records_what_changed(train_tiny):
    first = train_tiny("changed", iterations=4)
    train_tiny("changed", iterations=6, settings={"optim.lr_d": 1e-4}, resume=True)
    lines = (first.run_dir / "config-changes.jsonl").read_text().splitlines()
    change = json.loads(lines[-1])
    assert change["step"] == 4
    assert change["changed"]["optim.lr_d"] == [2e-4, 1e-4]
    assert change["changed"]["schedule.iterations"] == [4, 6]
    assert json.loads((first.run_dir / "config.json").read_text())["optim"]["lr_d"] == 1e-4
