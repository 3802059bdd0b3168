"""Data sources, registered by name. Each turns a DataConfig into an in-memory ImageData.

Layout (imports point down only; no module imports this package's ``__init__``):

- ``base``: ImageData and the uint8 <-> [-1, 1] conversions;
- ``locations``: cache root, $GANFORGE_DATA, shared copies, the offline switch;
- ``discovery``: listing files, split folders, mask folders, subjects (names only);
- ``transforms``: channels and square resolution, the one place that resizes;
- ``decode``: image files -> arrays -> one stacked tensor, the unreadable-file policy;
- ``cache``: the decoded-image cache and its keys;
- ``registry``: SOURCES, register_source, load_images, source_problems, expected_shape;
- the sources: ``idx`` (mnist, fashion-mnist), ``stacked`` (stacked-mnist, built on idx),
  ``nifti`` (nifti), ``folder`` (folder, brain-mri), each registered where it is defined.

Add a source with :func:`register_source` in a new module and import it below; the trainer
only ever sees ImageData.
"""

from __future__ import annotations

from ganforge.data import folder, idx, nifti, stacked  # noqa: F401  (register the built-in sources)
from ganforge.data.base import ImageData, to_uint8, to_unit_range
from ganforge.data.nifti import save_nifti_stack
from ganforge.data.registry import (
    SOURCES,
    Source,
    expected_shape,
    load_images,
    register_source,
    source_problems,
)

__all__ = [
    "SOURCES",
    "ImageData",
    "Source",
    "expected_shape",
    "load_images",
    "register_source",
    "save_nifti_stack",
    "source_problems",
    "to_uint8",
    "to_unit_range",
]
