"""Which images form each batch, with a state that can be saved and restored exactly."""

from __future__ import annotations

import torch


class BatchSampler:
    """Index batches over a dataset of `size` images, in one of three orders.

    shuffle:    a fresh permutation per pass, batches without replacement (drop the rest).
    sequential: the data in stored order, every pass the same (the notebook's DCGAN).
    random:     every batch drawn independently with replacement (the notebook's GAN,
                ``np.random.randint``).
    """

    def __init__(self, size: int, batch_size: int, order: str, seed: int):
        if size < batch_size:
            raise ValueError(f"dataset of {size} images is smaller than one batch of {batch_size}")
        self.size, self.batch_size, self.order = size, batch_size, order
        self.generator = torch.Generator().manual_seed(seed)
        self.batches_per_pass = size // batch_size
        # batch index within the current pass
        self.position = 0
        self.passes = 0
        self._permutation: torch.Tensor | None = None
        # this process's part of every batch (see shard)
        self._part = slice(None)

    def shard(self, rank: int, world_size: int) -> None:
        """Return only process `rank`'s slice of every batch, of `world_size` equal slices.

        The order itself (permutation, draws) stays the one seeded order, identical in every
        process, so the processes together take each global batch exactly once.
        """
        size = self.batch_size // world_size
        self._part = slice(rank * size, (rank + 1) * size)

    def next(self) -> torch.Tensor:
        """The indices of the next batch (CPU int64)."""
        if self.order == "random":
            return torch.randint(self.size, (self.batch_size,), generator=self.generator)[
                self._part
            ]
        if self.position == 0 or self._permutation is None:
            self._permutation = self._new_pass_order()
        start = self.position * self.batch_size
        batch = self._permutation[start : start + self.batch_size]
        self.position += 1
        if self.position == self.batches_per_pass:
            self.position, self.passes = 0, self.passes + 1
        return batch[self._part]

    def _new_pass_order(self) -> torch.Tensor:
        if self.order == "sequential":
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=self.generator)

    def state_dict(self) -> dict:
        return {
            "rng": self.generator.get_state(),
            "position": self.position,
            "passes": self.passes,
            "permutation": self._permutation
            if self._permutation is not None
            else torch.empty(0, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["rng"])
        self.position, self.passes = int(state["position"]), int(state["passes"])
        permutation = state["permutation"]
        self._permutation = permutation if permutation.numel() else None
