"""The registry of data sources: each turns a DataConfig into an in-memory ImageData.

A source registers its loader together with what can be said about a config *before any file
is read*: the problems it would refuse (``problems``), the splits it supports and, when the
config alone fixes it, the image shape it will produce (``shape``). ``ganforge.check`` asks
these through :func:`source_problems` and :func:`expected_shape`, so a bad setting stops a run
before its folder exists.

Who resizes: :func:`load_images` brings a source's images to the configured channels and
resolution with transforms.shape_to, once. A source that has to resize while stacking (mixed
sizes, non-square pixels) declares ``fits=True``, calls the same function itself, and is not
resized again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from ganforge.config import DataConfig, build_options
from ganforge.data.base import ImageData
from ganforge.data.transforms import shape_to
from ganforge.errors import ConfigError, unknown_name

SourceLoader = Callable[[DataConfig], ImageData]
ProblemCheck = Callable[[DataConfig], list[str]]
ShapeRule = Callable[[DataConfig], "tuple[int, int, int] | None"]
ALL_SPLITS = ("train", "test", "all")


def _no_problems(config: DataConfig) -> list[str]:
    return []


def _unknown_shape(config: DataConfig) -> tuple[int, int, int] | None:
    return None


@dataclass(frozen=True)
class Source:
    """A registered data source. Calling it loads the data (as the plain loader did)."""

    name: str
    load: SourceLoader
    problems: ProblemCheck = _no_problems
    shape: ShapeRule = _unknown_shape
    splits: tuple[str, ...] = ALL_SPLITS
    # the loader applies channels/resolution itself while stacking
    fits: bool = False
    # the dataclass of the source's own options (data.options), None for a source without any
    options: type | None = None

    def __call__(self, config: DataConfig) -> ImageData:
        return self.load(config)


SOURCES: dict[str, Source] = {}


def register_source(
    name: str,
    *,
    problems: ProblemCheck | None = None,
    shape: ShapeRule | None = None,
    splits: tuple[str, ...] = ALL_SPLITS,
    fits: bool = False,
    options: type | None = None,
) -> Callable[[SourceLoader], SourceLoader]:
    """Register a loader under `name`, with the checks and options it declares (module doc).

    ``options`` is a dataclass of :func:`ganforge.config.setting` fields: the names, types,
    defaults and documentation of what ``data.options`` may hold for this source.
    """

    def decorator(loader: SourceLoader) -> SourceLoader:
        SOURCES[name] = Source(
            name,
            loader,
            problems or _no_problems,
            shape or _unknown_shape,
            tuple(splits),
            fits,
            options,
        )
        return loader

    return decorator


def source_problems(config: DataConfig) -> list[str]:
    """Everything the configured source would refuse, found without reading a file; [] if none."""
    source = SOURCES.get(config.dataset)
    if source is None:
        return [str(unknown_name("dataset", config.dataset, list(SOURCES)))]
    try:
        source_options(config)
        bad_options = []
    except ConfigError as exc:
        # the source's other checks still run, on its default options
        bad_options, config = [str(exc)], replace(config, options={})
    found = []
    # An unknown split name is TrainConfig's to report (data.split is a Literal); here only a
    # valid split this source does not have.
    if config.split in ALL_SPLITS and config.split not in source.splits:
        found.append(
            f"dataset {config.dataset!r} has no split {config.split!r}; choose one of: "
            f"{', '.join(source.splits)}"
        )
    return found + list(source.problems(config)) + bad_options


def source_options(config: DataConfig) -> Any:
    """The configured source's options: ``data.options`` checked against what the source
    declares and filled with its defaults (ConfigError for an unknown or mistyped one)."""
    source = SOURCES.get(config.dataset)
    if source is None:
        raise unknown_name("dataset", config.dataset, list(SOURCES))
    return build_options(source.options, config.options, f"dataset {config.dataset!r}")


def expected_shape(config: DataConfig) -> tuple[int, int, int] | None:
    """(channels, height, width) the config will produce, or None when only the files can tell.

    A set resolution and channel count fix it for any source; otherwise the source's rule
    decides (MNIST: 1 x 28 x 28).
    """
    source = SOURCES.get(config.dataset)
    if config.resolution is not None and config.channels is not None:
        return (config.channels, config.resolution, config.resolution)
    native = source.shape(config) if source is not None else None
    if native is None:
        return None
    channels, height, width = native
    if config.resolution is not None:
        height = width = config.resolution
    return (config.channels or channels, height, width)


def load_images(config: DataConfig) -> ImageData:
    """Read the configured dataset, then bring it to the configured channels and resolution."""
    if config.dataset not in SOURCES:
        raise unknown_name("dataset", config.dataset, list(SOURCES))
    source = SOURCES[config.dataset]
    data = source(config)
    if config.limit is not None:
        data = data.subset(config.limit)
    images = data.images
    if not source.fits:
        images = shape_to(images, config.channels, config.resolution, config.fit)
    return replace(data, images=images)
