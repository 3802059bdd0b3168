"""The metric registry: each metric registers itself where it is defined.

A registration says everything a reader or a report needs to interpret the numbers:
which outputs the metric produces and which way each is better, how many images per set
it needs before its number means anything, what it needs (a feature space, the
classifier's logits, the generator's training images, nothing), and its rank as the run's
main metric (1 is preferred; None: never the main metric). Adding a metric is one
decorated function in one module; the main-metric order, the help texts and the default
sets are all read from here.

Feature metrics (``needs="features"``) are functions of two feature matrices and run
once in every feature space the data has: the classifier's embedding (output keys as
registered, ``fid``) and the contrastive encoder's (the same keys with ``_enc``,
``fid_enc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

# MATCH: closest to the real-pairs value
LOWER, HIGHER, MATCH, INFO = ("lower", "higher", "match", "info")
# labels: the classes a conditional generator was asked for (context.fake_labels);
# stacked: StackedMNIST stacks (3 channels), read digit by digit by the MNIST classifier
Needs = Literal["features", "classifier", "training", "labels", "stacked", "nothing"]


@dataclass(frozen=True)
class Space:
    """A feature network: how its outputs are keyed and how every report names it."""

    name: str
    # appended to a feature metric's output keys
    suffix: str
    # what reports call it
    label: str


SPACES: dict[str, Space] = {
    "classifier": Space("classifier", "", "classifier features"),
    "encoder": Space("encoder", "_enc", "contrastive encoder features"),
}
NOT_INCEPTION = "not Inception FID: numbers compare only with each other at the same count"


@dataclass(frozen=True)
class Metric:
    """A registered metric: its function and what a reader needs to interpret its numbers."""

    name: str
    compute: Callable[..., Any]
    # output key -> LOWER | HIGHER | MATCH | INFO
    outputs: dict[str, str]
    # below this many images per set the number is noise
    min_samples: int
    needs: Needs
    # the main metric is the available one with the lowest rank
    main_rank: int | None
    summary: str
    prerequisite: Callable[[], object] | None = (
        # raises when an optional dependency is missing
        None
    )
    # (real, fake, context, scores, generator, resamples) -> {output: [low, high]}: bootstrap
    # intervals of a metric that is not a feature metric (those get theirs from uncertainty.py)
    intervals: Callable[..., dict[str, list[float]]] | None = None

    @property
    def needs_classifier(self) -> bool:
        return self.needs in ("features", "classifier", "labels")

    def __call__(self, *args: Any) -> Any:
        return self.compute(*args)

    def keys(self, space: str | None = None) -> list[str]:
        """Output keys, suffixed for a feature space."""
        suffix = SPACES[space].suffix if space and self.needs == "features" else ""
        return [key + suffix for key in self.outputs]


METRICS: dict[str, Metric] = {}


def register(
    name: str,
    *,
    outputs: dict[str, str],
    min_samples: int,
    needs: Needs = "nothing",
    main_rank: int | None = None,
    summary: str,
    prerequisite: Callable[[], object] | None = None,
    intervals: Callable[..., dict[str, list[float]]] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator: add the function below it to :data:`METRICS` under `name`."""

    def decorate(compute: Callable) -> Callable:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(
            name, compute, outputs, min_samples, needs, main_rank, summary, prerequisite, intervals
        )
        return compute

    return decorate


def split_key(key: str) -> tuple[str, str | None]:
    """'fid_enc' -> ('fid', 'encoder'); 'fid' -> ('fid', 'classifier'); 'swd_28' -> ('swd_28',
    None).
    """
    for space in SPACES.values():
        if space.suffix and key.endswith(space.suffix):
            base = key[: -len(space.suffix)]
            if base in output_index() and METRICS[output_index()[base]].needs == "features":
                return base, space.name
    base_metric = output_index().get(key)
    if base_metric is not None and METRICS[base_metric].needs == "features":
        return key, "classifier"
    return key, None


def output_index() -> dict[str, str]:
    """Output key (unsuffixed) -> metric name."""
    return {key: metric.name for metric in METRICS.values() for key in metric.outputs}


def direction(key: str) -> str:
    """Which way an output is better; per-level keys such as swd_28 are lower-is-better like swd."""
    base, _ = split_key(key)
    index = output_index()
    if base in index:
        return METRICS[index[base]].outputs[base]
    return LOWER if key.startswith("swd_") else INFO


def main_metric(names: list[str]) -> str:
    """The output a run is judged by: the first output of the registered metric with the lowest
    main rank among `names` (classifier FID, else SWD, else Inception FID), else the first."""
    ranked = sorted((METRICS[n].main_rank, n) for n in names if METRICS[n].main_rank is not None)
    name = ranked[0][1] if ranked else names[0]
    return next(iter(METRICS[name].outputs))


def ranked_feature_outputs() -> list[str]:
    """The outputs of the feature metrics that rank runs (better lower or higher, not
    information such as ``kid_std``), unsuffixed: the keys compared across feature spaces and
    given bootstrap intervals."""
    return [
        key
        for metric in METRICS.values()
        if metric.needs == "features"
        for key, way in metric.outputs.items()
        if way in (LOWER, HIGHER)
    ]


def main_output_order() -> list[str]:
    """All main-metric output keys, preferred first (for reading logs written earlier)."""
    ranked = sorted((m.main_rank, m.name) for m in METRICS.values() if m.main_rank is not None)
    return [next(iter(METRICS[name].outputs)) for _, name in ranked]
