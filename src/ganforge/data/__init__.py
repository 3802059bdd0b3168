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


@register_source("folder")
def _folder(config: DataConfig) -> ImageData:
    """A folder of PNG/JPEG/TIFF images (recursive, mask folders skipped) or NIfTI volumes."""
    from ganforge.data.folder import load_folder
    return load_folder(config)


@register_source("nifti")
def _nifti(config: DataConfig) -> ImageData:
    """Slices of one .nii/.nii.gz volume or of a folder of them."""
    from ganforge.data.nifti import load_nifti
    return load_nifti(config)


@register_source("brain-mri")
def _brain_mri(config: DataConfig) -> ImageData:
    """Brain MRI slices: --data when given, else OASIS or the shared Kaggle slices found nearby."""
    from ganforge.data.folder import load_brain_mri
    return load_brain_mri(config)


__all__ = ["ImageData", "SOURCES", "load_images", "register_source", "to_uint8", "to_unit_range"]
