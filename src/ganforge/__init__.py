"""ganforge: train GANs and DCGANs, generate images, and measure their quality.

The Python API mirrors the command line::

    import ganforge
    config = ganforge.load_preset("mnist-dcgan").with_overrides({"epochs": 1})
    result = ganforge.train(config)                      # writes a run folder
    images = ganforge.sample(result.run_dir, count=16)   # uint8 [16, 28, 28, 1]
"""

from ganforge.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from ganforge.data import ImageData, load_images
from ganforge.errors import GanforgeError
from ganforge.generate import generate, load_generator, sample
from ganforge.presets import load_config_file, load_preset, preset_names
from ganforge.training import TrainResult, train

__version__ = "0.1.0"
__all__ = ["DataConfig", "GanforgeError", "ImageData", "ModelConfig", "OptimConfig", "TrainConfig", "TrainResult",
           "generate", "load_config_file", "load_generator", "load_images", "load_preset", "preset_names", "sample",
           "train"]
