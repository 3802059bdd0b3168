"""`ganforge train`: train from a preset or config file, with any setting overridden.

ganforge train                                    # the offline demo, single CPU or GPU
ganforge train --preset mnist-dcgan --epochs 1    # a documented recipe, shortened
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from ganforge.cli.common import registry_names, say
from ganforge.errors import ConfigError
from ganforge.presets import DEFAULT_PRESET, load_config_file, load_preset, preset_names

EXAMPLES = """examples:
  ganforge train                                         the offline MNIST demo (a few CPU minutes)
  ganforge train --preset mnist-dcgan --epochs 1         the notebook's DCGAN, one epoch
  ganforge train --preset oasis-dcgan --data DIR         the brain-MRI DCGAN on a folder of slices
  ganforge train --preset mnist-gan --set regularise.ema_decay=0.999 --set optim.lr_d=1e-4
  ganforge train --preset mnist-dcgan --dry-run          check and print the resolved config
  ganforge train --resume runs/mnist-dcgan-001           continue a stopped run exactly

exit status: 0 done; 2 a setting or input to fix; 3 training diverged (the last good checkpoint
is kept); 130 or 143 stopped by Ctrl-C or SIGTERM after saving a checkpoint (--resume continues)
"""


# flag -> the dotted setting it overrides; the help text is that setting's own documentation
# (TrainConfig's fields, read by setting_help when the parser is built). Every flag is optional
# and overrides the preset.
FLAGS = {
    "epochs": "schedule.epochs",
    "iterations": "schedule.iterations",
    "batch_size": "schedule.batch_size",
    "lr_g": "optim.lr_g",
    "lr_d": "optim.lr_d",
    "lr": None,
    "beta1": "optim.beta1",
    "beta2": "optim.beta2",
    "latent_dim": "model.latent_dim",
    "model": "model.arch",
    "loss": "loss",
    "seed": "seed",
    "device": "execution.device",
    "precision": "execution.precision",
    "sample_every": "schedule.sample_every",
    "checkpoint_every": "schedule.checkpoint_every",
    "eval_every": "schedule.eval_every",
    "dataset": "data.dataset",
    "data": "data.path",
    "resolution": "data.resolution",
    "channels": "data.channels",
    "limit": "data.limit",
    "out": "out_dir",
    "logger": "loggers",
    "name": "run_name",
}
# the flags that are not one setting, or whose registry names are listed when help is shown
EXTRA_HELP = {
    "lr": "set both learning rates (optim.lr_g and optim.lr_d)",
    "model": "{model} (details: ganforge presets)",
    "loss": "{loss}",
    "dataset": "{dataset}",
    "logger": "comma-separated: tensorboard",
}


def flag_help(flag: str) -> str:
    """A flag's help: its setting's documentation, the setting's name, and any names to pick.

    Read when the help is shown, so building the parser (for any command) never loads the
    config schema."""
    from ganforge.config import TrainConfig
    from ganforge.settings import setting_help

    key = FLAGS[flag]
    parts = [setting_help(TrainConfig, key)] if key else []
    parts += [EXTRA_HELP[flag]] if flag in EXTRA_HELP else []
    text = "; ".join(parts)
    return f"{text} ({key})" if key else text


def flag_value(flag: str):
    """argparse's converter for a flag: the number type of its setting (the config converts
    and checks the value again), looked up only when the flag is given."""

    def convert(text: str) -> object:
        kind = _number_type(FLAGS[flag])
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"wants {kind.__name__} ({FLAGS[flag] or 'optim.lr_g and optim.lr_d'}), "
                f"got {text!r}"
            ) from None

    return convert


def _number_type(key: str | None) -> type:
    import typing

    from ganforge.config import TrainConfig

    if key is None:
        return float
    hint: object = TrainConfig
    for part in key.split("."):
        hint = typing.get_type_hints(hint)[part]
    for kind in (int, float):
        if hint is kind or kind in typing.get_args(hint):
            return kind
    return str


class _HelpWithNames(argparse.RawDescriptionHelpFormatter):
    """Fills in the flags' help from their settings' documentation, and the registries' names
    ({model}, {loss}, {dataset}), when the help is shown, so building the parser (for
    `ganforge --help`, or to run a command) never loads the config schema or the registries."""

    def _expand_help(self, action: argparse.Action) -> str:
        flag = getattr(action, "setting_flag", None)
        if flag is not None:
            action.help = flag_help(flag)
        text = super()._expand_help(action)
        for kind in ("model", "loss", "dataset"):
            if "{" + kind + "}" in text:
                text = text.replace("{" + kind + "}", ", ".join(registry_names(kind)))
        return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a GAN (default: the small offline MNIST demo)",
        description="Train a GAN. Without options: the 'demo' preset, a small DCGAN on MNIST.",
        epilog=EXAMPLES,
        formatter_class=_HelpWithNames,
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"named recipe (default: {DEFAULT_PRESET}): {', '.join(preset_names())}",
    )
    p.add_argument("--config", default=None, help="a YAML config file instead of a preset")
    for flag in FLAGS:
        action = p.add_argument(
            "--" + flag.replace("_", "-"), dest=flag, type=flag_value(flag), default=None, help=flag
        )
        # the help text is the setting's documentation, filled in by _HelpWithNames
        action.setting_flag = flag  # type: ignore[attr-defined]
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, e.g. --set regularise.ema_decay=0.999 --set data.fit=crop "
        "(repeatable; the names of before the groups, such as ema_decay, still work)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue this run folder from its last checkpoint, with its saved config; flags "
        "given here still override it (e.g. --iterations to extend, --lr to lower)",
    )
    p.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue even if the data found differ from the run's",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def resolve_config(args: argparse.Namespace):
    """The config the flags describe (checked once, by ``train`` or the dry run)."""
    if sum(bool(x) for x in (args.preset, args.config, args.resume)) > 1:
        raise ConfigError("give only one of --preset, --config and --resume")
    if args.epochs is not None and args.iterations is not None:
        raise ConfigError("give only one of --epochs and --iterations")
    if args.resume:
        config = _saved_config(Path(args.resume))
    else:
        config = (
            load_config_file(args.config)
            if args.config
            else load_preset(args.preset or DEFAULT_PRESET)
        )
    overrides: dict[str, object] = {}
    for flag, key in FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if flag == "lr":
            overrides["optim.lr_g"] = overrides["optim.lr_d"] = value
        else:
            overrides[key] = value
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set wants KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return config.with_overrides(overrides)


def _saved_config(run_dir: Path):
    """The config a run folder was trained with, pointed back at that folder."""
    saved = run_dir / "config.json"
    if not saved.is_file():
        raise ConfigError(
            f"cannot resume {run_dir}: no config.json there; is it a ganforge run folder?"
        )
    config = load_config_file(saved)
    return config.with_overrides({"out_dir": str(run_dir.parent), "run_name": run_dir.name})


def run(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    if args.dry_run:
        from ganforge.check import check
        from ganforge.training.runtime import resolve_runtime

        # the one check of this command (train() makes it otherwise); what this machine
        # cannot do (fp16 on a CPU, a missing GPU) fails the dry run too
        resolve_runtime(check(config))
        print(config.to_json())
        return 0
    if args.resume and (args.out or args.name):
        raise ConfigError(
            "--resume continues the run folder it names; --out and --name cannot move it"
        )
    from ganforge.api import RunOptions, train

    options = RunOptions(
        overwrite=args.overwrite,
        resume=bool(args.resume),
        show_progress=not args.quiet,
        allow_data_change=args.allow_data_change,
        log=say,
    )
    result = train(config, run=options)
    # under torchrun rank 0 reports for all processes
    if os.environ.get("RANK", "0") != "0":
        return 128 + (result.stop_signal or signal.SIGINT) if result.stopped_early else 0
    if result.nothing_to_do:
        say(
            f"nothing to do: {result.run_dir} already reached iteration {result.steps}, "
            "the end of its schedule; extend it with --resume RUN --iterations N (or --epochs N)"
        )
        return 0
    verb = (
        f"stopped (checkpoint saved; continue with: ganforge train --resume {result.run_dir})"
        if result.stopped_early
        else "finished"
    )
    say(
        f"{verb}: {result.steps} iterations in {result.seconds:.1f} s "
        f"({result.images_per_second:,.0f} images/s)"
    )
    if result.final_stats:
        s = result.final_stats
        say(
            f"final: D loss {s['d_loss']:.3f}, G loss {s['g_loss']:.3f}, "
            f"D accuracy {s['d_acc']:.2f}, D(x) {s['d_real']:.2f}, D(G(z)) {s['d_fake']:.2f}"
        )
    say(
        f"run folder: {result.run_dir}  (samples/, losses.png, training.gif, generator.safetensors)"
    )
    say(f"next: ganforge sample {result.run_dir} --count 64 --out samples.png")
    # the shell convention for a stop by signal: 128 + its number
    if result.stopped_early:
        return 128 + (result.stop_signal or signal.SIGINT)
    return 0
