"""ganforge: train GANs and DCGANs, generate images, and measure their quality.

The Python API mirrors the command line::

    import ganforge
    config = ganforge.load_preset("mnist-dcgan").with_overrides({"epochs": 1})
    result = ganforge.train(config)                      # writes a run folder
    images = ganforge.sample(result.run_dir, count=16)   # uint8 [16, 28, 28, 1]
"""

import os as _os

# OpenMP threads sleep at barriers instead of spinning, unless the user chose otherwise. It
# must be set before torch loads libgomp. On a busy or shared CPU, spinning threads fight
# the other processes: measured on 2 shared cores, a DCGAN step took 2x the wall time and
# 3.5x the CPU time with spinning (bench/README.md, "CPU threads").
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ganforge.api import train
from ganforge.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from ganforge.data import ImageData, load_images
from ganforge.errors import GanforgeError
from ganforge.generate import generate, load_generator, sample
from ganforge.presets import load_config_file, load_preset, preset_names
from ganforge.training import TrainResult

__version__ = "0.1.0"
__all__ = [
    "DataConfig",
    "GanforgeError",
    "ImageData",
    "ModelConfig",
    "OptimConfig",
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
]
