"""Data sources, registered by name. Each turns a DataConfig into an in-memory ImageData.

Layout (imports point down only; no module imports this package's ``__init__``):

- ``base``: ImageData and the uint8 <-> [-1, 1] conversions;
- ``locations``: cache root, $GANFORGE_DATA, shared copies, the offline switch;
- ``discovery``: listing files, split folders, mask folders, subjects (names only);
- ``transforms``: channels and square resolution, the one place that resizes;
- ``decode``: image files -> arrays -> one stacked tensor, the unreadable-file policy;
- ``cache``: the decoded-image cache and its keys;
- ``registry``: SOURCES, register_source, load_images, source_problems, source_options,
  expected_shape;
- the sources: ``idx`` (mnist, fashion-mnist), ``stacked`` (stacked-mnist, built on idx),
  ``nifti`` (nifti), ``folder`` (folder, brain-mri), each registered where it is defined.

Add a source with :func:`register_source` in a new module and name it in BUILTIN_SOURCES;
the trainer only ever sees ImageData. A source with settings of its own declares them as a
dataclass (``options=``); users set them under ``data.options`` and the registry checks them.
"""

from __future__ import annotations

import importlib

from ganforge.lazy import lazy_exports

# The built-in sources register themselves when imported. They load numpy, PIL, urllib and the
# config schema, so they are imported on the first read of any name below (PEP 562), not with
# the package: `ganforge sample` needs only ``base.to_uint8`` and starts that much sooner.
BUILTIN_SOURCES = ("folder", "idx", "nifti", "stacked")

_EXPORTS = {
    "SOURCES": "ganforge.data.registry",
    "ImageData": "ganforge.data.base",
    "Source": "ganforge.data.registry",
    "expected_shape": "ganforge.data.registry",
    "load_images": "ganforge.data.registry",
    "register_source": "ganforge.data.registry",
    "save_nifti_stack": "ganforge.data.nifti",
    "source_options": "ganforge.data.registry",
    "source_problems": "ganforge.data.registry",
    "to_uint8": "ganforge.data.base",
    "to_unit_range": "ganforge.data.base",
}

_export = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str):
    """A public name, after registering the built-in sources (so SOURCES is never partial)."""
    if name not in _EXPORTS:
        # `from ganforge.data import cache` asks here before importing the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in BUILTIN_SOURCES:
        importlib.import_module(f"{__name__}.{module}")
    return _export(name)


__all__ = sorted(_EXPORTS)
