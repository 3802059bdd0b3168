"""StackedMNIST: three independently drawn MNIST digits as the red, green and blue channels.

The standard test of mode coverage (Metz et al. 2017, VEEGAN, PacGAN, R3GAN): every
stack shows one of 10 x 10 x 10 = 1,000 digit triples, so a generator's coverage of the
data can be counted mode by mode (``ganforge.metrics.modes``). The stacks are built from
the MNIST IDX source, so they are found wherever MNIST is (``--data``, ``GANFORGE_DATA``,
the cache, the bundled 5,000-digit slice).

Invariant: the same MNIST split, ``data.options.stacks`` and ``data.options.stack_seed`` give
the same stacks, bit for bit; the seed alone decides which digits go into which stack.

Labels are the mode index 100 * red + 10 * green + blue (1,000 classes). Unconditional
training ignores them; they are kept because they are the ground truth the mode metric
is checked against, and they make a conditional StackedMNIST run possible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ganforge.config import DataConfig
from ganforge.data.base import ImageData
from ganforge.data.idx import IDX_SHAPE, idx_problems, load_idx_dataset
from ganforge.data.registry import register_source, source_options
from ganforge.errors import DataError
from ganforge.settings import setting

MODES = 1_000
# The mode index of a stack: its red digit is the hundreds, green the tens, blue the units.
PLACE_VALUES = (100, 10, 1)


def stack_digits(
    images: torch.Tensor, labels: torch.Tensor, count: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` stacks of three digits drawn independently (with replacement) from `images`.

    images: uint8 [N, 1, H, W] with labels [N] in 0-9. Returns uint8 [count, 3, H, W] and the
    mode index of each stack [count].
    """
    generator = torch.Generator().manual_seed(seed)
    # [count, 3]: which digit goes into each channel of each stack
    index = torch.randint(0, len(images), (count, 3), generator=generator)
    stacks = images[index, 0]
    modes = (labels[index] * torch.tensor(PLACE_VALUES)).sum(1)
    return stacks, modes


def _stacked_shape(config: DataConfig) -> tuple[int, int, int]:
    return (3, *IDX_SHAPE[1:])


def _stacked_problems(config: DataConfig) -> list[str]:
    """The MNIST source's own problems (missing files, a bad --data), and the stack options."""
    found = idx_problems(replace(config, dataset="mnist", options={}))
    opts = source_options(config)
    if opts.stacks is not None and opts.stacks <= 0:
        found.append(
            f"data.options.stacks must be a whole number > 0 or null (got {opts.stacks!r})"
        )
    return found


@dataclass(frozen=True)
class StackOptions:
    """The options (``data.options``) of stacked-mnist."""

    stacks: int | None = setting(
        None,
        help="how many three-digit stacks to draw (None: as many as the split has images)",
    )
    stack_seed: int = setting(
        0, help="the seed that picks the three digits of each stack, so a stack set repeats"
    )


@register_source(
    "stacked-mnist", shape=_stacked_shape, problems=_stacked_problems, options=StackOptions
)
def load_stacked_mnist(config: DataConfig) -> ImageData:
    """StackedMNIST built from the configured MNIST split: as many stacks as the split has
    digits unless data.options.stacks says otherwise (the literature uses 60,000 to 128,000)."""
    digits = load_idx_dataset("mnist", config.split, config.path, config.allow_bundled_slice)
    labels = digits.labels
    if labels is None:
        raise DataError(f"{digits.source}: MNIST without labels cannot name the stacks' modes")
    opts = source_options(config)
    count = opts.stacks if opts.stacks is not None else len(digits)
    stacks, modes = stack_digits(digits.images, labels, count, opts.stack_seed)
    split = digits.name.split("/", 1)[1]
    return ImageData(
        stacks,
        f"stacked-mnist/{split}",
        f"{count:,} stacks (seed {opts.stack_seed}) of {digits.source}",
        modes,
        MODES,
    )
