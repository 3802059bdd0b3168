"""ganforge: train GANs and DCGANs, generate images, and measure their quality.

The Python API mirrors the command line::

    import ganforge
    config = ganforge.load_preset("mnist-dcgan").with_overrides({"schedule.epochs": 1})
    result = ganforge.train(config)                      # writes a run folder
    images = ganforge.sample(result.run_dir, count=16)   # uint8 [16, 28, 28, 1]
"""

import os as _os
import sys as _sys
import types as _types

from ganforge.lazy import lazy_exports as _lazy_exports
from ganforge.version import __version__

# OpenMP threads sleep at barriers instead of spinning, unless the user chose otherwise. It
# must be set before torch loads libgomp. On a busy or shared CPU, spinning threads fight
# the other processes: measured on 2 shared cores, a DCGAN step took 2x the wall time and
# 3.5x the CPU time with spinning (bench/README.md, "CPU threads").
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The public names, and the module each lives in. They are imported on first use (PEP 562), so
# `ganforge --help` and other commands that never train start without loading torch.
_EXPORTS = {
    "train": "ganforge.api",
    "RunOptions": "ganforge.api",
    "DataConfig": "ganforge.config",
    "ModelConfig": "ganforge.config",
    "OptimConfig": "ganforge.config",
    "TrainConfig": "ganforge.config",
    "ImageData": "ganforge.data",
    "load_images": "ganforge.data",
    "GanforgeError": "ganforge.errors",
    "generate": "ganforge.generate",
    "load_generator": "ganforge.generate",
    "sample": "ganforge.generate",
    "interpolate": "ganforge.generate",
    "draw": "ganforge.generate",
    "load_config_file": "ganforge.presets",
    "load_preset": "ganforge.presets",
    "preset_names": "ganforge.presets",
    "TrainResult": "ganforge.training",
}


__getattr__ = _lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(_types.ModuleType):
    """``ganforge.generate`` is both a module and its main function; the function wins.

    Importing the submodule binds the module to the package's attribute of that name (the
    import system does so); eagerly importing it here, as before, made the function win by
    binding it afterwards. Lazily, this keeps that public name the function.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name == "generate" and isinstance(value, _types.ModuleType):
            value = value.generate
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


__all__ = [
    "DataConfig",
    "GanforgeError",
    "ImageData",
    "ModelConfig",
    "OptimConfig",
    "RunOptions",
    "TrainConfig",
    "TrainResult",
    "generate",
    "load_config_file",
    "load_generator",
    "load_images",
    "load_preset",
    "preset_names",
    "sample",
    "train",
    "__version__",
]
