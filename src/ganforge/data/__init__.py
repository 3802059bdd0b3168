"""Data sources, registered by name. Each turns a DataConfig into an in-memory ImageData.

Add a source with :func:`register_source`; the trainer only ever sees ImageData.
"""

from __future__ import annotations

from typing import Callable

from ganforge.config import DataConfig
from ganforge.data.base import ImageData, to_uint8, to_unit_range
from ganforge.data.transforms import fit_square, to_channels
from ganforge.errors import unknown_name

SourceLoader = Callable[[DataConfig], ImageData]
SOURCES: dict[str, SourceLoader] = {}


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    def decorator(loader: SourceLoader) -> SourceLoader:
        SOURCES[name] = loader
        return loader
    return decorator


def load_images(config: DataConfig) -> ImageData:
    """Read the configured dataset, then bring it to the configured channels and resolution."""
    if config.dataset not in SOURCES:
        raise unknown_name("dataset", config.dataset, list(SOURCES))
    data = SOURCES[config.dataset](config)
    if config.limit is not None:
        data = data.subset(config.limit)
    images = fit_square(to_channels(data.images, config.channels), config.resolution, config.fit)
    return ImageData(images, data.name, data.source, data.labels, data.num_classes)


@register_source("mnist")
def _mnist(config: DataConfig) -> ImageData:
    from ganforge.data.idx import load_idx_dataset
    return load_idx_dataset("mnist", config.split, config.path)


@register_source("fashion-mnist")
def _fashion_mnist(config: DataConfig) -> ImageData:
    from ganforge.data.idx import load_idx_dataset
    return load_idx_dataset("fashion-mnist", config.split, config.path)


__all__ = ["ImageData", "SOURCES", "load_images", "register_source", "to_uint8", "to_unit_range"]
