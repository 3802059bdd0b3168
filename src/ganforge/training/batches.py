"""One iteration's inputs: real images from this process's shard, and the noise and class
labels of the whole global batch, of which this process takes its part.

Every process draws the noise of the whole batch from the one shared stream and keeps its
slice, and the sampler gives every process the same order and each its slice of it: the
processes together see exactly what one process would (a run does not depend on how many
processes share it). In one process the slice is the whole batch.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import torch

from ganforge.conditional import fake_labels
from ganforge.config import TrainConfig
from ganforge.data import ImageData, to_unit_range
from ganforge.noise import draw_noise
from ganforge.training.runtime import Runtime
from ganforge.training.state import TrainingState
from ganforge.training.step import Batch
from ganforge.training.transfer import host_to_device

if TYPE_CHECKING:
    from ganforge.training.world import World


class RealBatches(Protocol):
    """Where real images come from: the next batch in [-1, 1] on the device, and its labels."""

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class ResidentBatches:
    """The dataset kept on the device as uint8; batches cut by index (no DataLoader, no syncs).

    The indices come from the state's sampler, which the world sharded: this process's part.
    """

    def __init__(self, data: ImageData, state: TrainingState, runtime: Runtime):
        # uint8 [N, C, H, W], resident for the run
        self.images = data.images.to(runtime.device)
        self.labels = data.labels.to(runtime.device) if data.labels is not None else None
        self.sampler, self.runtime = state.sampler, runtime

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        # pinned memory: no stream sync
        indices = host_to_device(self.sampler.next(), self.runtime.device)
        real = to_unit_range(self.images[indices])
        if self.runtime.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        labels = self.labels[indices] if self.labels is not None else None
        return real, labels


class BatchSource:
    """The :class:`Batch` of every iteration, for this process."""

    def __init__(
        self,
        config: TrainConfig,
        state: TrainingState,
        runtime: Runtime,
        world: World,
        real: RealBatches,
        num_classes: int,
    ):
        self.config, self.state, self.runtime, self.world = config, state, runtime, world
        self.real, self.num_classes = real, num_classes
        self.sizes = config.batch_sizes(world.world_size)

    def noise(self, count: int, rng: torch.Generator) -> torch.Tensor:
        c = self.config
        return draw_noise(count, c.model.latent_dim, c.latent, rng, self.runtime.device)

    def next(self) -> Batch:
        """Real images and the iteration's noise (one batch for both updates with shared_noise)."""
        c, sizes, step, rng = self.config, self.sizes, self.state.step, self.state.noise_rng
        real, labels = self.real.next()
        z_d = self.noise(sizes.global_fake, rng)
        z_g = z_d if c.step.shared_noise else self.noise(sizes.global_g, rng)
        batch = Batch(real, z_d, z_g, index=step)
        if self.num_classes:
            extra = 0 if c.step.shared_noise else sizes.global_g
            fakes = fake_labels(
                self.num_classes, sizes.global_fake + extra, c.seed, step, self.runtime.device
            )
            fake_g = (
                fakes[: sizes.global_fake] if c.step.shared_noise else fakes[sizes.global_fake :]
            )
            batch = Batch(real, z_d, z_g, labels, fakes[: sizes.global_fake], fake_g, index=step)
        return self.part(batch)

    def part(self, batch: Batch) -> Batch:
        """This process's slice of the global batch's noise and labels."""
        if self.world.world_size == 1:
            return batch
        part = self.world.part
        z_d = part(batch.z_d)
        return replace(
            batch,
            z_d=z_d,
            z_g=z_d if batch.z_g is batch.z_d else part(batch.z_g),
            fake_labels=None if batch.fake_labels is None else part(batch.fake_labels),
            fake_labels_g=None if batch.fake_labels_g is None else part(batch.fake_labels_g),
        )

    def probe(self, data: ImageData) -> Batch:
        """A throwaway batch of this process's sizes (the compile warm-up), from its own stream."""
        rng = torch.Generator(device=self.runtime.device).manual_seed(self.config.seed + 4)
        real = to_unit_range(data.images[: self.sizes.real].to(self.runtime.device))
        if self.runtime.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        z_d = self.noise(self.sizes.fake, rng)
        z_g = z_d if self.config.step.shared_noise else self.noise(self.sizes.g, rng)
        return Batch(real, z_d, z_g)
