"""Start-up: what a command loads before it does its work.

`ganforge --help` and every command's `--help` answer without importing torch (a user asking
what the tool can do should not wait for it); the help texts' registry names come from a
cache that any edit of the package rebuilds; a saved generator is loaded without building
or initialising anything twice, and gives the same images as a full build.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from ganforge.checkpoint import read_generator_file
from ganforge.cli import common
from ganforge.generate import generate, load_generator
from ganforge.models import build_models
from ganforge.pretrained import pretrained_path

# Runs the CLI on argv and prints whether torch was imported by the end.
PROBE = """
import sys
from ganforge.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("TORCH-LOADED" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
"""


def _loads_torch(tmp_path, *argv: str) -> bool:
    env = {**os.environ, "GANFORGE_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert "usage: ganforge" in done.stdout, done.stderr
    return "TORCH-LOADED" in done.stderr


def test_help_does_not_import_torch(tmp_path):
    assert not _loads_torch(tmp_path, "--help")
    # the first `train --help` fills the cache of registry names; every later one reads it
    _loads_torch(tmp_path, "train", "--help")
    for command in ("train", "sample", "eval", "compare", "export", "interpolate", "presets"):
        assert not _loads_torch(tmp_path, command, "--help"), command


def test_registry_names_are_cached_and_rebuilt_when_the_package_changes(tmp_path, monkeypatch):
    from ganforge.models import ARCHITECTURES

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path))
    assert common.registry_names("model") == sorted(ARCHITECTURES)
    cache = tmp_path / "help-names.json"
    assert cache.is_file()
    # a stale cache (another version of the package) is not believed
    monkeypatch.setattr(common, "_source_fingerprint", lambda: "another version")
    cache.write_text('{"key": "old", "names": {"model": ["stale"]}}')
    assert common.registry_names("model") == sorted(ARCHITECTURES)
    # a damaged one neither
    cache.write_text("{not json")
    assert "dcgan" in common.registry_names("model")


def test_a_loaded_generator_equals_a_fully_built_one():
    path = pretrained_path("mnist-best")
    tensors, info = read_generator_file(path)
    built, _ = build_models(info.arch, info.latent_dim, info.image_shape, info.options)
    built.load_state_dict(tensors)
    loaded, _ = load_generator(path)
    assert not any(t.is_meta for t in loaded.state_dict().values())
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.equal(generate(loaded, info, 8, seed=3), generate(built.eval(), info, 8, seed=3))


def test_sample_loads_no_training_code(tmp_path):
    """`ganforge sample` needs torch and the generator, nothing else heavy: not the training
    loop or step, the metrics, the config schema and YAML, the data sources (numpy readers,
    urllib) or matplotlib. Each was a measured part of the 2-second start-up target (issue
    20). PIL, which writes the PNG, is allowed: it adds about 30 ms beside torch's 1.3 s."""
    unwanted = (
        "matplotlib",
        "ganforge.training.loop",
        "ganforge.training.step",
        "ganforge.metrics",
        "ganforge.config",
        "ganforge.data.registry",
        "yaml",
    )
    script = (
        "import sys\n"
        "from ganforge.cli import main\n"
        "main(['sample', '--pretrained', 'mnist-best', '--count', '4', "
        f"'--out', {str(tmp_path / 'x.png')!r}])\n"
        f"print(sorted(m for m in {unwanted!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and (tmp_path / "x.png").is_file()
