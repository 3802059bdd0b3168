"""Fingerprint of what training produces: SHA-256 of the generator's weights after a short,
fixed-seed, single-process run of each named preset.

A refactor of the training path must leave these hashes bitwise unchanged. Run it before and
after a change and compare:

    GANFORGE_DATA=/path/to/datasets python scripts/weights_hash.py demo mnist-gan --iterations 200

The runs are on the CPU, eager (compile off) and deterministic; everything else is the preset's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile

import torch

import ganforge
from ganforge.checkpoint import load_checkpoint


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' bytes, in key order (names included)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run(preset: str, iterations: int, out_dir: str) -> str:
    # the flat names of before the settings' groups (schedule.iterations, execution.device,
    # ...): the version now moves them to their groups, and older versions read them as they
    # are, so one script gives the "before" and "after" hashes
    config = ganforge.load_preset(preset).with_overrides(
        {
            "iterations": iterations,
            "epochs": None,
            "device": "cpu",
            "compile": "off",
            "deterministic": True,
            "eval_every": 0,
            "seed": 1234,
            "out_dir": out_dir,
            "run_name": preset,
        }
    )
    if hasattr(ganforge, "RunOptions"):
        result = ganforge.train(config, run=ganforge.RunOptions(show_progress=False))
    else:
        # the API before issue 19, so that one script gives the "before" hashes too
        result = ganforge.train(config, show_progress=False)
    checkpoint = sorted((result.run_dir / "checkpoints").glob("ckpt-*.pt"))[-1]
    saved = load_checkpoint(checkpoint, map_location="cpu")
    return state_hash(saved["generator"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    hashes = {}
    with tempfile.TemporaryDirectory() as out_dir:
        for preset in args.presets:
            hashes[preset] = run(preset, args.iterations, out_dir)
            print(f"{preset}: {hashes[preset]}", flush=True)
    print(json.dumps(hashes, indent=2))


if __name__ == "__main__":
    main()
